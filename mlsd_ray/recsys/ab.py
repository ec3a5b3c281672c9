"""A/B tests: sticky assignment of users to arms, and each arm's online metrics with intervals
and a significance test.

Assignment hashes ``salt:user_id`` with SHA-256 (not Python's ``hash``, which is salted per
process) to a point in [0, 1) and cuts that interval by the arms' weights: a user keeps their
arm across requests, replicas and restarts, and a new salt reshuffles everyone for the next
experiment. The report joins the prediction log (which records the arm) with feedback, and tests
the difference of each arm from the first (control) arm: a two-proportion z-test for rates
(CTR), Welch's t-test for means (watch time), with normal 95 % intervals.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from mlsd_ray.ranking_card import ABTest, Arm

ARM = "arm"
__all__ = ["ARM", "ABTest", "Arm", "assign", "bucket", "compare", "report"]


def bucket(user_id: Any, salt: str) -> float:
    """The user's point in [0, 1): the first 8 bytes of SHA-256(salt:user) over 2^64."""
    digest = hashlib.sha256(f"{salt}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign(user_id: Any, test: ABTest) -> Arm:
    point = bucket(user_id, test.salt)
    total = sum(a.weight for a in test.arms)
    edge = 0.0
    for arm in test.arms:
        edge += arm.weight / total
        if point < edge:
            return arm
    return test.arms[-1]


def compare(
    control: np.ndarray, treatment: np.ndarray, kind: Literal["rate", "mean"], alpha: float
) -> dict[str, Any]:
    """Difference treatment - control with its interval and p-value."""
    c, t = np.asarray(control, float), np.asarray(treatment, float)
    if len(c) < 2 or len(t) < 2:
        return {"difference": None, "p_value": None, "significant": False}
    diff = float(t.mean() - c.mean())
    if kind == "rate":
        pooled = (c.sum() + t.sum()) / (len(c) + len(t))
        se0 = np.sqrt(pooled * (1 - pooled) * (1 / len(c) + 1 / len(t)))
        p = float(2 * stats.norm.sf(abs(diff) / se0)) if se0 > 0 else 1.0
        se = np.sqrt(c.mean() * (1 - c.mean()) / len(c) + t.mean() * (1 - t.mean()) / len(t))
    else:
        p = float(stats.ttest_ind(t, c, equal_var=False).pvalue)
        se = np.sqrt(c.var(ddof=1) / len(c) + t.var(ddof=1) / len(t))
    z = stats.norm.ppf(1 - alpha / 2)
    return {
        "difference": diff,
        "interval": [diff - z * se, diff + z * se],
        "p_value": p,
        "significant": bool(p < alpha),
    }


def _interval(values: np.ndarray, alpha: float) -> list[float] | None:
    if len(values) < 2:
        return None
    half = stats.norm.ppf(1 - alpha / 2) * values.std(ddof=1) / np.sqrt(len(values))
    return [float(values.mean() - half), float(values.mean() + half)]


def report(
    shown: pd.DataFrame, test: ABTest, metrics: Sequence[tuple[str, str, Literal["rate", "mean"]]]
) -> dict[str, Any]:
    """``shown`` has one row per impression with the ``arm`` and each metric's column (a click
    0/1, seconds watched). ``metrics`` lists (name, column, kind). Per arm: n, mean, interval;
    per non-control arm: the comparison with the control."""
    out: dict[str, Any] = {"alpha": test.alpha, "arms": {}, "comparisons": {}}
    control = test.arms[0].name
    for arm in test.arms:
        rows = shown[shown[ARM] == arm.name]
        out["arms"][arm.name] = {
            "impressions": len(rows),
            "users": int(rows["user_id"].nunique()) if "user_id" in rows else None,
            **{
                name: {
                    "mean": float(rows[col].mean()) if len(rows) else None,
                    "interval": _interval(rows[col].to_numpy(float), test.alpha),
                }
                for name, col, _ in metrics
            },
        }
    for arm in test.arms[1:]:
        out["comparisons"][arm.name] = {
            name: compare(
                shown.loc[shown[ARM] == control, col].to_numpy(),
                shown.loc[shown[ARM] == arm.name, col].to_numpy(),
                kind,
                test.alpha,
            )
            for name, col, kind in metrics
        }
    return out
