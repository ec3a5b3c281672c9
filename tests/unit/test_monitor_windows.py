"""Drift in windows, label drift, confidence-based estimation and train/serve skew."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from mlsd_ray.monitor.windows import (
    drift_windows,
    expected_performance,
    train_serve_skew,
    window_bounds,
)
from mlsd_ray.spec import card_from_dict

T0 = pd.Timestamp("2026-01-01T00:00:00Z")


def _card(**loop):
    return card_from_dict(
        {
            "name": "w",
            "requirements": {"business_objective": "x"},
            "framing": {
                "ml_objective": "x",
                "category": "binary",
                "inputs": [
                    {"name": "x", "type": "float"},
                    {"name": "c", "type": "category"},
                    {"name": "Month", "type": "category"},
                ],
                "output": "p",
                "label": {"column": "y"},
            },
            "data": {"sources": [{"uri": "unused.csv"}]},
            "models": {
                "baseline": {"name": "m", "kind": "majority"},
                "candidates": [{"name": "l", "kind": "logreg"}],
            },
            "monitoring": {"loop": {"drift": {"window_s": 3600, "min_rows": 100, **loop}}},
        }
    )


def test_expected_performance_matches_the_truth_for_calibrated_scores():
    rng = np.random.default_rng(0)
    p = rng.beta(2, 5, size=20_000)
    y = rng.uniform(size=p.size) < p  # calibrated by construction
    est = expected_performance(p, 0.5)
    flag = p >= 0.5
    assert est["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=0.01)
    assert est["accuracy"] == pytest.approx(float((flag == y).mean()), abs=0.01)
    assert est["precision"] == pytest.approx(float(y[flag].mean()), abs=0.02)
    assert est["recall"] == pytest.approx(float(flag[y].mean()), abs=0.02)
    # Constant scores carry no ranking: AUC one half.
    assert expected_performance(np.full(100, 0.3), 0.5)["roc_auc"] == pytest.approx(0.5)
    assert expected_performance(np.array([]), 0.5)["accuracy"] is None


def test_window_bounds():
    ts = pd.Series([T0, T0 + pd.Timedelta(minutes=150)])
    assert window_bounds(ts, 3600) == [
        (T0, T0 + pd.Timedelta(hours=1)),
        (T0 + pd.Timedelta(hours=1), T0 + pd.Timedelta(hours=2)),
        (T0 + pd.Timedelta(hours=2), T0 + pd.Timedelta(hours=3)),
    ]
    assert len(window_bounds(ts, 3600, step_s=1800)) == 6  # starts 0, 0.5, ..., 2.5 h


def _served(rng, n, shift, start, month="Jan"):
    return pd.DataFrame(
        {
            "ts": [start + pd.Timedelta(seconds=i * 3600 / n) for i in range(n)],
            "x": rng.normal(shift, 1, n),
            "c": rng.choice(["a", "b"], n),
            "Month": month,
            "probability": rng.uniform(size=n),
        }
    )


def test_windows_flag_the_drifted_hour_only_and_ignore_what_the_card_says():
    rng = np.random.default_rng(1)
    reference = pd.DataFrame(
        {
            "x": rng.normal(0, 1, 5000),
            "c": rng.choice(["a", "b"], 5000),
            "Month": "Jan",
            "label": rng.uniform(size=5000) < 0.2,
        }
    )
    served = pd.concat(
        [
            _served(rng, 500, 0.0, T0, month="Feb"),
            _served(rng, 500, 1.5, T0 + pd.Timedelta(hours=1), month="Feb"),
            _served(rng, 50, 0.0, T0 + pd.Timedelta(hours=2)),
        ],
        ignore_index=True,
    )
    windows = drift_windows(_card(ignore=["Month"]), reference, served)
    assert [w["drifted"] for w in windows] == [False, True, None]  # last: too few rows
    assert windows[1]["alerting"] == ["x"]
    assert windows[0]["estimated"]["accuracy"] is not None
    # Watching Month too: every window of February alerts on it.
    windows = drift_windows(_card(), reference, served)
    assert windows[0]["alerting"] == ["Month"]


def test_label_drift_needs_labels():
    from mlsd_ray.monitor.windows import _label_drift

    cur = pd.DataFrame(
        {"label_state": ["labelled"] * 200, "feedback_label": [1.0] * 120 + [0.0] * 80}
    )
    out = _label_drift(cur, 0.2, 0.01)
    assert out is not None and out["alert"] and out["positive_rate"] == 0.6
    same = _label_drift(cur.assign(feedback_label=[1.0] * 40 + [0.0] * 160), 0.2, 0.01)
    assert same is not None and not same["alert"]


def test_train_serve_skew():
    served = pd.DataFrame({"id": [1, 2, 3, 4], "x": [1.0, 2.0, 3.0, None], "c": list("abcd")})
    offline = pd.DataFrame({"id": [1, 2, 3, 4], "x": [1.0, 2.5, 3.0, None], "c": list("abxd")})
    out = train_serve_skew(served, offline, "id", ["x", "c"])
    assert out["matched"] == 4
    assert out["features"]["x"] == {"mismatch_share": 0.25, "mean_abs_diff": pytest.approx(0.5 / 3)}
    assert out["features"]["c"]["mismatch_share"] == 0.25


def test_many_valued_categories_alarm_on_drift_not_on_sampling_noise():
    """80 categories with a skewed mix, windows of 250 rows: no drift -> no alarm in 20
    windows (plain PSI over all 80 buckets, rare ones mostly empty, alarmed in 17 of them);
    a real shift of the mix -> alarm, and the reason is in the window (PSI, p-value)."""
    rng = np.random.default_rng(0)
    share = rng.dirichlet(np.full(80, 0.5))
    cats = np.array([f"item{i}" for i in range(80)])
    reference = pd.DataFrame({"c": rng.choice(cats, 5000, p=share), "x": rng.normal(size=5000)})

    def windows(p: np.ndarray, n_windows: int) -> list[dict]:
        n = 250 * n_windows
        served = pd.DataFrame(
            {
                "c": rng.choice(cats, n, p=p),
                "x": rng.normal(size=n),
                "ts": T0 + pd.to_timedelta(np.arange(n) * 3600 / 250, unit="s"),
            }
        )
        return [w for w in drift_windows(_card(), reference, served) if w["drifted"] is not None]

    calm = windows(share, 20)
    assert len(calm) == 20 and not any(w["drifted"] for w in calm)
    moved = np.roll(share, 7)  # the same categories, popular ones swapped
    shifted = windows(moved, 2)
    assert all(w["drifted"] and w["alerting"] == ["c"] for w in shifted)
    assert all(w["psi_pvalue"]["c"] < 0.01 / 2 for w in shifted)  # Bonferroni over c and x


def test_psi_pvalue_is_the_chi_square_tail_of_scaled_psi():
    from scipy import stats

    from mlsd_ray.monitor.drift import psi_pvalue

    assert psi_pvalue(0.05, 1000, 500, 10) == pytest.approx(
        stats.chi2.sf(0.05 / (1 / 1000 + 1 / 500), 9)
    )
    # The same PSI is noise on a small window and a signal on a large one.
    assert psi_pvalue(0.05, 10_000, 100, 10) > 0.5 > 0.001 > psi_pvalue(0.05, 10_000, 5000, 10)
    assert psi_pvalue(0.3, 100, 100, 1) is None
