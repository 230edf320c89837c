#!/usr/bin/env bash
# Build the mirmatch Dataflow flex template and run it once.
#
# Variables (environment; the first three are required):
#   PROJECT      Google Cloud project id that runs the job, e.g. my-project
#   REGION       Dataflow region, also where the image repository lives, e.g. us-central1
#   BUCKET       Cloud Storage bucket name (no gs://) for the template spec, staging and temp files,
#                e.g. my-mirmatch-bucket
#   AUDIO        audio glob or @manifest         (default gs://$BUCKET/audio/**)
#   MIDI         MIDI glob or @manifest          (default gs://$BUCKET/midi/**.mid)
#   OUT          output folder                   (default gs://$BUCKET/mirmatch-out)
#   TOP_K        matches kept per MIDI file      (default 5)
#   REPOSITORY   Artifact Registry Docker repository, created if missing (default mirmatch)
#   TAG          image tag                       (default: the current git commit, else a timestamp)
#   MAX_WORKERS  autoscaling ceiling             (default 10)
#   MACHINE_TYPE worker machine type             (default n2-standard-4)
#   BUILD        cloudbuild (default: builds the image with Cloud Build) | docker (local docker build + push)
#                | none (the image IMAGE already exists)
#   STEPS        what to do: "build run" (default), "build" (image + template only) or "run" (template only)
#
# Usage, from anywhere in the repository:
#   PROJECT=my-project REGION=us-central1 BUCKET=my-bucket deploy/launch_dataflow.sh
# Needs gcloud, authenticated (`gcloud auth login`) with the Dataflow, Cloud Build, Artifact Registry and
# Cloud Storage APIs enabled on PROJECT. The template spec lands at gs://$BUCKET/templates/mirmatch.json, the
# URL that deploy/scheduler/cloud_scheduler.sh launches nightly.
set -euo pipefail

: "${PROJECT:?set PROJECT to the Google Cloud project id}"
: "${REGION:?set REGION to the Dataflow region, e.g. us-central1}"
: "${BUCKET:?set BUCKET to a Cloud Storage bucket name (without gs://)}"
AUDIO="${AUDIO:-gs://$BUCKET/audio/**}"
MIDI="${MIDI:-gs://$BUCKET/midi/**.mid}"
OUT="${OUT:-gs://$BUCKET/mirmatch-out}"
TOP_K="${TOP_K:-5}"
REPOSITORY="${REPOSITORY:-mirmatch}"
MAX_WORKERS="${MAX_WORKERS:-10}"
MACHINE_TYPE="${MACHINE_TYPE:-n2-standard-4}"
BUILD="${BUILD:-cloudbuild}"
STEPS="${STEPS:-build run}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TAG="${TAG:-$(git rev-parse --short=12 HEAD 2>/dev/null || date -u +%Y%m%d-%H%M%S)}"
IMAGE="${IMAGE:-$REGION-docker.pkg.dev/$PROJECT/$REPOSITORY/mirmatch:$TAG}"
TEMPLATE="gs://$BUCKET/templates/mirmatch.json"

build() {
    if ! gcloud artifacts repositories describe "$REPOSITORY" --project "$PROJECT" --location "$REGION" \
            >/dev/null 2>&1; then
        gcloud artifacts repositories create "$REPOSITORY" --project "$PROJECT" --location "$REGION" \
            --repository-format docker --description "mirmatch Dataflow images"
    fi
    case "$BUILD" in
        cloudbuild)
            # The Dockerfile is not at the root of the build context, hence a build config instead of --tag.
            # The upload skips what .gitignore lists (.venv, .cache, outputs).
            config="$(mktemp)"
            trap 'rm -f "$config"' EXIT
            cat >"$config" <<EOF
steps:
  - name: gcr.io/cloud-builders/docker
    args: [build, -f, deploy/Dockerfile, -t, "$IMAGE", .]
images: ["$IMAGE"]
timeout: 3600s
EOF
            gcloud builds submit "$ROOT" --project "$PROJECT" --region "$REGION" --config "$config"
            ;;
        docker)
            gcloud auth configure-docker "$REGION-docker.pkg.dev" --quiet
            docker build -f deploy/Dockerfile -t "$IMAGE" .
            docker push "$IMAGE"
            ;;
        none) ;;
        *) echo "BUILD must be cloudbuild, docker or none, not '$BUILD'" >&2; exit 2 ;;
    esac
    # The spec records the launcher image, the parameters of deploy/metadata.json and the job's defaults.
    gcloud dataflow flex-template build "$TEMPLATE" \
        --project "$PROJECT" \
        --image "$IMAGE" \
        --sdk-language PYTHON \
        --metadata-file deploy/metadata.json \
        --staging-location "gs://$BUCKET/staging" \
        --temp-location "gs://$BUCKET/tmp" \
        --max-workers "$MAX_WORKERS" \
        --worker-machine-type "$MACHINE_TYPE"
    echo "template: $TEMPLATE (image $IMAGE)"
}

run() {
    # sdk_container_image: the workers run the launcher's own image, so job build and execution share code
    # and dependencies.
    gcloud dataflow flex-template run "mirmatch-$(date -u +%Y%m%d-%H%M%S)" \
        --project "$PROJECT" \
        --region "$REGION" \
        --template-file-gcs-location "$TEMPLATE" \
        --parameters "audio=$AUDIO" \
        --parameters "midi=$MIDI" \
        --parameters "out=$OUT" \
        --parameters "top_k=$TOP_K" \
        --parameters "sdk_container_image=$IMAGE"
}

for step in $STEPS; do
    case "$step" in
        build) build ;;
        run) run ;;
        *) echo "unknown step '$step' (build, run)" >&2; exit 2 ;;
    esac
done
