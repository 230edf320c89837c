"""Version verification by local alignment of beat chroma: Serra et al.'s Qmax, used to re-rank neighbours.

A version embedding is a bag of local patterns: two different chorales in one style can land closer than two
renderings of the same one. Serra, Serra & Andrzejak (2009), "Cross recurrence quantification for cover song
identification", align the beat-chroma sequences instead:

1. transpose one sequence to the other's key by the optimal transposition index (OTI) of their mean chroma;
2. embed both in a delay space (``embedding_dim`` consecutive beats per vector);
3. a cross recurrence plot marks pairs of delay vectors that are mutual near neighbours (each among the
   ``kappa`` share of the other's most similar vectors);
4. Qmax is the length of the longest diagonal-ish path of recurrences, allowing tempo deviations (steps of
   2:1 and 1:2) and paying ``gap_open`` / ``gap_extend`` for disruptions.

Here Qmax re-ranks the nearest neighbours a faiss search over the learned embeddings proposes (Serra et al.
2012 build their version graph on Qmax distances): :func:`verified_similarity` adds the standardised
Qmax score to the embedding's cosine similarity.
"""

from __future__ import annotations

import numba
import numpy as np

EMBEDDING_DIM = 7  # beats per delay vector (chosen on validation families: 3, 5, 7, 9 tried)
KAPPA = 0.1  # share of nearest delay vectors that count as recurrences
GAP_OPEN, GAP_EXTEND = 5.0, 0.5  # Serra et al.'s penalties
MAX_STEPS = 1024  # longer sequences are averaged down to this many steps before aligning
#: Standardisation of the Qmax score (its mean and standard deviation over the 20 nearest neighbours of each
#: validation version), and its weight against the cosine similarity: fused = cos + WEIGHT * z.
QMAX_CENTER, QMAX_SCALE, QMAX_WEIGHT = 1.561, 0.891, 0.075


def optimal_transposition(a: np.ndarray, b: np.ndarray) -> int:
    """The circular shift of ``b``'s pitch classes that best matches ``a``'s mean chroma (Serra's OTI)."""
    ga, gb = a.mean(axis=0), b.mean(axis=0)
    return int(np.argmax([ga @ np.roll(gb, k) for k in range(12)]))


def delay_embed(x: np.ndarray, dim: int = EMBEDDING_DIM) -> np.ndarray:
    """(n, 12) -> (max(n - dim + 1, 1), 12 * dim): ``dim`` consecutive steps per row, unit norm if the steps are."""
    if len(x) < dim:
        x = np.concatenate([x, np.zeros((dim - len(x), x.shape[1]), x.dtype)])
    n = len(x) - dim + 1
    return np.concatenate([x[i:i + n] for i in range(dim)], axis=1) / np.sqrt(dim)


def cross_recurrence(a: np.ndarray, b: np.ndarray, kappa: float = KAPPA) -> np.ndarray:
    """Boolean cross recurrence plot of two delay-embedded sequences: mutual ``kappa``-nearest neighbours."""
    sim = a @ b.T
    ka, kb = max(1, int(kappa * sim.shape[1])), max(1, int(kappa * sim.shape[0]))
    row_t = -np.partition(-sim, ka - 1, axis=1)[:, ka - 1:ka]
    col_t = -np.partition(-sim, kb - 1, axis=0)[kb - 1:kb, :]
    return (sim >= row_t) & (sim >= col_t)


@numba.njit(cache=True)
def qmax(recurrence: np.ndarray, gap_open: float = GAP_OPEN, gap_extend: float = GAP_EXTEND) -> float:
    """Serra et al.'s Qmax: the longest local alignment path in a cross recurrence plot."""
    n, m = recurrence.shape
    q = np.zeros((n + 2, m + 2), np.float32)
    best = 0.0
    for i in range(2, n + 2):
        for j in range(2, m + 2):
            if recurrence[i - 2, j - 2]:
                v = max(q[i - 1, j - 1], q[i - 2, j - 1], q[i - 1, j - 2]) + 1.0
            else:
                diag = q[i - 1, j - 1] - (gap_open if i > 2 and j > 2 and recurrence[i - 3, j - 3] else gap_extend)
                up = q[i - 2, j - 1] - (gap_open if i > 3 and j > 2 and recurrence[i - 4, j - 3] else gap_extend)
                left = q[i - 1, j - 2] - (gap_open if i > 2 and j > 3 and recurrence[i - 3, j - 4] else gap_extend)
                v = max(0.0, diag, up, left)
            q[i, j] = v
            if v > best:
                best = v
    return best


def pool_steps(x: np.ndarray, max_steps: int = MAX_STEPS) -> np.ndarray:
    """(n, d) -> at most ``max_steps`` rows: consecutive rows averaged (the last padded), each unit-norm."""
    x = np.asarray(x, dtype=np.float32)
    if len(x) <= max_steps:
        return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-9)
    factor = -(-len(x) // max_steps)
    pad = (-len(x)) % factor
    pooled = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)]).reshape(-1, factor, x.shape[1]).mean(axis=1)
    return pooled / (np.linalg.norm(pooled, axis=1, keepdims=True) + 1e-9)


def qmax_score(a: np.ndarray, b: np.ndarray, *, embedding_dim: int = EMBEDDING_DIM, kappa: float = KAPPA,
               max_steps: int = MAX_STEPS) -> float:
    """Key-invariant alignment score of two (n, 12) beat-chroma sequences (any float dtype; rows are brought to
    unit norm): Qmax / sqrt(shorter length).

    Symmetric up to ties in the transposition; 0 when nothing aligns, larger for longer shared passages.
    """
    a, b = pool_steps(a, max_steps), pool_steps(b, max_steps)
    if len(a) == 0 or len(b) == 0:
        return 0.0
    b = np.roll(b, optimal_transposition(a, b), axis=1)
    ea, eb = delay_embed(a, embedding_dim), delay_embed(b, embedding_dim)
    return float(qmax(cross_recurrence(ea, eb, kappa))) / float(np.sqrt(min(len(ea), len(eb))))


def verified_similarity(cosine: float, a: np.ndarray, b: np.ndarray) -> float:
    """The embedding's cosine similarity plus QMAX_WEIGHT times the standardised Qmax score of the sequences."""
    return float(cosine) + QMAX_WEIGHT * (qmax_score(a, b) - QMAX_CENTER) / QMAX_SCALE


__all__ = ["EMBEDDING_DIM", "KAPPA", "QMAX_CENTER", "QMAX_SCALE", "QMAX_WEIGHT", "cross_recurrence", "delay_embed",
           "optimal_transposition", "pool_steps", "qmax", "qmax_score", "verified_similarity"]
