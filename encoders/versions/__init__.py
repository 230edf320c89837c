"""Version (cover) features of a track: what tells that two tracks are versions of one composition.

* ``chroma``: beat-synchronous and fixed-hop chroma, the inputs of the embedding and the sequences that
  ``hashing.version_align`` aligns to verify candidates;
* ``embedding``: the learned key-invariant embedding (two chroma CNNs), the pipeline's;
* ``baseline``: the 2D-FTM embedding, the non-learned baseline of the evaluations.
"""
