#!/usr/bin/env bash
# Create (or replace) a Cloud Scheduler job that launches the mirmatch flex template every night.
#
# Cloud Scheduler POSTs to the Dataflow flex template launch API
#   https://dataflow.googleapis.com/v1b3/projects/PROJECT/locations/REGION/flexTemplates:launch
# with an OAuth token of SCHEDULER_SA; each call starts one Dataflow job from the template that
# deploy/launch_dataflow.sh built (STEPS=build is enough).
#
# Variables (environment; PROJECT, REGION, BUCKET and IMAGE are required):
#   PROJECT       Google Cloud project id, e.g. my-project
#   REGION        Dataflow and Cloud Scheduler region, e.g. us-central1
#   BUCKET        bucket name (no gs://) holding templates/mirmatch.json, staging/ and tmp/
#   IMAGE         the template's image, also the workers' SDK container, e.g.
#                 us-central1-docker.pkg.dev/my-project/mirmatch/mirmatch:TAG (launch_dataflow.sh prints it)
#   AUDIO, MIDI, OUT, TOP_K   as in launch_dataflow.sh (defaults under gs://$BUCKET)
#   SCHEDULE      cron syntax, default "0 2 * * *" (02:00 every day) in TIME_ZONE (default Etc/UTC)
#   JOB           scheduler job name and Dataflow job name, default mirmatch-nightly
#   SCHEDULER_SA  service account whose token calls the API (needs roles/dataflow.developer on PROJECT and
#                 roles/iam.serviceAccountUser on the workers' service account); default
#                 mirmatch-scheduler@$PROJECT.iam.gserviceaccount.com
#
# Overlap: Dataflow refuses to launch a job whose name (JOB) is already used by a running job, so a night
# whose previous run is still going fails to launch (visible in the scheduler job's logs) instead of racing it
# for the same output folder.
set -euo pipefail

: "${PROJECT:?set PROJECT to the Google Cloud project id}"
: "${REGION:?set REGION, e.g. us-central1}"
: "${BUCKET:?set BUCKET to the bucket name (without gs://)}"
: "${IMAGE:?set IMAGE to the template image (printed by deploy/launch_dataflow.sh)}"
AUDIO="${AUDIO:-gs://$BUCKET/audio/**}"
MIDI="${MIDI:-gs://$BUCKET/midi/**.mid}"
OUT="${OUT:-gs://$BUCKET/mirmatch-out}"
TOP_K="${TOP_K:-5}"
SCHEDULE="${SCHEDULE:-0 2 * * *}"
TIME_ZONE="${TIME_ZONE:-Etc/UTC}"
JOB="${JOB:-mirmatch-nightly}"
SCHEDULER_SA="${SCHEDULER_SA:-mirmatch-scheduler@$PROJECT.iam.gserviceaccount.com}"

# The LaunchFlexTemplateRequest body; python3 writes it so that every value is JSON-escaped.
body="$(mktemp)"
trap 'rm -f "$body"' EXIT
JOB="$JOB" BUCKET="$BUCKET" IMAGE="$IMAGE" AUDIO="$AUDIO" MIDI="$MIDI" OUT="$OUT" TOP_K="$TOP_K" \
python3 - >"$body" <<'EOF'
import json
import os

e = os.environ
print(json.dumps({"launchParameter": {
    "jobName": e["JOB"],
    "containerSpecGcsPath": f"gs://{e['BUCKET']}/templates/mirmatch.json",
    "parameters": {"audio": e["AUDIO"], "midi": e["MIDI"], "out": e["OUT"], "top_k": e["TOP_K"],
                   "sdk_container_image": e["IMAGE"]},
    "environment": {"tempLocation": f"gs://{e['BUCKET']}/tmp", "stagingLocation": f"gs://{e['BUCKET']}/staging"},
}}, indent=2))
EOF

args=(
    --project "$PROJECT"
    --location "$REGION"
    --schedule "$SCHEDULE"
    --time-zone "$TIME_ZONE"
    --uri "https://dataflow.googleapis.com/v1b3/projects/$PROJECT/locations/$REGION/flexTemplates:launch"
    --http-method POST
    --headers "Content-Type=application/json"
    --message-body-from-file "$body"
    --oauth-service-account-email "$SCHEDULER_SA"
    --oauth-token-scope "https://www.googleapis.com/auth/cloud-platform"
    --attempt-deadline 180s
    --description "mirmatch nightly: launch the Dataflow flex template gs://$BUCKET/templates/mirmatch.json"
)
if gcloud scheduler jobs describe "$JOB" --project "$PROJECT" --location "$REGION" >/dev/null 2>&1; then
    gcloud scheduler jobs delete "$JOB" --project "$PROJECT" --location "$REGION" --quiet
fi
gcloud scheduler jobs create http "$JOB" "${args[@]}"
echo "created $JOB: $SCHEDULE ($TIME_ZONE); try it now with:"
echo "  gcloud scheduler jobs run $JOB --project $PROJECT --location $REGION"
