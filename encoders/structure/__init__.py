"""Sections of a track: where its parts start and end, and which parts repeat.

* ``grid``: the beat grid segmentation runs on;
* ``laplacian``: McFee & Ellis's Laplacian structural decomposition (the baseline on the CQT, and the
  method the learned segmentation runs);
* ``embedding``: the per-beat embedding network learned without labels, and its inference;
* ``learned``: ``learned_segments``, the pipeline's segmentation (CQT fused with the embeddings).
"""
