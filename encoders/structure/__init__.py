"""Sections of a track: where its parts start and end, and which parts repeat.

* ``sections``: ``track_segments``, the pipeline's segmentation (symbolic for MIDI, boundary CNN for audio);
* ``symbolic``: MIDI files from their notes (repetition of sub-beat onset patterns, rests, tempo / metre /
  key / instrument changes);
* ``boundary``: the supervised boundary CNN on the log-CQT and self-similarity lag windows (recordings);
* ``labels``: segment labels from a beat similarity (repeats share a label);
* ``grid``: the beat grid segmentation runs on;
* ``laplacian``: McFee & Ellis's Laplacian structural decomposition (a baseline, and the source of the boundary
  model's labels);
* ``structural_features``: Serrà et al.'s structural features (a baseline);
* ``embedding`` / ``learned``: the per-beat embedding learned without labels and ``learned_segments``, the
  previous pipeline method (kept for comparison).
"""
