"""Multiclass end to end on a stratified sample of Davidson's three classes (hate, offensive,
neither): ETL, training, per-class evaluation and the gate, the registry, the predictor's
answers (what Serve returns), `evaluate --data` on a file; and MlsdError through a Ray task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsd_ray import pipeline
from mlsd_ray.errors import CardError
from mlsd_ray.evaluate.external import evaluate_alias_on
from mlsd_ray.predict import Predictor
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import load_card

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CARD = Path(__file__).resolve().parents[2] / "systems" / "harmful_content_3class.yaml"
CLASSES = ["hate", "offensive", "neither"]


@pytest.fixture(scope="module")
def sample(shared_datasets: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,200 rows, the rare hate class over-sampled to 1 in 6 so that every split holds some."""
    frame = pd.read_csv(shared_datasets / "harmful_content" / "davidson_dev.csv")
    parts = [
        frame[frame["class"] == c].sample(n, random_state=0)
        for c, n in ((0, 200), (1, 600), (2, 400))
    ]
    out = tmp_path_factory.mktemp("davidson") / "sample.csv"
    pd.concat(parts).sample(frac=1.0, random_state=0).to_csv(out, index=False)
    return out


@pytest.fixture(scope="module")
def evaluated(ray_cluster, sample: Path, tmp_path_factory: pytest.TempPathFactory):
    # The sample is small: the gate's floors are lowered, its rules are the card's.
    card = load_card(
        CARD,
        [
            f"data.sources.0.uri={sample}",
            "evaluation.latency.requests=20",
            "evaluation.gate.min_value=0.4",
            "evaluation.gate.rules.0.min_value=0.2",
            "evaluation.gate.rules.1.min_value=0.7",
        ],
    )
    workdir = Workdir.of(tmp_path_factory.mktemp("multiclass"))
    pipeline.etl(card, workdir)
    summary = pipeline.train(card, workdir)
    report = pipeline.evaluate(card, workdir)
    registered = pipeline.register(card, workdir, report)
    return card, workdir, summary, report, registered


def test_training_records_multiclass_validation_metrics(evaluated) -> None:
    _card, _workdir, summary, _report, _ = evaluated
    tfidf = summary["models"]["tfidf_logreg"]
    assert set(tfidf["validation"]["per_class"]) == set(CLASSES)
    assert tfidf["validation_roc_auc"] == tfidf["validation"]["roc_auc"] > 0.75


def test_evaluation_reports_per_class_metrics_and_gates_on_them(evaluated) -> None:
    _card, _workdir, _summary, report, registered = evaluated
    m = report["metrics"]["tfidf_logreg"]
    for name in CLASSES:
        per = m["per_class"][name]
        assert {"precision", "recall", "f1", "roc_auc", "pr_auc", "support"} <= set(per)
        assert per["support"] > 0 and 0.5 < per["roc_auc"] <= 1.0
    assert np.asarray(m["confusion_matrix"]).shape == (3, 3)
    assert np.asarray(m["confusion_matrix"]).sum() == m["n"]
    assert m["f1"] > report["metrics"]["majority"]["f1"]  # macro F1 beats the majority class
    assert 0 < m["f1"] <= 1 and 0 < m["f1_weighted"] <= 1
    assert report["candidate"] == "tfidf_logreg"
    rules = {r["rule"]: r for r in report["gate"]["rules"]}
    assert {"min_value", "beats_baseline", "min_value[recall[hate]]"} <= set(rules)
    hate_recall = m["per_class"]["hate"]["recall"]
    assert rules["min_value[recall[hate]]"]["passed"] == (hate_recall >= 0.2)
    assert any(Path(p).name == "confusion_tfidf_logreg.png" for p in report["plots"])
    assert registered["promoted"] == report["gate"]["passed"]


def test_the_predictor_answers_class_probabilities_and_a_label(evaluated) -> None:
    _card, workdir, *_ = evaluated
    predictor = Predictor(workdir.model_dir("tfidf_logreg"))
    assert predictor.manifest.class_thresholds == {"hate": 0.5}
    texts = ["have a lovely day everyone", "you stupid bitch", "kill all those immigrants"]
    scores = predictor.predict_frame(predictor.to_frame(texts))
    assert scores.shape == (3, 3)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-6)
    expected = [
        "hate" if p[0] >= 0.5 else CLASSES[int(np.argmax(p))] for p in scores
    ]  # the card's rule: hate at 0.5 first, else the argmax
    assert predictor.labels(scores) == expected
    assert expected[0] == "neither"


def test_evaluate_data_file_works_for_multiclass(evaluated, sample: Path, tmp_path: Path) -> None:
    card, workdir, _summary, report, registered = evaluated
    if not registered["promoted"]:
        pytest.fail(f"the sample's candidate should pass the gate: {report['gate']['failed']}")
    held_out = tmp_path / "held_out.csv"
    pd.read_csv(sample).head(150).to_csv(held_out, index=False)
    result = evaluate_alias_on(card, workdir, str(held_out))
    assert result["rows_ok"] == 150
    assert set(result["metrics"]["per_class"]) == set(CLASSES)
    assert result["metrics"]["n"] == 150


def _raise_card_error() -> None:
    raise CardError("models.x.params.c: unknown", why="a typo", fix="write C")


def test_mlsd_error_crosses_a_ray_task_with_its_fix(ray_cluster) -> None:
    ray = ray_cluster
    with pytest.raises(CardError) as err:
        ray.get(ray.remote(_raise_card_error).remote())
    assert err.value.fix == "write C" and err.value.why == "a typo"
