"""Ranking metrics per user for top-k recommendation lists.

The definitions are those of :func:`mlsd_ray.metrics.ranking_metrics` (NDCG with linear
gains as scikit-learn's ``ndcg_score``, MAP@k divided by ``min(#relevant, k)``, recall@k over all
of the user's relevant items); a unit test checks the two agree. This module computes them
vectorised over a (users x k) hit matrix, because the bootstrap over users needs the per-user
values, not only their mean. Beyond those: catalogue coverage, popularity bias and slices by user
activity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mlsd_ray.tasks.bootstrap import _interval, resample_indices

#: Slices by the number of interactions a user had before the split (its history).
ACTIVITY_BINS: tuple[tuple[str, int, int], ...] = (
    ("cold", 0, 0),
    ("light", 1, 19),
    ("medium", 20, 99),
    ("heavy", 100, 10**9),
)


def per_user_metrics(
    recommended: Sequence[Sequence[str]],
    relevant: Sequence[Mapping[str, float]],
    ks: Sequence[int] = (10, 100),
) -> dict[str, np.ndarray]:
    """For user i, ``recommended[i]`` is its ranked list and ``relevant[i]`` maps each relevant
    item to its gain (1.0 for implicit feedback). Returns ``ndcg@k``, ``map@k`` and ``recall@k``
    arrays (one value per user) for every k. Users without relevant items get NaN."""
    n = len(recommended)
    k_max = max(ks)
    gains = np.zeros((n, k_max))
    n_rel = np.zeros(n)
    ideal = np.zeros((n, k_max))
    for i, (recs, rel) in enumerate(zip(recommended, relevant, strict=True)):
        top = list(recs)[:k_max]
        gains[i, : len(top)] = [rel.get(item, 0.0) for item in top]
        n_rel[i] = sum(1 for g in rel.values() if g > 0)
        best = sorted((g for g in rel.values() if g > 0), reverse=True)[:k_max]
        ideal[i, : len(best)] = best
    hits = gains > 0
    discount = 1.0 / np.log2(np.arange(2, k_max + 2))
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for k in ks:
            dcg = (gains[:, :k] * discount[:k]).sum(axis=1)
            idcg = (ideal[:, :k] * discount[:k]).sum(axis=1)
            out[f"ndcg@{k}"] = np.where(n_rel > 0, dcg / idcg, np.nan)
            h = hits[:, :k]
            precision_at = np.cumsum(h, axis=1) / np.arange(1, k + 1)
            ap = (precision_at * h).sum(axis=1) / np.minimum(n_rel, k)
            out[f"map@{k}"] = np.where(n_rel > 0, ap, np.nan)
            out[f"recall@{k}"] = np.where(n_rel > 0, h.sum(axis=1) / n_rel, np.nan)
    return out


def coverage(recommended: Sequence[Sequence[str]], n_items: int, k: int = 10) -> float:
    """The share of the catalogue that appears in at least one user's top k."""
    shown = {item for recs in recommended for item in list(recs)[:k]}
    return len(shown) / n_items if n_items else 0.0


def popularity_bias(
    recommended: Sequence[Sequence[str]],
    relevant: Sequence[Mapping[str, float]],
    popularity: Mapping[str, float],
    k: int = 10,
) -> float | None:
    """Mean train popularity of the recommended top-k items divided by that of the items the
    users actually interacted with: 1 recommends as popular as users watch, above 1 favours the
    head of the catalogue."""
    shown = [popularity.get(item, 0.0) for recs in recommended for item in list(recs)[:k]]
    watched = [popularity.get(item, 0.0) for rel in relevant for item in rel]
    if not shown or not watched or np.mean(watched) == 0:
        return None
    return float(np.mean(shown) / np.mean(watched))


def bootstrap_over_users(
    values: Mapping[str, np.ndarray],
    n_resamples: int = 500,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, list[float] | None]:
    """Percentile interval of each metric's mean, resampling users with replacement."""
    out: dict[str, list[float] | None] = {}
    for name, v in values.items():
        v = v[~np.isnan(v)]
        if len(v) == 0 or n_resamples == 0:
            out[name] = None
            continue
        idx = resample_indices(len(v), n_resamples, seed)
        out[name] = _interval(v[idx].mean(axis=1), confidence)
    return out


def activity_slice(history_counts: np.ndarray) -> np.ndarray:
    """The activity slice name of each user from its number of past interactions."""
    names = np.empty(len(history_counts), dtype=object)
    for name, lo, hi in ACTIVITY_BINS:
        names[(history_counts >= lo) & (history_counts <= hi)] = name
    return names


def evaluate_lists(
    recommended: Sequence[Sequence[str]],
    relevant: Sequence[Mapping[str, float]],
    history_counts: np.ndarray,
    popularity: Mapping[str, float],
    n_items: int,
    ks: Sequence[int] = (10, 100),
    n_resamples: int = 500,
    seed: int = 0,
) -> dict[str, Any]:
    """The full report for one system: mean metrics, bootstrap intervals over users, coverage,
    popularity bias and the same means per user-activity slice."""
    per_user = per_user_metrics(recommended, relevant, ks)
    report: dict[str, Any] = {
        "users": len(recommended),
        **{m: _mean(v) for m, v in per_user.items()},
        "coverage@10": coverage(recommended, n_items, 10),
        "popularity_bias@10": popularity_bias(recommended, relevant, popularity, 10),
        "intervals": bootstrap_over_users(per_user, n_resamples, seed=seed),
    }
    names = activity_slice(np.asarray(history_counts))
    report["slices"] = {
        name: {
            "users": int((names == name).sum()),
            **{m: _mean(v[names == name]) for m, v in per_user.items()},
        }
        for name, _, _ in ACTIVITY_BINS
        if (names == name).any()
    }
    return report


def _mean(v: np.ndarray) -> float | None:
    v = v[~np.isnan(v)]
    return float(v.mean()) if len(v) else None


def paired_over_users(
    challenger: np.ndarray,
    champion: np.ndarray,
    metric: str,
    relative: bool = False,
    n_resamples: int = 500,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Interval of mean(challenger) - mean(champion) (per-user values of the same users, in the
    same order) on the same resamples of users; the shape of ``bootstrap.paired_difference``,
    so the gate weighs it as it weighs any task's comparison."""
    keep = ~(np.isnan(challenger) | np.isnan(champion))
    a, b = challenger[keep], champion[keep]
    interval = None
    mean = None
    if len(a) and n_resamples:
        idx = resample_indices(len(a), n_resamples, seed)
        ra, rb = a[idx].mean(axis=1), b[idx].mean(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            diff = (ra - rb) / np.abs(rb) if relative else ra - rb
        diff = np.where(np.isfinite(diff), diff, np.nan)
        interval = _interval(diff, confidence)
        mean = float(np.nanmean(diff)) if interval else None
    return {"metric": metric, "relative": relative, "mean": mean, "interval": interval,
            "confidence": confidence, "n_resamples": n_resamples}  # fmt: skip
