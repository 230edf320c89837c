"""The run report's figures, drawn with matplotlib (Agg, no display) and ``librosa.display``; each function
draws one PNG file from arrays and rows, sized to stay small (about 50-150 KB each)."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files only: never a window, also where a display exists

import librosa  # noqa: E402
import librosa.display  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import FancyArrowPatch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from encoders.features import FMIN_MIDI, FRAME_RATE, HOP_LENGTH  # noqa: E402
from encoders.media import SAMPLE_RATE  # noqa: E402
from hashing.align import alignment_features, pool_frames  # noqa: E402
from hashing.dtw import cosine_cost  # noqa: E402

DPI = 80
#: Frames per axis drawn at most: longer tracks are averaged k frames at a time for the figure only.
MAX_DRAW_FRAMES = 600
MODALITY_COLOURS = {"audio": "tab:orange", "midi": "tab:blue"}


def pooled(features: np.ndarray, max_frames: int = MAX_DRAW_FRAMES) -> tuple[np.ndarray, int]:
    """``features`` (n, d) averaged k frames at a time so that at most ``max_frames`` remain; returns (pooled, k)."""
    k = max(1, math.ceil(len(features) / max_frames))
    return pool_frames(features, k), k


def _save(fig: Figure, path: str | os.PathLike) -> None:
    """The figure as a 256-colour PNG (about a third of the size of a true-colour one, alike to the eye)."""
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    buffer.seek(0)
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(colors=256).save(path, format="PNG", optimize=True)


def _cqt_axis(ax, cqt: np.ndarray, k: int, label: str) -> None:
    """A log-CQT (n_frames / k, 48) drawn with librosa.display: time across, notes up."""
    librosa.display.specshow(cqt.T, sr=SAMPLE_RATE, hop_length=HOP_LENGTH * k, x_axis="time", y_axis="cqt_note",
                             fmin=librosa.midi_to_hz(FMIN_MIDI), bins_per_octave=12, cmap="gray_r", ax=ax)
    ax.set_ylabel(label)


def alignment_figure(path: str | os.PathLike, midi_cqt: np.ndarray | None, audio_cqt: np.ndarray | None,
                     midi_times_s: Sequence[float], audio_times_s: Sequence[float], title: str,
                     note: str = "") -> None:
    """The alignment path (the `alignments` time map, seconds) drawn over the cosine cost matrix of the two
    tracks' alignment features (``hashing.align.alignment_features``, what the run aligned), with the MIDI
    rendering's CQT along the left (time up) and the recording's CQT below (time across).

    ``midi_cqt``, ``audio_cqt``: (n, 48) log-CQTs at FRAME_RATE, or None when unavailable (then the path is
    drawn alone and ``note`` says why)."""
    fig = Figure(figsize=(8, 6.4))
    grid = fig.add_gridspec(2, 2, width_ratios=[1, 4], height_ratios=[4, 1.3], wspace=0.05, hspace=0.08)
    ax = fig.add_subplot(grid[0, 1])
    if midi_cqt is not None and audio_cqt is not None:
        m, km = pooled(alignment_features(midi_cqt))
        a, ka = pooled(alignment_features(audio_cqt))
        midi_s, audio_s = len(midi_cqt) / FRAME_RATE, len(audio_cqt) / FRAME_RATE
        ax.imshow(cosine_cost(m, a), origin="lower", aspect="auto", cmap="viridis_r",
                  extent=(0, audio_s, 0, midi_s), interpolation="nearest")
        left = fig.add_subplot(grid[0, 0], sharey=ax)
        mp, _ = pooled(midi_cqt)
        left.imshow(mp, origin="lower", aspect="auto", cmap="gray_r", extent=(0, mp.shape[1], 0, midi_s),
                    interpolation="nearest")
        left.set_xticks([0, 12, 24, 36, 48], ["C2", "C3", "C4", "C5", "C6"], fontsize=7)
        left.set_ylabel("MIDI rendering: time (s)")
        ax.tick_params(labelleft=False)
        below = fig.add_subplot(grid[1, 1], sharex=ax)
        ap, _ = pooled(audio_cqt)
        _cqt_axis(below, ap, ka, "recording")
        ax.tick_params(labelbottom=False)
        ax.set_xlim(0, audio_s)
        ax.set_ylim(0, midi_s)
    else:
        ax.set_xlabel("recording: time (s)")
        ax.set_ylabel("MIDI rendering: time (s)")
    ax.plot(audio_times_s, midi_times_s, color="red", linewidth=1.5, label="alignment path")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title, fontsize=8, loc="left")
    if note:
        fig.text(0.02, 0.02, note, fontsize=8, color="dimgray")
    _save(fig, path)


def self_similarity(cqt: np.ndarray, max_frames: int = MAX_DRAW_FRAMES) -> tuple[np.ndarray, int]:
    """Cosine self-similarity (n', n') in [-1, 1] of a log-CQT (n, 48) standardised per bin and averaged k
    frames at a time (n' = n / k <= max_frames); returns (matrix, k)."""
    x, k = pooled(alignment_features(cqt), max_frames)
    return 1.0 - cosine_cost(x, x), k


def ssm_figure(path: str | os.PathLike, cqt: np.ndarray, segments: list[dict], title: str, note: str = "") -> None:
    """A track's self-similarity matrix with its `segments` (rows with start_s, end_s, label) marked: a
    coloured band per section with its label above, and the boundaries as lines across the matrix."""
    ssm, k = self_similarity(cqt)
    fig = Figure(figsize=(6, 6.6))
    grid = fig.add_gridspec(2, 1, height_ratios=[1, 12], hspace=0.04)
    ax = fig.add_subplot(grid[1, 0])
    librosa.display.specshow(ssm, sr=SAMPLE_RATE, hop_length=HOP_LENGTH * k, x_axis="time", y_axis="time",
                             cmap="magma", vmin=-0.2, vmax=1.0, auto_aspect=False, ax=ax)
    band = fig.add_subplot(grid[0, 0], sharex=ax)
    labels = sorted({s["label"] for s in segments})
    colours = matplotlib.colormaps["tab10"]
    for seg in segments:
        start, end = seg["start_s"], seg["end_s"]
        band.broken_barh([(start, end - start)], (0, 1), facecolors=colours(labels.index(seg["label"]) % 10),
                         edgecolor="white")
        band.text((start + end) / 2, 0.5, seg["label"], ha="center", va="center", fontsize=8, clip_on=True)
        if start > 0:
            ax.axvline(start, color="white", linewidth=0.8)
            ax.axhline(start, color="white", linewidth=0.8)
    band.set_yticks([])
    band.tick_params(labelbottom=False)
    band.set_title(title, fontsize=9)
    if note:
        fig.text(0.02, 0.01, note, fontsize=8, color="dimgray")
    _save(fig, path)


def cluster_layout(clusters: list[list[str]]) -> dict[str, tuple[float, float]]:
    """Node positions: each cluster's members on a circle of its own, the circles on a grid in the order
    given (deterministic, no random layout)."""
    cols = max(1, math.ceil(math.sqrt(len(clusters))))
    positions = {}
    for c, members in enumerate(clusters):
        cx, cy = 3.0 * (c % cols), -3.0 * (c // cols)
        for i, node in enumerate(members):
            angle = math.pi / 2 + 2 * math.pi * i / len(members)
            positions[node] = (cx + math.cos(angle), cy + math.sin(angle))
    return positions


def cluster_graph_figure(path: str | os.PathLike, clusters: list[list[str]], nodes: dict[str, dict],
                         version_edges: list[tuple[str, str, float]], match_edges: list[tuple[str, str]],
                         title: str) -> None:
    """The version clusters as a graph: ``clusters`` lists each cluster's node ids, ``nodes`` maps an id to
    {'name', 'modality'}; ``version_edges`` (id, id, verified similarity) are drawn solid, wider when more
    similar, with their similarity; ``match_edges`` (MIDI id, audio id) dashed."""
    pos = cluster_layout(clusters)
    cols = max(1, math.ceil(math.sqrt(len(clusters))))
    rows = max(1, math.ceil(len(clusters) / cols))
    fig = Figure(figsize=(min(12, 2.2 + 2.6 * cols), min(12, 1.2 + 2.6 * rows)))
    ax = fig.add_subplot()
    for a, b in match_edges:  # arcs, so that a match beside a version edge of the same pair stays visible
        if a in pos and b in pos:
            ax.add_patch(FancyArrowPatch(pos[a], pos[b], connectionstyle="arc3,rad=0.35", arrowstyle="-",
                                         color="tab:green", linestyle="--", linewidth=1.2, zorder=1))
    label_edges = len(version_edges) <= 60
    for a, b, similarity in version_edges:
        if a in pos and b in pos:
            ax.plot(*zip(pos[a], pos[b], strict=True), color="dimgray", linewidth=0.5 + 2.5 * max(similarity, 0),
                    zorder=1)
            if label_edges:
                ax.text((pos[a][0] + pos[b][0]) / 2, (pos[a][1] + pos[b][1]) / 2, f"{similarity:.2f}", fontsize=6,
                        ha="center", va="center", color="black", zorder=3,
                        bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})
    for modality, colour in MODALITY_COLOURS.items():
        ids = [i for i in pos if nodes[i]["modality"] == modality]
        ax.scatter([pos[i][0] for i in ids], [pos[i][1] for i in ids], s=90, color=colour, label=modality, zorder=2,
                   edgecolors="black", linewidths=0.5)
    if len(pos) <= 80:
        for node, (x, y) in pos.items():
            ax.text(x, y - 0.28, nodes[node]["name"][:22], fontsize=6, ha="center", va="top", zorder=3)
    ax.plot([], [], color="dimgray", linewidth=2, label="verified version similarity")
    ax.plot([], [], color="tab:green", linestyle="--", label="accepted match")
    ax.legend(loc="upper right", fontsize=7, framealpha=0.9)
    ax.set_title(title, fontsize=9)
    ax.set_aspect("equal", adjustable="datalim")
    ax.margins(0.15)
    ax.axis("off")
    _save(fig, path)


def histogram_figure(path: str | os.PathLike, values: Sequence[float], cut: float | None, xlabel: str, title: str,
                     cut_label: str) -> None:
    """A histogram of ``values`` over [0, 1] (20 bins, more when values fall outside) with the decision cut
    drawn as a vertical line."""
    x = np.asarray(values, dtype=np.float64)
    low, high = min(0.0, float(np.floor(x.min() * 20) / 20)), max(1.0, float(np.ceil(x.max() * 20) / 20))
    fig = Figure(figsize=(6, 3.4))
    ax = fig.add_subplot()
    ax.hist(x, bins=min(60, max(10, round((high - low) * 20))), range=(low, high), color="tab:blue", edgecolor="white")
    if cut is not None:
        ax.axvline(cut, color="red", linestyle="--", label=f"{cut_label} = {cut:g}")
        ax.legend(fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)
