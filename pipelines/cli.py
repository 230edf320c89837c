"""The `mirmatch` command line: run, query, report, demo, train."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import warnings
from pathlib import Path


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _run_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--top-k", type=int, default=5, help="matches kept per MIDI file (default 5)")
    parser.add_argument("--candidates", type=int, default=100,
                        help="audio candidates per MIDI file kept by the track-code Hamming search (default 100)")
    parser.add_argument("--refine", type=int, default=10,
                        help="of those, how many hash-sequence DTW keeps for CQT alignment (default 10)")
    parser.add_argument("--model", default=None, help="encoder weights to use (default: the shipped model); "
                        "append '+windows' (e.g. learned+windows) to search 30-second window codes at stage 1 too")
    parser.add_argument("--cluster-similarity", type=float, default=None,
                        help="also require this verified similarity of a version edge (default: none; an edge "
                             "counts when it stands out from both tracks' similarities to unrelated tracks, see "
                             "README 'How decisions are made')")
    parser.add_argument("--calibration", default=None, metavar="FILE",
                        help="decision settings written by `mirmatch calibrate` (default: the shipped ones)")
    parser.add_argument("--version-candidates", type=_non_negative_int, default=20,
                        help="nearest neighbours per track verified by alignment for the clusters (default 20)")
    parser.add_argument("--state", default="", metavar="DIR",
                        help="results kept between runs, reused for files whose content is unchanged "
                             "(default: OUT/_state)")
    parser.add_argument("--no-state", action="store_true", help="analyse everything afresh and keep nothing")
    parser.add_argument("--run-id", default=None,
                        help="name of this run's history partition (default: its UTC start time)")
    parser.add_argument("--no-history", action="store_true",
                        help="keep only the latest tables, not OUT/history/<table>/run=<id>/")
    parser.add_argument("--keep-runs", type=_positive_int, default=None, metavar="N",
                        help="after publishing, delete the history of all but the newest N completed runs "
                             "(default: keep every run)")
    parser.add_argument("--no-report", action="store_true",
                        help="do not write the run report OUT/report/index.html after publishing the tables")
    parser.add_argument("--export-aligned-midi", action="store_true",
                        help="also write each match's MIDI file re-timed onto its recording, "
                             "OUT/aligned_midi/<audio_id>/<midi_id>.mid")
    parser.add_argument("--export-jams", action="store_true",
                        help="also write each ok track's segments as JAMS (segment_open), OUT/jams/<track_id>.jams")
    parser.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                        help="worker processes on this machine (default: one per core; 1 runs in one process); "
                             "ignored with another --runner")
    parser.add_argument("--search-shards", type=_positive_int, default=None, metavar="N",
                        help="shards of the audio track codes searched by stage 1, each by one worker (default: one "
                             "per 100,000 recordings); results do not depend on it")
    parser.add_argument("-v", "--verbose", action="store_true", help="show Beam's own log")


def mirmatch_version() -> str:
    """The installed package's version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mirmatch")
    except PackageNotFoundError:  # run from a checkout that was not installed
        return "unknown (not installed)"


def unknown_options(beam_args: list[str]) -> list[str]:
    """The flags among ``beam_args`` that no Beam pipeline option defines (their values left out)."""
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

    parser = _BeamArgumentParser(allow_abbrev=False)
    for cls in {str(c): c for c in PipelineOptions.__subclasses__()}.values():
        cls._add_argparse_args(parser)
    _, unknown = parser.parse_known_args(beam_args)
    return [arg for arg in unknown if arg.startswith("-")]


def reject_unknown_options(parser: argparse.ArgumentParser, beam_args: list[str]) -> None:
    """Exit 2 (argparse's usage error) naming each option neither mirmatch nor Beam knows, with the closest
    known option as a suggestion: a mistyped option must not be ignored while the run goes on."""
    import difflib

    unknown = unknown_options(beam_args)
    if not unknown:
        return
    known = [o for action in _all_actions(parser) for o in action.option_strings if o.startswith("--")]
    hints = []
    for flag in unknown:
        close = difflib.get_close_matches(flag.split("=", 1)[0], known, n=1, cutoff=0.6)
        hints.append(f"{flag} (did you mean {close[0]}?)" if close else flag)
    parser.error(f"unrecognized arguments: {', '.join(hints)}; options that are not mirmatch's must be Beam "
                 "pipeline options (--runner, --direct_num_workers, --project, ...)")


def _all_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The actions of ``parser`` and of its sub-commands' parsers."""
    actions = list(parser._actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                actions += sub._actions
    return actions


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mirmatch", description="Match MIDI files to audio recordings, cluster versions, segment tracks.",
        epilog="Options not listed here (--runner, --direct_num_workers, --project, ...) go to Beam.")
    parser.add_argument("--version", action="version", version=f"mirmatch {mirmatch_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the whole pipeline and write the Parquet tables",
                         description="Run every stage on the inputs and write the tables under --out. "
                                     "Unknown options are passed to Beam (e.g. --runner DataflowRunner).")
    run.add_argument("--audio", action="append", default=[], metavar="PATTERN",
                     help="audio files: a glob (local or gs://) or @manifest.txt; repeatable")
    run.add_argument("--midi", action="append", default=[], metavar="PATTERN",
                     help="MIDI files: a glob or @manifest.txt; repeatable (at least one --audio or --midi)")
    run.add_argument("--out", required=True, help="output folder (local or gs://)")
    _run_args(run)

    query = sub.add_parser("query", help="run SQL over the output tables with DuckDB",
                           description="Each table (tracks, matches, alignments, clusters, segments, errors) "
                                       "is a view by name.")
    query.add_argument("dir", help="output folder of a run")
    query.add_argument("sql", help='e.g. "SELECT * FROM matches WHERE is_match"')
    query.add_argument("--limit", "--max-rows", dest="limit", type=_non_negative_int, default=100,
                       help="rows to return (default 100; 0 = all)")
    query.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table",
                       help="table (aligned text, every row shown), csv, json (JSON Lines) or parquet")
    query.add_argument("--output", "-o", default=None, metavar="FILE",
                       help="write the result to FILE instead of standard output (needed for parquet)")

    report = sub.add_parser("report", help="rebuild the run report OUT/report/index.html from an output folder",
                            description="Write OUT/report/index.html (a static page, figures as PNG files beside "
                                        "it) from the latest tables of a finished output folder; `mirmatch run` "
                                        "writes it itself unless given --no-report.")
    report.add_argument("dir", help="output folder of a finished run")
    report.add_argument("--top-matches", type=_non_negative_int, default=12,
                        help="accepted matches whose alignment is drawn, most confident first (default 12)")
    report.add_argument("--sampled-tracks", type=_non_negative_int, default=6,
                        help="tracks whose self-similarity and segments are drawn (default 6)")
    report.add_argument("--max-rows", type=_non_negative_int, default=500,
                        help="rows listed per table at most (default 500)")

    calibrate = sub.add_parser(
        "calibrate", help="re-fit the match and version decisions on labelled pairs",
        description="Re-fit the decision settings (the is_match margin cut, the version z cut) on labelled pairs "
                    "against the finished run in DIR, and write them to a file that `mirmatch run --calibration` "
                    "uses. Labelled pairs the run did not score are aligned now (from the state folder's analyses, "
                    "else from the files).")
    calibrate.add_argument("dir", help="output folder of a finished run")
    calibrate.add_argument("--pairs", required=True, metavar="CSV",
                           help="labels: columns uri_a, uri_b, same (true/false), optional kind (match|version)")
    calibrate.add_argument("--write", required=True, metavar="FILE", help="where to write the settings (JSON)")
    calibrate.add_argument("--state", default=None, metavar="DIR", help="the run's state folder (default DIR/_state)")
    calibrate.add_argument("--model", default=None, help="the run's encoder weights, as `run --model`")

    demo = sub.add_parser("demo", help="build the demo corpus if needed and run the pipeline on it",
                          description="Builds a corpus of MIDI files from Debian packages and corrupted "
                                      "renderings of some of them, runs `mirmatch run`, prints a summary.")
    demo.add_argument("--corpus", default=".cache/demo-corpus", help="where the corpus is built")
    demo.add_argument("--out", default="demo-out", help="output folder")
    demo.add_argument("--n-midi", type=int, default=24)
    demo.add_argument("--n-matched", type=int, default=16)
    demo.add_argument("--n-distractors", type=int, default=8)
    demo.add_argument("--max-duration", type=float, default=60.0, help="seconds kept of each piece")
    _run_args(demo)

    state = sub.add_parser("state", help="manage the state folder kept between runs",
                           description="prune: remove the results of other analysis versions (other code or "
                                       "models) and entries of older formats from the state folder.")
    state.add_argument("action", choices=["prune"])
    state.add_argument("dir", nargs="?", default=None, help="output folder whose OUT/_state is pruned")
    state.add_argument("--state", default=None, metavar="DIR", help="the state folder itself (as given to run)")
    state.add_argument("--model", default=None, help="the --model of the runs whose results are kept")

    train = sub.add_parser("train", help="train the learned hash encoders",
                           description="Train the learned hash encoders (frame and sequence networks for audio and "
                                       "MIDI) on the training split of the Debian MIDI collections and music21's "
                                       "Bach chorales; with the "
                                       "defaults this reproduces learned-hash-v4 (the shipped learned-hash-v5 is "
                                       "fine-tuned from it by --realistic). Writes WEIGHTS.pt and "
                                       "WEIGHTS.json (configuration and losses); pass the .pt file as --model.")
    train.add_argument("--out", default=None, help="where to write the weights (default: encoders/weights/"
                       "learned-hash-v4.pt, or learned-hash-v5.pt with --realistic)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--frame-steps", type=int, default=None, help="phase-1 optimisation steps")
    train.add_argument("--sequence-steps", type=int, default=None, help="phase-2 optimisation steps")
    train.add_argument("--versions", type=int, default=None, help="corrupted renderings per training piece")
    train.add_argument("--frames-from", default=None,
                       help="reuse the frame encoders of these weights and train only the sequence encoders")
    train.add_argument("--realistic", action="store_true",
                       help="fine-tune earlier weights (--finetune-from, default learned-hash-v4) on renderings closer "
                            "to real recordings: room, EQ, compression, detuning, codecs, a real recording of the FIT "
                            "packages mixed under it, against imperfect MIDI; with the defaults this reproduces "
                            "learned-hash-v5 (encoders/weights/learned-hash-v5.pt)")
    train.add_argument("--finetune-from", default=None, help="the weights --realistic fine-tunes (default: v4)")
    train.add_argument("--cover", action="store_true", help="train the version (cover) embedding instead: triplet "
                       "loss on music21 tune families; writes encoders/weights/cover-embedding-v2.pt by default")
    train.add_argument("--cover-steps", type=int, default=None, help="optimisation steps of the cover embedding")
    return parser


def _quiet_beam(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(message)s",
                        datefmt="%Y-%m-%d %H:%M:%S")
    logging.getLogger("mirmatch").setLevel(logging.INFO)
    if not verbose:
        for name in ("apache_beam", "root"):
            logging.getLogger(name).setLevel(logging.ERROR)
        logging.getLogger().setLevel(logging.ERROR)
        warnings.filterwarnings("ignore")


def run_config(args: argparse.Namespace, beam_args: list[str]):
    """The RunConfig for parsed `mirmatch run` (or `demo`) arguments."""
    from pipelines.pipeline import RunConfig

    return RunConfig(audio=args.audio, midi=args.midi, out=args.out, top_k=args.top_k,
                     n_candidates=args.candidates, n_refine=args.refine, model=args.model, beam_args=beam_args,
                     state=None if args.no_state else args.state, run_id=args.run_id,
                     history=not args.no_history, cluster_similarity=args.cluster_similarity,
                     calibration=args.calibration,
                     version_candidates=args.version_candidates, keep_runs=args.keep_runs,
                     export_aligned_midi=args.export_aligned_midi, export_jams=args.export_jams,
                     workers=args.workers, search_shards=args.search_shards)


#: Exit code of a run that completed but could analyse none of its inputs (../shared/CONTRACT.md).
NOTHING_ANALYSED = 3


def ok_tracks(out: str) -> int:
    """Rows of the latest `tracks` table under ``out`` with status ok."""
    from apache_beam.io.filesystems import FileSystems

    from pipelines.invariants import read_rows

    files = FileSystems.match([FileSystems.join(out, "tracks", "*.parquet")])[0].metadata_list
    return sum(row["status"] == "ok" for row in read_rows([m.path for m in files], ["status"]))


def _run(args: argparse.Namespace, beam_args: list[str]) -> dict:
    from pipelines.cloud import check_gcs_access, gcs_paths
    from pipelines.progress import timer_summary

    print(f"mirmatch: running on {args.out} ...", file=sys.stderr, flush=True)
    check_gcs_access(gcs_paths([*args.audio, *args.midi, args.out, args.state, *beam_args]))  # before Beam loads
    from pipelines.pipeline import run

    cfg = run_config(args, beam_args)
    counters = run(cfg)
    print("mirmatch: done " + json.dumps(counters), file=sys.stderr)
    print(summary_line(counters), file=sys.stderr)
    print(timer_summary(counters.get("timers", {})), file=sys.stderr)
    if not args.no_report:
        _write_report(args.out, cfg.settings(), counters)
    return counters


def _write_report(out: str, settings: dict, counters: dict) -> None:
    """The run report, after publishing; the tables are what counts, so a report that fails is a warning."""
    from pipelines.report import build_report

    try:
        report = build_report(out, settings=settings, counters=counters)
    except Exception as exc:
        logging.getLogger("mirmatch").debug("report failed", exc_info=True)
        print(f"mirmatch: warning: the run report could not be written ({type(exc).__name__}: {exc}); "
              f"`mirmatch report {out}` retries it", file=sys.stderr)
        return
    print(f"mirmatch: report {report.index} ({report.size_bytes >> 10} KB)", file=sys.stderr)


def _calibrate(args: argparse.Namespace) -> int:
    from apache_beam.io.filesystems import FileSystems

    from pipelines.calibrate import LabelError, calibrate, read_labels

    try:
        with FileSystems.open(args.pairs) as f:
            labels = read_labels(f.read().decode("utf-8"), args.pairs)
        settings, lines = calibrate(args.dir, labels, args.state, args.model)
    except (LabelError, FileNotFoundError, ValueError) as exc:
        print(f"mirmatch: error: {exc}", file=sys.stderr)
        return 2
    with FileSystems.create(args.write) as f:
        f.write(settings.to_json().encode("utf-8"))
    for line in lines:
        print(f"mirmatch: {line}", file=sys.stderr)
    print(f"mirmatch: wrote {args.write}; use it with `mirmatch run --calibration {args.write}`", file=sys.stderr)
    return 0


def check_calibration(parser: argparse.ArgumentParser, path: str | None) -> None:
    """A usage error (exit 2) for a --calibration file that cannot be read, before anything runs."""
    if not path:
        return
    from pipelines.pipeline import RunConfig

    try:
        RunConfig([], [], "", calibration=path).decisions()
    except Exception as exc:
        parser.error(f"--calibration {path}: {exc}")


def _report(args: argparse.Namespace) -> int:
    from pipelines.report import ReportError, ReportLimits, build_report

    limits = ReportLimits(top_matches=args.top_matches, sampled_tracks=args.sampled_tracks, max_rows=args.max_rows)
    try:
        report = build_report(args.dir, limits=limits)
    except ReportError as exc:
        print(f"mirmatch: error: {exc}", file=sys.stderr)
        return 2
    figures = ", ".join(f"{n} {kind}" for kind, n in report.figures.items())
    print(f"mirmatch: report {report.index} ({report.size_bytes >> 10} KB; figures: {figures})", file=sys.stderr)
    return 0


def summary_line(counters: dict) -> str:
    """What the run did, in words: how much was computed and how much reused."""
    c = counters
    return (f"mirmatch: {c.get('tracks_ok', 0)} tracks ok, {c.get('tracks_error', 0)} failed (see errors); "
            f"analysed {c.get('tracks_analyzed', 0)}, reused {c.get('tracks_reused', 0)}; aligned "
            f"{c.get('pairs_aligned', 0)} pairs, reused {c.get('pairs_reused', 0)}; {c.get('matches', 0)} "
            f"matches; {c.get('seconds', 0)} s")


def _state(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    from apache_beam.io.filesystems import FileSystems

    from encoders.analyze import analysis_key
    from pipelines.pipeline import STATE_DIR
    from pipelines.state import prune

    if bool(args.dir) == bool(args.state):
        parser.error("mirmatch state prune: give an output folder OUT or --state DIR (one of them)")
    root = args.state or FileSystems.join(args.dir, STATE_DIR)
    key = analysis_key(args.model)
    removed, freed = prune(root, key)
    for path in removed:
        print(f"mirmatch: removed {path}", file=sys.stderr)
    print(f"mirmatch: state {root}: kept analysis version {key}; removed {len(removed)} folders or old entries, "
          f"freed {freed / 2**20:.1f} MB", file=sys.stderr)


def _query(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    from pipelines.query import query_arrow, write_result

    if args.format == "parquet" and not args.output:
        parser.error("--format parquet needs --output FILE")
    result = query_arrow(args.dir, args.sql, args.limit)
    if result is None:
        return
    if args.output:
        with open(args.output, "wb") as f:
            write_result(result, args.format, f)
    else:
        write_result(result, args.format, sys.stdout.buffer)
        sys.stdout.flush()


#: Real recordings among the demo's distractors: Debian's asc-music (three game pieces, 18 minutes), installed
#: by `make setup`; the demo runs without them where the package is missing.
DEMO_REAL_DISTRACTORS = "/usr/share/games/asc/music/*.mp3"


def real_distractors() -> list[str]:
    import glob

    return sorted(glob.glob(DEMO_REAL_DISTRACTORS))


def _demo(args: argparse.Namespace, beam_args: list[str]) -> None:
    from encoders.training.corpus import build_demo_corpus
    from pipelines.demo import summarise

    print(f"mirmatch demo: corpus in {args.corpus}", file=sys.stderr, flush=True)
    truth = build_demo_corpus(args.corpus, n_midi=args.n_midi, n_matched=args.n_matched,
                              n_distractors=args.n_distractors, max_duration_s=args.max_duration)
    args.audio = [str(Path(args.corpus) / "audio" / "*")]
    args.midi = [str(Path(args.corpus) / "midi" / "*.mid")]
    if real_distractors():  # real recordings no MIDI file transcribes: every decision must reject them
        args.audio.append(DEMO_REAL_DISTRACTORS)
    _run(args, beam_args)
    text, _ = summarise(args.out, truth)
    print(text)


def _train(args: argparse.Namespace) -> None:
    if args.cover:
        from encoders.training.versions import train_and_save
        from encoders.versions.embedding import DEFAULT_WEIGHTS as COVER_WEIGHTS

        steps = {} if args.cover_steps is None else {"steps": args.cover_steps}
        meta = train_and_save(args.out or COVER_WEIGHTS, seed=args.seed, log=lambda line: print(line, flush=True),
                              **steps)
        print(f"mirmatch train --cover: done; clustering threshold {meta['cluster_similarity']}")
        return
    if args.realistic:
        from encoders.training.codes_finetune import V5_WEIGHTS, FinetuneConfig, finetune

        ft = FinetuneConfig(seed=args.seed)
        for name in ("frame_steps", "sequence_steps"):
            if getattr(args, name) is not None:
                setattr(ft, name, getattr(args, name))
        if args.finetune_from:
            ft.base = args.finetune_from
        path = finetune(args.out or V5_WEIGHTS, ft, log=lambda line: print(line, flush=True))
        print(f"mirmatch train --realistic: done; use it with --model {path}")
        return
    from encoders.codes.learned import V4_WEIGHTS
    from encoders.training.codes import TrainConfig, train

    cfg = TrainConfig(seed=args.seed)
    for name in ("frame_steps", "sequence_steps", "versions"):
        if getattr(args, name) is not None:
            setattr(cfg, name, getattr(args, name))
    path = train(args.out or V4_WEIGHTS, cfg, log=lambda line: print(line, flush=True),
                 frames_from=args.frames_from)
    print(f"mirmatch train: done; use it with --model {path}")


def error_line(exc: BaseException) -> str:
    """One line saying why the run failed: a broken run invariant's own message wherever the runner put it
    (runners wrap a worker's exception in their own text), else the exception's first line."""
    from pipelines.invariants import INVARIANT_MARK

    lines = str(exc).splitlines()
    for line in lines:
        if INVARIANT_MARK in line:
            return line[line.index(INVARIANT_MARK):].strip()
    if lines and lines[0].startswith("Traceback"):  # a worker process's exception, as the runner relays it
        for line in reversed(lines):
            found = re.match(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.+?)(?: \[while running .*\])?$", line.strip())
            if found:
                return f"mirmatch: error: {found.group(1)}: {found.group(2)}"
    return f"mirmatch: error: {type(exc).__name__}: {exc}".splitlines()[0]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    if args.command in ("query", "train", "report", "calibrate", "state") and beam_args:
        parser.error(f"unrecognized arguments: {' '.join(beam_args)}")
    if args.command in ("run", "demo"):
        reject_unknown_options(parser, beam_args)
    if args.command == "run" and not (args.audio or args.midi):
        parser.error("give at least one --audio or --midi pattern")
    if args.command in ("run", "demo"):
        check_calibration(parser, args.calibration)
    _quiet_beam(getattr(args, "verbose", False))
    try:
        if args.command == "run":
            _run(args, beam_args)
            if ok_tracks(args.out) == 0:
                print(f"mirmatch: no input could be analysed; {args.out}/errors says why for each file",
                      file=sys.stderr)
                return NOTHING_ANALYSED
        elif args.command == "demo":
            _demo(args, beam_args)
        elif args.command == "query":
            _query(args, parser)
        elif args.command == "report":
            return _report(args)
        elif args.command == "calibrate":
            return _calibrate(args)
        elif args.command == "state":
            _state(args, parser)
        elif args.command == "train":
            _train(args)
    except KeyboardInterrupt:
        print("mirmatch: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if getattr(args, "verbose", False):
            raise
        print(error_line(exc), file=sys.stderr)
        return 1
    return 0


def entry() -> None:
    """The `mirmatch` command (and `python -m pipelines`): ``main``, then exit without the interpreter's teardown.

    Once ``main`` has returned, everything is written and closed (tables, report, lock). About one finished run
    in six then aborted during interpreter teardown ("terminate called without an active exception", exit -6:
    a native thread of one of the libraries still joinable when its owner is destroyed), turning a completed run
    into a failure for schedulers; leaving with ``os._exit`` after flushing skips that teardown."""
    import os

    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
