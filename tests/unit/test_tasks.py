"""The task registry: answers, decision rules and metrics per task; the business constraint as a
gate rule; `mlsd validate`; the error family."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from mlsd_ray.cli import app
from mlsd_ray.errors import BadRequest, CardError, InvalidInput, MlsdError
from mlsd_ray.evaluate.gate import Evidence, decide
from mlsd_ray.spec import Category, Gate, GateRule, card_from_dict, load_card
from mlsd_ray.tasks import TASKS, Decision, get_task
from mlsd_ray.tasks.multiclass import decide as decide_classes

REPO = Path(__file__).resolve().parents[2]
CARD_3 = REPO / "systems" / "harmful_content_3class.yaml"
CLASSES = ["hate", "offensive", "neither"]


def test_the_card_categories_are_the_registered_tasks() -> None:
    assert set(get_args(Category)) == set(TASKS) >= {"binary", "multiclass", "regression"}
    with pytest.raises(CardError, match="one of"):
        get_task("ranking_typo")


def test_multiclass_answers_by_class_thresholds_then_argmax() -> None:
    proba = np.array([[0.40, 0.50, 0.10], [0.20, 0.70, 0.10], [0.10, 0.10, 0.80]])
    plain = Decision(CLASSES)
    assert decide_classes(proba, plain).tolist() == [1, 1, 2]
    hate_first = Decision(CLASSES, class_thresholds={"hate": 0.35})
    assert decide_classes(proba, hate_first).tolist() == [0, 1, 2]
    task = get_task("multiclass")
    assert task.labels(proba, hate_first) == ["hate", "offensive", "neither"]
    assert task.drift_values(proba).tolist() == [0.5, 0.7, 0.8]


def test_multiclass_metrics_are_keyed_by_class_name() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    proba = rng.dirichlet([1, 1, 1], 300)
    proba[np.arange(300), y] += 0.6  # informative, not perfect
    proba /= proba.sum(axis=1, keepdims=True)
    m = get_task("multiclass").metrics(y, proba, Decision(CLASSES))
    from sklearn.metrics import f1_score, roc_auc_score

    pred = proba.argmax(axis=1)
    assert m["f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["f1_weighted"] == pytest.approx(f1_score(y, pred, average="weighted"))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, proba, multi_class="ovr"))
    assert set(m["per_class"]) == set(CLASSES)
    hate = m["per_class"]["hate"]
    assert hate["roc_auc"] == pytest.approx(roc_auc_score(y == 0, proba[:, 0]))
    assert {"precision", "recall", "f1", "support", "pr_auc"} <= set(hate)
    assert np.asarray(m["confusion_matrix"]).shape == (3, 3)


def test_gate_on_macro_metric_and_per_class_recall() -> None:
    gate = Gate(
        metric="f1",
        min_value=0.5,
        rules=[GateRule(metric="recall", class_name="hate", min_value=0.4)],
    )
    good = {"f1": 0.7, "per_class": {"hate": {"recall": 0.5}}}
    assert decide(gate, good, None, None).passed
    missed = {"f1": 0.7, "per_class": {"hate": {"recall": 0.1}}}
    decision = decide(gate, missed, None, None)
    assert not decision.passed
    assert decision.reasons == ["recall on class hate 0.1000 (min 0.4)"]


def test_an_unmet_business_constraint_fails_the_gate_unless_allowed() -> None:
    choice = {
        "rule": "max_recall_at_precision",
        "threshold": 0.97,
        "met": False,
        "achieved": {"precision": 0.81, "recall": 0.2},
    }
    gate, metrics = Gate(metric="roc_auc", min_value=0.5), {"roc_auc": 0.9}
    failed = decide(gate, metrics, None, None, Evidence(threshold_choice=choice))
    assert not failed.passed
    assert "not met on validation" in failed.reasons[0] and "precision 0.8100" in failed.reasons[0]
    allowed = decide(gate, metrics, None, None, Evidence(threshold_choice=choice, allow_unmet=True))
    assert allowed.passed
    met = decide(gate, metrics, None, None, Evidence(threshold_choice={**choice, "met": True}))
    assert met.passed and met.rules[-1]["rule"] == "threshold_objective"


def test_cards_check_classes_gate_metrics_and_kinds_at_load() -> None:
    raw = yaml.safe_load(CARD_3.read_text())
    card = card_from_dict(raw, base_dir=CARD_3.parent)
    assert card.evaluation.class_thresholds == {"hate": 0.5}

    def error(change: dict) -> str:
        bad = yaml.safe_load(CARD_3.read_text())
        for path, value in change.items():
            node = bad
            *head, last = path.split(".")
            for key in head:
                node = node[key]
            node[last] = value
        with pytest.raises(CardError) as err:
            card_from_dict(bad, base_dir=CARD_3.parent)
        return str(err.value)

    assert "unknown class(es) ['hat']" in error({"evaluation.class_thresholds": {"hat": 0.3}})
    assert "does not fit category 'multiclass'" in error({"evaluation.gate": {"metric": "rmse"}})
    assert "kind 'ridge' does not do 'multiclass'" in error(
        {"models.candidates": [{"name": "r", "kind": "ridge"}]}
    )
    message = error(
        {"models.candidates": [{"name": "t", "kind": "tfidf_logreg", "params": {"c": 4}}]}
    )
    assert "models.candidates.0.params.c: kind 'tfidf_logreg' has no param 'c'" in message


def test_validate_prints_the_resolved_card_or_every_error(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["validate", str(CARD_3)])
    assert ok.exit_code == 0, ok.output
    resolved = yaml.safe_load(ok.output)
    assert resolved["framing"]["category"] == "multiclass"
    assert resolved["deployment"]["host"] == "127.0.0.1"  # defaults are filled in
    raw = yaml.safe_load(CARD_3.read_text())
    raw["requirements"]["latency_p99_ms"] = -1
    raw["models"]["candidates"][0]["params"] = {"c": 4}
    raw["models"]["candidates"][0]["trainer"] = {"max_failures": 3}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    out = runner.invoke(app, ["validate", str(bad)])
    assert out.exit_code == 1
    text = out.output
    assert "requirements.latency_p99_ms: got -1; expected input should be greater than 0" in text
    assert "models.candidates.0.params.c:" in text
    assert "models.candidates.0.trainer.max_failures: kind 'tfidf_logreg' ignores it" in text


def test_errors_are_one_family_and_pickle_with_their_fix() -> None:
    for err in (InvalidInput("instances[0].x: expected a number"), BadRequest(422, "empty")):
        assert isinstance(err, MlsdError) and isinstance(err, ValueError)
    back = pickle.loads(pickle.dumps(CardError("bad key", why="typo", fix="write C")))
    assert (back.what, back.why, back.fix) == ("bad key", "typo", "write C")
    assert str(back) == "bad key Why: typo Fix: write C"
    request = pickle.loads(pickle.dumps(BadRequest(413, "too big", fix="send less")))
    assert (request.status_code, request.reason, request.fix) == (413, "too big", "send less")
    assert load_card(CARD_3).framing.label.classes == CLASSES


def test_the_leaderboard_ranks_on_the_gate_metric_at_the_chosen_threshold(tmp_path: Path) -> None:
    from mlsd_ray.evaluate.stage import validation_leaderboard
    from mlsd_ray.models.package import MANIFEST, InputSchema, ModelManifest
    from mlsd_ray.settings import Workdir

    card = load_card(
        REPO / "systems" / "harmful_content.yaml", overrides=["evaluation.gate.metric=recall"]
    )
    workdir = Workdir(tmp_path)
    recorded = {"a": 0.9, "b": 0.5}  # recall at the card's 0.5, as training recorded it
    for name, recall in recorded.items():
        folder = workdir.model_dir(name)
        folder.mkdir(parents=True)
        manifest = ModelManifest(
            name=name,
            kind="tfidf_logreg",
            category="binary",
            inputs=[InputSchema(name="text", type="text")],
            classes=["ok", "harmful"],
            metadata={"validation": {"recall": recall}},
        )
        (folder / MANIFEST).write_text(manifest.model_dump_json())
    assert list(validation_leaderboard(card, workdir, ["a", "b"])) == ["a", "b"]
    # At the thresholds the business objective chose, b catches more: b goes first.
    chosen = {"a": {"recall": 0.4}, "b": {"recall": 0.7}}
    assert validation_leaderboard(card, workdir, ["a", "b"], chosen) == {"b": 0.7, "a": 0.4}
