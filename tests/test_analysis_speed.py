"""The faster and bounded-memory paths of the analysis give what the plain ones give."""

from __future__ import annotations

import librosa
import numpy as np
import torch

from encoders.codes import load_hasher
from encoders.codes.learned import for_inference
from encoders.structure.embedding import load_segment_model, prefix_sums
from encoders.structure.laplacian import recurrence_affinity
from encoders.versions.embedding import embed_long, embed_steps, load_models


def test_recurrence_affinity_is_librosas() -> None:
    rng = np.random.default_rng(0)
    for n, d in [(20, 48), (300, 32), (700, 12)]:
        x = rng.normal(size=(n, d))
        x[5:9] = x[4]  # repeated beats: distance-0 neighbours and ties
        x[12:16] = 0.0
        width = min(3, (n - 1) // 2 - 1)
        expected = librosa.segment.recurrence_matrix(x.T, width=width, mode="affinity", sym=True)
        np.testing.assert_allclose(recurrence_affinity(x, width), expected, rtol=1e-12, atol=1e-12)


def test_prefix_sums_equal_cumsum() -> None:
    rng = np.random.default_rng(1)
    x = rng.random((5000, 48)).astype(np.float32)
    positions = np.unique(np.r_[0, rng.integers(0, 5001, 300), 5000])
    full = np.concatenate([np.zeros((1, 48)), np.cumsum(x, axis=0, dtype=np.float64)])
    np.testing.assert_array_equal(prefix_sums(x, positions, block=777), full[positions])


def test_long_version_embedding_in_chunks_equals_one_pass() -> None:
    rng = np.random.default_rng(2)
    steps = rng.random((5003, 12)).astype(np.float32)
    for model in load_models().values():
        one_pass = embed_steps(model, [steps])[0]
        np.testing.assert_allclose(embed_long(model, steps, chunk=1024), one_pass, atol=1e-6)


def test_compiled_encoders_give_the_same_outputs() -> None:
    torch.manual_seed(0)
    frame = load_hasher().nets.frame["audio"]
    x = torch.randn(1, 1000, 48)
    with torch.inference_mode():
        eager, compiled = frame(x)[1], for_inference(frame)(x)[1]
    np.testing.assert_allclose(compiled.numpy(), eager.numpy(), atol=1e-5)
    assert torch.equal(compiled > 0, eager > 0)
    segment = load_segment_model()
    patches = torch.rand(64, 32, 48)
    with torch.inference_mode():
        np.testing.assert_allclose(for_inference(segment)(patches).numpy(), segment(patches).numpy(), atol=1e-5)
