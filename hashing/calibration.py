"""Calibrating DTW scores into match confidences."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression


@dataclass(frozen=True)
class Calibration:
    """confidence = 1 / (1 + exp((score - threshold) / scale)); 0.5 at ``threshold``."""

    threshold: float
    scale: float

    def confidence(self, score: float | np.ndarray) -> np.ndarray:
        z = np.clip((np.asarray(score, dtype=np.float64) - self.threshold) / self.scale, -60, 60)
        return 1.0 / (1.0 + np.exp(z))


def fit_calibration(match_scores: np.ndarray, non_match_scores: np.ndarray) -> Calibration:
    """Logistic regression of is-match on the score (lower score = match).

    Not class-balanced: the fitted probability carries the development corpus' prior of true pairs
    among candidates, so 0.5 is where a pair is as likely a match as not.
    """
    x = np.concatenate([match_scores, non_match_scores]).reshape(-1, 1)
    y = np.concatenate([np.ones(len(match_scores)), np.zeros(len(non_match_scores))])
    model = LogisticRegression(C=1e4).fit(x, y)
    w, b = float(model.coef_[0, 0]), float(model.intercept_[0])
    if w >= 0:
        raise ValueError("matches do not score lower than non-matches; cannot calibrate")
    return Calibration(threshold=-b / w, scale=-1.0 / w)


def precision_recall(match_conf: np.ndarray, non_match_conf: np.ndarray, cut: float = 0.5) -> tuple[float, float]:
    """Precision and recall of ``confidence > cut`` over known matches and non-matches."""
    tp = int(np.sum(np.asarray(match_conf) > cut))
    fp = int(np.sum(np.asarray(non_match_conf) > cut))
    precision = tp / (tp + fp) if tp + fp else 1.0
    return precision, tp / max(1, len(match_conf))
