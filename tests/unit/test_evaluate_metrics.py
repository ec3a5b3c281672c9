"""Metrics by category equal scikit-learn on fixed cases; bootstrap replicates equal
scikit-learn on their resamples; thresholds meet their objectives; slices select and flag."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from mlsd_ray.evaluate.bootstrap import (
    confidence_intervals,
    paired_difference,
    replicate_metrics,
    resample_indices,
)
from mlsd_ray.evaluate.slices import slice_masks, slice_metrics
from mlsd_ray.evaluate.threshold import choose_threshold, threshold_curve
from mlsd_ray.metrics import (
    classification_metrics,
    expected_calibration_error,
    multiclass_metrics,
    ranking_metrics,
)
from mlsd_ray.spec import Slice, ThresholdObjective


def _binary(n: int = 400, seed: int = 1, ties: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(y * 0.3 + rng.uniform(size=n) * 0.7, 0.001, 0.999)
    return y, (np.round(p, 2) if ties else p)  # rounding makes ties, the hard case


def test_log_loss_and_calibration_error_match_sklearn() -> None:
    y, p = _binary(ties=False)  # no probability on a bin edge
    m = classification_metrics(y, p)
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, p))
    frac, mean = calibration_curve(y, p, n_bins=10, strategy="uniform")
    edges = np.linspace(0, 1, 11)
    counts = np.histogram(p, bins=edges)[0]
    counts = counts[counts > 0]
    expected = float(np.sum(np.abs(frac - mean) * counts) / len(y))
    assert m["ece"] == pytest.approx(expected)
    # A perfectly calibrated constant: observed rate equals the prediction.
    assert expected_calibration_error(np.array([1, 0, 0, 0]), np.full(4, 0.25)) == 0.0


def test_multiclass_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 300)
    logits = rng.normal(size=(300, 3)) + np.eye(3)[y] * 1.5
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = multiclass_metrics(y, proba, ["a", "b", "c"])
    pred = proba.argmax(1)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba))
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()
    report = skm.classification_report(y, pred, output_dict=True)
    for i, name in enumerate("abc"):
        assert m["per_class"][name]["recall"] == pytest.approx(report[str(i)]["recall"])
        assert m["per_class"][name]["support"] == report[str(i)]["support"]


def test_ranking_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(5)
    groups = np.repeat(np.arange(20), 8)
    rel = rng.integers(0, 2, 160)
    scores = rng.uniform(size=160)
    m = ranking_metrics(groups, rel, scores, k=8)  # k = every item: MAP@k = mean AP
    ndcg, ap = [], []
    for g in range(20):
        sel = groups == g
        ndcg.append(skm.ndcg_score(rel[sel][None], scores[sel][None], k=8))
        if rel[sel].any():
            ap.append(skm.average_precision_score(rel[sel], scores[sel]))
    assert m["ndcg@8"] == pytest.approx(np.mean(ndcg))
    assert m["map@8"] == pytest.approx(np.mean(ap))
    assert m["recall@8"] == pytest.approx(1.0)  # every relevant item is within the top 8
    # A fixed case by hand: relevant items at ranks 1 and 3 of 4, k=2.
    small = ranking_metrics(np.zeros(4), np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1]), 2)
    assert small["recall@2"] == 0.5 and small["map@2"] == pytest.approx(0.5)
    assert small["ndcg@2"] == pytest.approx(
        skm.ndcg_score([[1, 0, 1, 0]], [[0.9, 0.8, 0.7, 0.1]], k=2)
    )


def test_bootstrap_replicates_equal_sklearn_on_each_resample() -> None:
    y, p = _binary(ties=True)
    idx = resample_indices(len(y), 6, seed=2)
    reps = replicate_metrics(y, p, 0.5, idx)
    for b in range(6):
        yy, pp = y[idx[b]], p[idx[b]]
        pred = (pp >= 0.5).astype(int)
        assert reps["roc_auc"][b] == pytest.approx(skm.roc_auc_score(yy, pp))
        assert reps["pr_auc"][b] == pytest.approx(skm.average_precision_score(yy, pp))
        assert reps["f1"][b] == pytest.approx(skm.f1_score(yy, pred))
        assert reps["precision"][b] == pytest.approx(skm.precision_score(yy, pred))
        assert reps["recall"][b] == pytest.approx(skm.recall_score(yy, pred))
        assert reps["accuracy"][b] == pytest.approx(skm.accuracy_score(yy, pred))


def test_intervals_are_seeded_and_cover_the_estimate() -> None:
    y, p = _binary(n=300, ties=False)
    a = confidence_intervals(y, p, n_resamples=300, seed=4)
    assert a == confidence_intervals(y, p, n_resamples=300, seed=4)
    assert a != confidence_intervals(y, p, n_resamples=300, seed=5)
    point = classification_metrics(y, p)
    for m, (lo, hi) in a.items():  # type: ignore[misc]
        assert lo <= point[m] <= hi, m
        assert hi - lo < 0.2, m  # 300 rows: informative, not degenerate
    # More data, narrower interval.
    y2, p2 = _binary(n=3000, ties=False)
    b = confidence_intervals(y2, p2, n_resamples=300, seed=4)
    assert b["roc_auc"][1] - b["roc_auc"][0] < a["roc_auc"][1] - a["roc_auc"][0]  # type: ignore[index]


def test_paired_difference_separates_better_from_equal() -> None:
    y, p = _binary(n=500, ties=False)
    rng = np.random.default_rng(9)
    worse = np.clip(p + rng.normal(0, 0.35, len(p)), 0, 1)
    same = paired_difference(y, p, p, 0.5, 0.5, "roc_auc", n_resamples=200)
    assert same["interval"] == [0.0, 0.0]
    better = paired_difference(y, p, worse, 0.5, 0.5, "roc_auc", n_resamples=200)
    assert better["interval"][0] > 0
    rel = paired_difference(y, p, worse, 0.5, 0.5, "roc_auc", relative=True, n_resamples=200)
    assert rel["mean"] == pytest.approx(better["mean"] / 0.75, rel=0.3)


@pytest.mark.parametrize("precision", [0.6, 0.75, 0.9])
def test_max_recall_at_precision_is_the_best_feasible_threshold(precision: float) -> None:
    y, p = _binary(n=600, seed=7)
    obj = ThresholdObjective(rule="max_recall_at_precision", min_precision=precision)
    choice = choose_threshold(obj, y, p)
    pred = p >= choice["threshold"]
    assert choice["met"] and skm.precision_score(y, pred) >= precision
    # No threshold with enough precision has a higher recall (brute force over the scores).
    best = max(
        skm.recall_score(y, p >= t)
        for t in np.unique(p)
        if skm.precision_score(y, p >= t, zero_division=0) >= precision
    )
    assert skm.recall_score(y, pred) == pytest.approx(best)


def test_best_f1_and_expected_value() -> None:
    y, p = _binary(n=500, seed=8)
    f1 = choose_threshold(ThresholdObjective(rule="best_f1"), y, p)
    scores = {t: skm.f1_score(y, p >= t) for t in np.unique(p)}
    assert skm.f1_score(y, p >= f1["threshold"]) == pytest.approx(max(scores.values()))
    obj = ThresholdObjective(rule="expected_value", value_tp=9, value_fp=-1)
    ev = choose_threshold(obj, y, p)

    def value(t: float) -> float:
        pred = p >= t
        return (9 * np.sum(pred & (y == 1)) - np.sum(pred & (y == 0))) / len(y)

    assert value(ev["threshold"]) == pytest.approx(max(value(t) for t in np.unique(p)))
    assert ev["achieved"]["expected_value_per_row"] == pytest.approx(value(ev["threshold"]))
    # Unreachable precision: the most precise threshold, reported as not met.
    hard = ThresholdObjective(rule="max_recall_at_precision", min_precision=1.0)
    assert choose_threshold(hard, y, np.full(len(y), 0.5))["met"] is False


def test_threshold_curve_matches_precision_recall_curve() -> None:
    y, p = _binary(seed=11)
    c = threshold_curve(y, p)
    precision, recall, thresholds = skm.precision_recall_curve(y, p)
    np.testing.assert_allclose(c["threshold"], thresholds)
    np.testing.assert_allclose(c["precision"], precision[:-1])
    np.testing.assert_allclose(c["recall"], recall[:-1])


def test_slices_select_rows_and_flag_weak_ones() -> None:
    frame = pd.DataFrame(
        {
            "text": ["short", "see http://x.io now", "a" * 50, "ok www.site.com", "tiny", "hey"],
            "VisitorType": ["New", "Returning", "New", "Other", "Returning", "New"],
            "PageValues": [0.0, 3.0, 0.0, 12.0, 1.0, 0.0],
        }
    )
    masks = {}
    for spec in [
        Slice(name="short", column="text", length_max=5),
        Slice(name="url", column="text", pattern=r"https?://|www\."),
        Slice(name="visitor", column="VisitorType", each_value=True),
        Slice(name="paid", column="PageValues", min=1),
        Slice(name="returning", column="VisitorType", equals=["Returning"]),
    ]:
        masks.update(slice_masks(spec, frame))
    assert masks["short"].tolist() == [True, False, False, False, True, True]
    assert masks["url"].tolist() == [False, True, False, True, False, False]
    assert set(masks) >= {"visitor=New", "visitor=Returning", "visitor=Other"}
    assert masks["paid"].tolist() == [False, True, False, True, True, False]
    assert masks["returning"].tolist() == masks["visitor=Returning"].tolist()

    y = np.array([1, 1, 0, 1, 1, 0])
    p = np.array([0.2, 0.9, 0.1, 0.8, 0.3, 0.4])  # the short positives are missed
    specs = [
        Slice(name="short", column="text", length_max=5, min_value=0.5, min_rows=2),
        Slice(name="url", column="text", pattern="http|www", metric="recall", min_value=0.5),
    ]
    out = {s["slice"]: s for s in slice_metrics(specs, frame, y, p, 0.5)}
    assert out["short"]["value"] == 0.0 and out["short"]["flagged"]
    assert out["url"]["value"] == 1.0 and not out["url"]["flagged"] and out["url"]["too_small"]
    assert out["short"]["metrics"]["recall"] == skm.recall_score([1, 1, 0], [0, 0, 0])


def test_slice_spec_needs_exactly_one_selector() -> None:
    from mlsd_ray.errors import CardError
    from mlsd_ray.spec import card_from_dict, load_card

    with pytest.raises(ValueError, match="exactly one"):
        Slice(name="x", column="text", pattern="a", length_max=3)
    with pytest.raises(ValueError, match="not a regex"):
        Slice(name="x", column="text", pattern="(")
    repo = Path(__file__).resolve().parents[2]
    card = load_card(repo / "systems" / "harmful_content.yaml").model_dump(mode="json")
    card["evaluation"]["gate"]["rules"] = [{"metric": "recall", "slice": "nope", "min_value": 0.1}]
    with pytest.raises(CardError, match="no such slice"):
        card_from_dict(card)
