"""Metrics equal scikit-learn; the gate names the rule that failed."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from mlsd_ray.evaluate.gate import decide
from mlsd_ray.metrics import classification_metrics
from mlsd_ray.spec import Gate


def test_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    p = np.clip(y * 0.3 + rng.uniform(size=300) * 0.7, 0, 1)
    m = classification_metrics(y, p, threshold=0.5)
    pred = (p >= 0.5).astype(int)
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert m["pr_auc"] == pytest.approx(skm.average_precision_score(y, p))
    tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
    assert m["confusion_matrix"] == [[tn, fp], [fn, tp]]


def test_one_class_leaves_aucs_undefined() -> None:
    m = classification_metrics(np.ones(5), np.full(5, 0.9))
    assert m["roc_auc"] is None and m["accuracy"] == 1.0


def test_gate_rules() -> None:
    gate = Gate(metric="roc_auc", min_value=0.7, min_improvement=0.01, must_beat_baseline=True)
    good = decide(gate, {"roc_auc": 0.9}, {"roc_auc": 0.6}, {"roc_auc": 0.85})
    assert good.passed and not good.reasons
    worse = decide(gate, {"roc_auc": 0.8}, {"roc_auc": 0.6}, {"roc_auc": 0.85})
    assert not worse.passed
    assert [r["rule"] for r in worse.rules if not r["passed"]] == ["beats_champion"]
    low = decide(gate, {"roc_auc": 0.65}, {"roc_auc": 0.7}, None)
    assert {r["rule"] for r in low.rules if not r["passed"]} == {"min_value", "beats_baseline"}
    # Too small an improvement is not enough when the card asks for a margin.
    close = decide(gate, {"roc_auc": 0.855}, None, {"roc_auc": 0.85})
    assert not close.passed and "needs >= 0.8600" in close.reasons[0]
