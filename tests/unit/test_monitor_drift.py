"""Drift statistics on numbers that can be checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mlsd_ray.monitor.drift import (
    MISSING,
    OTHER,
    UNSEEN,
    as_category,
    bucket_counts,
    categorical_drift,
    drift_report,
    numeric_drift,
    psi,
    quantile_edges,
    status_of,
    text_features,
)
from mlsd_ray.spec import Monitoring, load_card
from tests.conftest import REPO

M = Monitoring()  # psi_warn 0.1, psi_alert 0.25, ks_pvalue_alert 0.01, bins 10


def test_psi_by_hand():
    # (0.9 - 0.5) ln(0.9/0.5) + (0.1 - 0.5) ln(0.1/0.5) = 0.4 ln 1.8 + 0.4 ln 5
    assert psi([0.5, 0.5], [0.9, 0.1]) == pytest.approx(0.4 * math.log(1.8) + 0.4 * math.log(5))
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    # An empty bucket is floored at 1e-4, so a new bucket is rare, not infinitely surprising.
    assert psi([1.0, 0.0], [0.5, 0.5]) == pytest.approx(
        (0.5 - 1.0) * math.log(0.5) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    )
    with pytest.raises(ValueError):
        psi([0.5, 0.5], [1.0])


def test_quantile_edges_and_buckets():
    ref = np.arange(1, 101, dtype=float)  # 1..100
    edges = quantile_edges(ref, 4)
    np.testing.assert_allclose(edges, [25.75, 50.5, 75.25])
    np.testing.assert_array_equal(bucket_counts(ref, edges), [25, 25, 25, 25])
    # Right-closed buckets; NaN is not counted here.
    np.testing.assert_array_equal(bucket_counts([25.75, 25.76, np.nan, 1000], edges), [1, 1, 0, 1])
    # Ties merge bins rather than make empty ones: a count that is mostly zero.
    edges = quantile_edges(np.array([0.0] * 90 + [1.0] * 10), 10)
    np.testing.assert_allclose(edges, [0.0, 0.1])  # the 0.9 quantile interpolates to 0.1


def test_identical_distributions_are_ok():
    rng = np.random.default_rng(0)
    out = numeric_drift(rng.normal(size=5000), rng.normal(size=5000), M)
    assert out["psi"] < 0.01
    assert out["ks_pvalue"] > 0.01
    assert out["status"] == "ok"
    assert sum(out["buckets"]["reference"]) == pytest.approx(1.0)


def test_shifted_distribution_alerts():
    rng = np.random.default_rng(0)
    out = numeric_drift(rng.normal(size=5000), rng.normal(1.0, 1.0, size=2000), M)
    assert out["psi"] > M.psi_alert
    assert out["ks_pvalue"] < 1e-6
    assert out["status"] == "alert"
    assert out["current"]["mean"] == pytest.approx(1.0, abs=0.1)


def test_ks_alone_can_alert():
    # Same 10 quantile buckets but a small, systematic shift inside them: PSI stays low,
    # KS sees it with many rows.
    ref = np.tile(np.linspace(0, 1, 1000), 20)
    cur = ref + 0.02
    out = numeric_drift(ref, cur, M)
    assert out["psi"] < M.psi_warn and out["ks_pvalue"] < M.ks_pvalue_alert
    assert out["status"] == "alert"


def test_status_thresholds():
    assert status_of(0.05, 0.5, M) == "ok"
    assert status_of(0.1, 0.5, M) == "warn"
    assert status_of(0.25, 0.5, M) == "alert"
    assert status_of(0.0, 0.001, M) == "alert"
    assert status_of(None, None, M) == "no_data"


def test_missing_values_get_their_own_bucket():
    out = numeric_drift([1.0, 2.0, 3.0, 4.0], [1.0, None, None, 4.0], M)
    assert out["buckets"]["labels"][-1] == MISSING
    assert out["buckets"]["current"][-1] == 0.5
    assert out["current"]["missing_share"] == 0.5
    assert numeric_drift([1.0], [None, None], M)["status"] == "no_data"


def test_categories_unseen_other_missing():
    ref = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    cur = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    same = categorical_drift(ref, cur, M)
    assert same["psi"] == 0.0 and same["status"] == "ok"
    assert same["buckets"]["labels"] == ["a", "b", "c"]

    out = categorical_drift(ref, ["a"] * 50 + ["zz"] * 40 + [None] * 10, M, max_categories=2)
    # c is past max_categories: it becomes __other__; zz was never seen; None is missing.
    assert out["buckets"]["labels"] == ["a", "b", OTHER, UNSEEN, MISSING]
    assert out["buckets"]["reference"] == [0.5, 0.3, 0.2, 0.0, 0.0]
    assert out["buckets"]["current"] == [0.5, 0.0, 0.0, 0.4, 0.1]
    assert out["current"]["unseen_share"] == 0.4
    assert out["status"] == "alert"


def test_category_values_compare_as_strings():
    assert as_category([2, 2.0, "2", True, 1.5, None]).tolist()[:5] == [
        "2",
        "2",
        "2",
        "True",
        "1.5",
    ]
    assert pd.isna(as_category([None])[0])
    assert categorical_drift([1, 2, 3] * 10, ["1", "2", "3"] * 10, M)["psi"] == 0.0


def test_text_features():
    feats = text_features(["hi @bob see http://x.com/a", "plain text", "mail me at a@b.com", None])
    assert feats["char_length"].tolist()[:3] == [26, 10, 18]
    assert feats["word_count"].tolist()[:3] == [4, 2, 4]
    assert feats["url_share"].tolist()[:3] == [True, False, False]
    assert feats["mention_share"].tolist()[:3] == [True, False, False]  # an e-mail is no mention
    assert feats.iloc[3].isna().all()


def test_report_on_a_text_card():
    card = load_card(REPO / "systems" / "harmful_content.yaml")
    rng = np.random.default_rng(1)
    words = np.array(["the", "a", "game", "photo", "idiot", "nice", "day", "you", "are", "great"])

    def posts(n, lo, hi, link=False):
        return [
            " ".join(rng.choice(words, size=rng.integers(lo, hi)))
            + (" http://t.co/x" if link else "")
            for _ in range(n)
        ]

    ref = pd.DataFrame({"text": posts(2000, 3, 12)})
    same = drift_report(card, None, ref, pd.DataFrame({"text": posts(1000, 3, 12)}))
    assert same["status"] == "ok", same["features"]
    assert set(same["features"]) == {
        "text.char_length",
        "text.word_count",
        "text.url_share",
        "text.mention_share",
    }
    longer = pd.DataFrame({"text": posts(1000, 20, 40, link=True)})
    report = drift_report(card, None, ref, longer, rng.uniform(size=500), rng.uniform(size=500))
    assert report["features"]["text.char_length"]["status"] == "alert"
    assert report["features"]["text.url_share"]["current"]["share"] == 1.0
    assert report["features"]["probability"]["status"] == "ok"
    assert report["status"] == "alert"
    assert "text.char_length" in report["drifting"] and "probability" not in report["drifting"]


def test_report_on_a_tabular_card():
    card = load_card(REPO / "systems" / "event_registration.yaml")
    rng = np.random.default_rng(2)
    n = 1000

    def frame(page_mean: float, months: list[str]) -> pd.DataFrame:
        df = pd.DataFrame(
            {f.name: rng.normal(size=n) for f in card.framing.inputs if f.type == "float"}
        )
        for f in card.framing.inputs:
            if f.type == "category":
                df[f.name] = rng.choice(["1", "2", "3"], size=n)
        df["PageValues"] = rng.exponential(page_mean, size=n)
        df["Month"] = rng.choice(months, size=n)
        return df

    ref = frame(1.0, ["May", "Nov"])
    report = drift_report(card, None, ref, frame(5.0, ["May", "Dec"]))
    feats = report["features"]
    assert set(feats) == set(card.feature_names)
    assert feats["PageValues"]["kind"] == "numeric" and feats["PageValues"]["status"] == "alert"
    assert feats["Month"]["kind"] == "category" and feats["Month"]["status"] == "alert"
    assert feats["Month"]["current"]["unseen_share"] == pytest.approx(0.5, abs=0.05)
    assert feats["Region"]["status"] == "ok"
    assert report["n_current"] == n and report["thresholds"]["bins"] == 10


def test_missing_column_is_no_data():
    card = load_card(REPO / "systems" / "harmful_content.yaml")
    report = drift_report(card, None, pd.DataFrame({"text": ["a"]}), pd.DataFrame({"x": [1]}))
    assert report["features"]["text"]["status"] == "no_data"
    assert "current" in report["features"]["text"]["why"]


def test_too_few_rows_give_no_verdict() -> None:
    from mlsd_ray.monitor.drift import drift_report

    card = load_card(
        REPO / "systems" / "harmful_content.yaml",
        ["monitoring.min_rows=50"],
    )
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"text": ["word " * int(n) for n in rng.integers(1, 20, 500)]})
    shifted = pd.DataFrame({"text": ["word " * 200] * 10})
    few = drift_report(card, None, reference, shifted)
    assert few["status"] == "insufficient_data" and few["drifting"] == []
    assert few["features"]["text.char_length"]["status_if_enough_data"] == "alert"
    many = drift_report(card, None, reference, pd.concat([shifted] * 6))
    assert many["status"] == "alert" and "text.char_length" in many["drifting"]
