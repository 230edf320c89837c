"""Scale rehearsal: the pipeline's matching stages on synthetic analyses of 10k, 100k (and 1M) audio tracks.

The analysis is replaced by synthetic analyses of realistic size, generated on the workers: 30-second audio
clips (a 256-bit track code, 81 32-bit frame codes: 22050 / 1024 / 8 codes per second) and 3-minute MIDI
files (484 frame codes). Each MIDI query has one planted true clip: the clip's frame codes are a crop of the
query's with 12% of their bits flipped (3.9 of 32 wrong bits along the true path, the median in
encoders/weights/MODEL_CARD.md), and its track code differs from the query's in a number of bits drawn from
the distances of the 56 accepted true pairs of development runs (``TRUE_PAIR_HAMMING``: median 57 of 256).

The real Beam transform ``pipelines.match.ProposeCandidates`` runs on them in multi-processing mode
(``--workers``, default 2): the sharded track-code search, the merge of per-shard top-K, the join of frame
codes by audio id and hash-sequence DTW. Printed, one line per figure: wall time, time per stage (Beam
timers), peak memory of each process (the launcher included), the planted pairs ranked first by stage 2.
The single-worker steps of the clustering are measured each in a fresh process (peak memory): the version
nearest-neighbour search (``hashing.clustering.knn_graph``, 128-d embeddings) and the Leiden clustering
(``hashing.clustering.cluster_graph``) at ``--cluster-nodes`` nodes x 20 edges. Finally the cost of Raffel's
corpus (180k MIDI files x 1M clips) is extrapolated per stage in CPU-hours, beside his 225 CPU-days.

    python tests/bench/bench_scale.py [--sizes 10000 100000] [--queries 500] [--workers 2]
    python tests/bench/bench_scale.py --sizes 1000000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(HERE), str(REPO)]
logging.basicConfig(level=logging.ERROR)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), str(REPO), os.environ.get("PYTHONPATH")]))

import numpy as np  # noqa: E402
from _common import flip_bits, report  # noqa: E402

CODES_PER_S = 22050 / 1024 / 8
CLIP_CODES = round(30 * CODES_PER_S)  # 81
MIDI_CODES = round(180 * CODES_PER_S)  # 484
FRAME_FLIP = 3.9 / 32
#: Track-code Hamming distances (of 256 bits) of the accepted true pairs (rank 1, is_match) of three development
#: runs: the decision evaluation, the demo and the calibration corpus (56 pairs).
TRUE_PAIR_HAMMING = [19, 27, 27, 28, 32, 32, 33, 35, 35, 36, 40, 41, 41, 41, 42, 43, 43, 43, 44, 46, 46, 46, 50, 53,
                     53, 54, 54, 54, 55, 57, 58, 58, 60, 62, 63, 64, 65, 67, 67, 68, 71, 71, 74, 76, 78, 79, 80, 83, 85,
                     86, 86, 93, 94, 99, 107, 119]
CHUNK = 10_000  # synthetic audio tracks generated per element
SEED = 7

#: Costs measured elsewhere, for the extrapolation: analysis 48 s per media hour on one core (issue 17: 168 real
#: files, 7.4 h of audio and 6 h of MIDI in 649 s on 2 cores); CQT DTW of 10 survivors 0.55 s per query
#: (tests/bench/bench_cascade.py, README); version verification 2 ms per pair (bench_verification.py, issue 17).
ANALYSIS_S_PER_MEDIA_HOUR = 48.0
ALIGN_S_PER_QUERY = 0.55
VERIFY_S_PER_PAIR = 0.002
RAFFEL_CPU_DAYS = 225
LMD_MIDI, LMD_AUDIO, LMD_MIDI_MINUTES = 180_000, 1_000_000, 3.3  # 10k hours of MIDI (issue 17)


def track_id(kind: str, i: int) -> str:
    return hashlib.blake2b(f"{kind}{i}".encode(), digest_size=16).hexdigest()


def audio_uri(i: int) -> str:
    return f"synthetic://audio/{i:07d}.ogg"


def audio_chunk(c: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Track codes (m, 32) uint8 and frame codes (m, CLIP_CODES) uint32 of audio tracks c*CHUNK ..."""
    m = min(CHUNK, n - c * CHUNK)
    rng = np.random.default_rng([SEED, 0, c])
    return (rng.integers(0, 256, (m, 32), dtype=np.uint8),
            rng.integers(0, 2**32, (m, CLIP_CODES), dtype=np.uint64).astype(np.uint32))


def audio_elements(c: int, n: int):
    codes, frames = audio_chunk(c, n)
    for j in range(len(codes)):
        i = c * CHUNK + j
        yield audio_uri(i), track_id("a", i), codes[j], frames[j]


def planted(q: int, n: int) -> int:
    return (q * 2_654_435_761 + 12345) % n


def midi_element(q: int, n: int):
    """A 3-minute MIDI query whose planted clip is audio track ``planted(q, n)``."""
    rng = np.random.default_rng([SEED, 1, q])
    target = planted(q, n)
    codes, frames = audio_chunk(target // CHUNK, n)
    code, clip = codes[target % CHUNK], frames[target % CHUNK]
    bits = rng.choice(256, int(rng.choice(TRUE_PAIR_HAMMING)), replace=False)
    flip = np.zeros(256, np.uint8)
    flip[bits] = 1
    midi_code = code ^ np.packbits(flip)
    midi_frames = rng.integers(0, 2**32, MIDI_CODES, dtype=np.uint64).astype(np.uint32)
    start = int(rng.integers(0, MIDI_CODES - CLIP_CODES))
    midi_frames[start:start + CLIP_CODES] = flip_bits(clip, FRAME_FLIP, rng)
    return f"synthetic://midi/{q:06d}.mid", track_id("m", q), midi_code, midi_frames


def check(element, n: int):
    """(midi uri, [(audio uri, hamming, hash dtw)]) -> (found in stage 2, ranked first)."""
    midi_uri, refs = element
    target = audio_uri(planted(int(midi_uri.rsplit("/", 1)[1].split(".")[0]), n))
    refs = sorted(refs, key=lambda r: (r[2], r[0]))
    return int(any(r[0] == target for r in refs)), int(bool(refs) and refs[0][0] == target)


class PeakMemory:
    """Peak resident memory (VmHWM) of this process and of every process below it, sampled every 0.2 s."""

    def __init__(self):
        self.peaks: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()

    def __enter__(self):
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _loop(self):
        while not self._stop.wait(0.2):
            for pid in descendants(os.getpid()) | {os.getpid()}:
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                    comm = Path(f"/proc/{pid}/comm").read_text().strip()
                except OSError:
                    continue
                hwm = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")), 0)
                if comm.startswith("python"):  # not the shells that start Beam's workers
                    role = "launcher" if pid == os.getpid() else "worker"  # Beam's worker processes
                    self.peaks[pid] = (role, max(hwm / 1024, self.peaks.get(pid, ("", 0))[1]))


def descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def rehearse(n: int, queries: int, workers: int, shards: int | None) -> dict:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from hashing.cascade import hash_dtw_batch
    from pipelines.match import ACCOUNTS, ProposeCandidates
    from pipelines.pipeline import runner_args, stage_timers

    hash_dtw_batch(np.ones(4, np.uint32), [np.ones(3, np.uint32)])  # numba compiles into its disk cache once
    out = tempfile.mkdtemp(prefix="bench-scale-")
    args = runner_args([], workers)
    started = time.perf_counter()
    with PeakMemory() as memory:
        p = beam.Pipeline(options=PipelineOptions(args))
        audio = (p | "Chunks" >> beam.Create(range(-(-n // CHUNK))) | "Spread" >> beam.Reshuffle()
                 | "Synthetic audio" >> beam.FlatMap(audio_elements, n=n))
        midi = (p | "Queries" >> beam.Create(range(queries)) | "Spread queries" >> beam.Reshuffle()
                | "Synthetic MIDI" >> beam.Map(midi_element, n=n))
        proposed = (audio, midi) | "Hash cascade" >> ProposeCandidates(100, 10, shards)
        _ = (proposed.candidates
             | "By query" >> beam.Map(lambda kv: (kv[1].midi_uri, (kv[1].audio_uri, kv[1].hamming_distance,
                                                                  kv[1].hash_dtw)))
             | "Group" >> beam.GroupByKey()
             | "Check" >> beam.Map(check, n=n)
             | "Sum" >> beam.CombineGlobally(lambda rows: [sum(c) for c in zip(*rows, strict=True)] if rows else [0, 0])
             | "Write" >> beam.Map(lambda s: Path(out, "found.json").write_text(json.dumps(s))))
        _ = (proposed[ACCOUNTS] | "Count accounts" >> beam.combiners.Count.Globally()
             | "Write accounts" >> beam.Map(lambda c: Path(out, "accounts.json").write_text(json.dumps(c))))
        result = p.run()
        result.wait_until_finish()
    wall = time.perf_counter() - started
    found, first = json.loads(Path(out, "found.json").read_text())
    accounts = json.loads(Path(out, "accounts.json").read_text())
    return {"wall_s": wall, "found": found, "first": first, "accounts": accounts, "timers": stage_timers(result),
            "peaks": memory.peaks}


STEP_SCRIPT = """
import json, sys, time
import numpy as np
sys.path.insert(0, {repo!r})
from hashing.clustering import cluster_graph, knn_graph
def hwm():  # this process's own peak (ru_maxrss would include the launcher's peak, inherited through exec)
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
step, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
base = hwm()
started = time.perf_counter()
if step == "knn":  # groups of 5 versions around random centres: edges above the 0.5 cosine floor
    x = rng.standard_normal((n // 5 + 1, 128), dtype=np.float32)[np.arange(n) // 5]
    x += 0.6 * rng.standard_normal((n, 128), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    a, b, s = knn_graph(x, 20, 0.5)
    edges = len(a)
else:
    ids = [f"{{i:032x}}" for i in range(n)]
    a = np.repeat(np.arange(n), 20)
    b = (a + rng.integers(1, 1000, len(a))) % n  # 20 edges per node, mostly local: communities to find
    w = rng.random(len(a)).astype(np.float32)
    edges = [(ids[i], ids[j], float(s)) for i, j, s in zip(a, b, w)]
    del a, b, w
    labels = cluster_graph(ids, edges, [])
    edges = len(edges)
print(json.dumps({{"seconds": time.perf_counter() - started, "edges": int(edges), "base_mb": base,
                  "peak_mb": hwm()}}))
"""


def single_worker_step(step: str, n: int) -> dict:
    """One clustering step in a fresh process: its wall time and peak memory."""
    proc = subprocess.run([sys.executable, "-c", STEP_SCRIPT.format(repo=str(REPO)), step, str(n)],
                          capture_output=True, text=True)
    if proc.returncode:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shards", type=int, default=None, help="default: one per 100k audio tracks")
    parser.add_argument("--cluster-nodes", type=int, nargs="*", default=[120_000, 1_200_000],
                        help="clustering sizes (1.2M x 20 edges peaked at 9.9 GB and took 14 min on 2 cores)")
    parser.add_argument("--knn-sizes", type=int, nargs="*", default=None, help="default: --sizes")
    args = parser.parse_args()
    measured = {}
    for n in args.sizes:
        r = rehearse(n, args.queries, args.workers, args.shards)
        measured[n] = r
        t = r["timers"]
        report(f"N={n}: wall", r["wall_s"], "s", f"{args.queries} queries, {args.workers} worker processes, "
               f"synthetic analyses included")
        for stage in ("search_shard", "search"):
            if stage in t:
                report(f"N={n}: {stage} busy", t[stage]["total_s"], "s",
                       f"{t[stage]['n']} x {t[stage]['mean_ms']} ms, max {t[stage]['max_ms']} ms (Beam timer)")
        report(f"N={n}: queries accounted", r["accounts"], "", "one accounts record per query expected")
        report(f"N={n}: planted pair kept by stage 2", r["found"] / args.queries, "", f"{r['found']}/{args.queries}")
        report(f"N={n}: planted pair ranked first", r["first"] / args.queries, "", f"{r['first']}/{args.queries}")
        for pid, (role, mb) in sorted(r["peaks"].items(), key=lambda kv: (kv[1][0], kv[0])):
            report(f"N={n}: peak memory {role} {pid}", mb / 1024, "GB")
        workers = [mb for role, mb in r["peaks"].values() if role == "worker"]
        if workers:
            report(f"N={n}: peak memory of the largest worker", max(workers) / 1024, "GB")
    sizes = sorted(measured)
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        w = {n: max((mb for role, mb in measured[n]["peaks"].values() if role == "worker"), default=0) for n in sizes}
        if w[small]:
            report(f"largest worker peak, N={large} / N={small}", w[large] / w[small], "x")
    for n in args.knn_sizes if args.knn_sizes is not None else args.sizes:
        s = single_worker_step("knn", n)
        detail = s.get("error") or f"{s['edges']} edges in {s['seconds']:.1f} s, imports {s['base_mb'] / 1024:.2f} GB"
        report(f"single worker: version kNN search N={n} peak", s.get("peak_mb", float("nan")) / 1024, "GB", detail)
    for n in args.cluster_nodes:
        s = single_worker_step("cluster", n)
        detail = s.get("error") or f"{s['edges']} edges, Leiden in {s['seconds']:.1f} s"
        report(f"single worker: clustering {n} nodes x 20 edges peak", s.get("peak_mb", float("nan")) / 1024, "GB",
               detail)
    extrapolate(measured[sizes[-1]], sizes[-1], args.queries, args.workers)


def extrapolate(r: dict, n: int, queries: int, workers: int) -> None:
    """CPU-hours of each stage for 180k MIDI files x 1M 30-s clips, from the largest rehearsal.

    Stage 1 scales with queries x audio tracks, stage 2 with queries; the rest of the rehearsal's CPU time
    (synthesis, shuffles, joins, Beam: wall time x workers, less both stages) with the elements moved: audio
    tracks plus 100 candidates per query."""
    t = r["timers"]
    stage1_per_pair = t["search_shard"]["total_s"] / (queries * n)  # flat search cost per query per audio track
    # each worker's first query loads numba's compiled kernel (about a second): left out of the per-query cost
    first = t["search"]["max_ms"] / 1000 * workers
    stage2_per_query = max(t["search"]["total_s"] - first, 0) / max(queries - workers, 1)
    rest = max(r["wall_s"] * workers - t["search_shard"]["total_s"] - t["search"]["total_s"], 0)
    rest_per_element = rest / (n + 100 * queries)
    hours = {
        "analysis of 1M 30-s clips": LMD_AUDIO * 30 / 3600 * ANALYSIS_S_PER_MEDIA_HOUR / 3600,
        "analysis of 180k MIDI files": LMD_MIDI * LMD_MIDI_MINUTES / 60 * ANALYSIS_S_PER_MEDIA_HOUR / 3600,
        "stage 1 (sharded search)": stage1_per_pair * LMD_MIDI * LMD_AUDIO / 3600,
        "stage 2 (hash DTW)": stage2_per_query * LMD_MIDI / 3600,
        "Beam around the search (shuffles, joins; synthesis included)":
            rest_per_element * (LMD_AUDIO + 100 * LMD_MIDI) / 3600,
        "CQT alignment of 10 survivors": ALIGN_S_PER_QUERY * LMD_MIDI / 3600,
        "version verification, 28 pairs per track": VERIFY_S_PER_PAIR * 28 * (LMD_MIDI + LMD_AUDIO) / 3600,
    }
    for stage, h in hours.items():
        report(f"LMD extrapolation: {stage}", h, "CPU-hours")
    total = sum(hours.values())
    report("LMD extrapolation: total", total / 24, "CPU-days", f"Raffel & Ellis: {RAFFEL_CPU_DAYS} CPU-days, "
           f"ratio {total / 24 / RAFFEL_CPU_DAYS:.3f}")


if __name__ == "__main__":
    main()
