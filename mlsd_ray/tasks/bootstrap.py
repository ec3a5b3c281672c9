"""Bootstrap confidence intervals for the headline binary metrics, vectorised.

One matrix of resample indices (B x n, seeded) is drawn once; every metric is computed for all
B resamples at once with NumPy: counts for precision/recall/F1/accuracy, the rank-sum formula
for ROC-AUC and step-wise average precision (scikit-learn's definition, ties grouped) for PR-AUC.
A paired bootstrap (the same indices for champion and challenger, on the same rows) gives the
interval of the *difference*, which is what the gate needs: two overlapping intervals say little.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from scipy.stats import rankdata

HEADLINE = ("roc_auc", "pr_auc", "f1", "precision", "recall", "accuracy")
#: Bound the (chunk x n) matrices: about 40 MB of float64 each.
_CELLS_PER_CHUNK = 5_000_000


def resample_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n), dtype=np.int64)


def _chunks(idx: np.ndarray) -> Iterator[np.ndarray]:
    step = max(1, _CELLS_PER_CHUNK // max(idx.shape[1], 1))
    for start in range(0, idx.shape[0], step):
        yield idx[start : start + step]


def _roc_auc(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Mann-Whitney U / (n_pos n_neg) per row; average ranks handle ties like scikit-learn."""
    n_pos = y.sum(axis=1)
    n_neg = y.shape[1] - n_pos
    ranks = rankdata(s, axis=1)
    u = (ranks * y).sum(axis=1) - n_pos * (n_pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)


def _average_precision(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """sum over thresholds (recall step) x precision, thresholds at distinct scores."""
    order = np.argsort(-s, axis=1, kind="stable")
    ys = np.take_along_axis(y, order, axis=1)
    ss = np.take_along_axis(s, order, axis=1)
    tp = np.cumsum(ys, axis=1)
    precision = tp / np.arange(1, ys.shape[1] + 1)
    # The precision that counts for an item is the one at the end of its tie group.
    n = ys.shape[1]
    last = np.ones_like(ss, dtype=bool)
    last[:, :-1] = ss[:, :-1] != ss[:, 1:]
    end = np.where(last, np.arange(n), n - 1)
    end = np.minimum.accumulate(end[:, ::-1], axis=1)[:, ::-1]
    p_end = np.take_along_axis(precision, end, axis=1)
    n_pos = ys.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_pos > 0, (ys * p_end).sum(axis=1) / n_pos, np.nan)


def _threshold_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    tp = (y * pred).sum(axis=1)
    fp = ((1 - y) * pred).sum(axis=1)
    fn = (y * (1 - pred)).sum(axis=1)
    n = y.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    accuracy = (n - fp - fn) / n
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": accuracy}


def replicate_metrics(
    y_true: np.ndarray, p_positive: np.ndarray, threshold: float, idx: np.ndarray
) -> dict[str, np.ndarray]:
    """Each headline metric on each resample (rows of ``idx``): metric -> array of B values
    (NaN where a resample holds one class only and the AUC is undefined)."""
    y_all = np.asarray(y_true, dtype=np.float64)
    p_all = np.asarray(p_positive, dtype=np.float64)
    parts: dict[str, list[np.ndarray]] = {m: [] for m in HEADLINE}
    for chunk in _chunks(idx):
        y, s = y_all[chunk], p_all[chunk]
        parts["roc_auc"].append(_roc_auc(y, s))
        parts["pr_auc"].append(_average_precision(y, s))
        for name, values in _threshold_metrics(y, (s >= threshold).astype(np.float64)).items():
            parts[name].append(values)
    return {m: np.concatenate(v) if v else np.zeros(0) for m, v in parts.items()}


def _interval(values: np.ndarray, confidence: float) -> list[float] | None:
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return None
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(values, [alpha, 1 - alpha])
    return [float(lo), float(hi)]


def confidence_intervals(
    y_true: np.ndarray,
    p_positive: np.ndarray,
    threshold: float = 0.5,
    n_resamples: int = 500,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, list[float] | None]:
    """Percentile bootstrap interval [low, high] of each headline metric."""
    if n_resamples == 0 or len(y_true) == 0:
        return {}
    idx = resample_indices(len(y_true), n_resamples, seed)
    reps = replicate_metrics(y_true, p_positive, threshold, idx)
    return {m: _interval(v, confidence) for m, v in reps.items()}


def paired_difference(
    y_true: np.ndarray,
    p_challenger: np.ndarray,
    p_champion: np.ndarray,
    threshold_challenger: float,
    threshold_champion: float,
    metric: str,
    relative: bool = False,
    n_resamples: int = 500,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Interval of challenger - champion (or that divided by the champion's value when
    ``relative``) on the same resamples of the same rows."""
    if metric not in HEADLINE:
        raise ValueError(f"no bootstrap for metric {metric!r}; one of {HEADLINE}")
    idx = resample_indices(len(y_true), n_resamples, seed)
    a = replicate_metrics(y_true, p_challenger, threshold_challenger, idx)[metric]
    b = replicate_metrics(y_true, p_champion, threshold_champion, idx)[metric]
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = (a - b) / np.abs(b) if relative else a - b
    diff = np.where(np.isfinite(diff), diff, np.nan)
    interval = _interval(diff, confidence)
    return {
        "metric": metric,
        "relative": relative,
        "mean": float(np.nanmean(diff)) if interval else None,
        "interval": interval,
        "confidence": confidence,
        "n_resamples": n_resamples,
    }
