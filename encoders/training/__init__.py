"""Everything that trains or evaluates the models of ``encoders`` and builds the corpora they need.

Nothing at run time imports this package (``tests/test_layout.py`` checks it): the pipeline's analysis
reads only the weights in ``encoders/weights/``. Its dependencies beyond the pipeline's (music21,
mir_eval for the evaluations) come with the ``train`` extra.

* trainers, one per model: ``codes`` (``mirmatch train``), ``versions`` (``mirmatch train --cover``),
  ``structure`` (``python -m encoders.training.structure``); their shared optimisation loop, ``loop``;
* their corpora: ``codes_data``, ``versions_data``, ``structure_data``; the splits of all three,
  ``splits``; what they are built from: ``corpus`` (Debian MIDI collections, and the demo corpus of
  ``mirmatch demo``), ``corrupt`` (Raffel-style corruptions), ``music21_scores`` and ``music21_midi``
  (music21's bundled corpus), ``reels`` (batched rendering), ``cache`` (the pickles under ``.cache/``);
* evaluation: ``versions_eval`` (retrieval and clustering figures, threshold calibration).
"""
