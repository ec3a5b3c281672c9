"""The evaluation stage end to end on a small card: business threshold into the package,
intervals, slices, latency, behavioural tests, model card, registry with intervals; a
candidate over the latency budget never becomes champion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlsd_ray import pipeline, registry
from mlsd_ray.models.package import read_manifest
from mlsd_ray.predict import Predictor
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import load_card

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
CARD = REPO / "systems" / "harmful_content.yaml"
OVERRIDES = [
    "data.sources.0.uri=synthetic://harmful_content?rows=700&seed=3",
    "models.baseline={name: majority, kind: majority}",
    "models.candidates=[{name: tfidf_logreg, kind: tfidf_logreg}]",
    "evaluation.threshold_objective={rule: max_recall_at_precision, min_precision: 0.8}",
    "evaluation.bootstrap.n_resamples=200",
    "evaluation.latency.requests=50",
    "evaluation.gate.min_value=0.5",
    "evaluation.gate.rules=[{metric: recall, min_value: 0.3}]",
]


@pytest.fixture(scope="module")
def evaluated(ray_cluster, tmp_path_factory):
    card = load_card(CARD, OVERRIDES)
    workdir = Workdir.of(tmp_path_factory.mktemp("eval"))
    pipeline.etl(card, workdir)
    pipeline.train(card, workdir)
    report = pipeline.evaluate(card, workdir)
    registered = pipeline.register(card, workdir, report)
    return card, workdir, report, registered


def test_threshold_is_chosen_on_validation_and_stored(evaluated) -> None:
    _card, workdir, report, _ = evaluated
    manifest = read_manifest(workdir.model_dir("tfidf_logreg"))
    choice = manifest.metadata["threshold_choice"]
    assert choice["rule"] == "max_recall_at_precision" and choice["split"] == "validation"
    assert choice["met"] and choice["achieved"]["precision"] >= 0.8
    assert manifest.threshold == choice["threshold"] == report["thresholds"]["tfidf_logreg"]
    # deployment.inference: auto (the default) on a card without a transformer: fp32, recorded.
    assert manifest.metadata["inference_choice"]["path"] == "fp32"
    assert report["inference"]["tfidf_logreg"]["path"] == "fp32"
    assert report["metrics"]["tfidf_logreg"]["threshold"] == manifest.threshold
    # Serving decides with the stored threshold.
    predictor = Predictor(workdir.model_dir("tfidf_logreg"))
    scores = predictor.predict_frame(predictor.to_frame(["you pathetic loser", "nice soup"]))
    expected = ["harmful" if s >= manifest.threshold else "ok" for s in scores]
    assert predictor.labels(scores) == expected


def test_report_holds_intervals_slices_latency_behaviour(evaluated) -> None:
    _card, workdir, report, _ = evaluated
    out = workdir.reports / "evaluation"
    a = report["analysis"]["tfidf_logreg"]
    lo, hi = a["intervals"]["roc_auc"]
    assert lo <= report["metrics"]["tfidf_logreg"]["roc_auc"] <= hi
    assert {s["slice"] for s in a["slices"]} == {"short", "long", "with_url", "mentions"}
    assert sum(s["rows"] for s in a["slices"] if s["slice"] in ("short", "long")) < 70
    assert 0 < a["latency"]["p50_ms"] <= a["latency"]["p99_ms"]
    assert {t["name"] for t in a["behaviour"]} >= {"adding_an_insult_raises_the_score"}
    for png in ("pr", "calibration", "quality_latency", "threshold_tfidf_logreg", "roc"):
        assert (out / f"{png}.png").stat().st_size > 1000, png
    md = (out / "report.md").read_text()
    assert "## Slices" in md and "p99 ms" in md and "Behavioural tests" in md
    assert "## Serving path (deployment.inference)" in md
    card_md = (out / "model_card.md").read_text()
    for needle in (
        "95% bootstrap CI",
        "dataset version",
        "Decision threshold",
        "![pr](pr.png)",
        "**Serving path**: `fp32`",
    ):
        assert needle in card_md, needle
    assert json.loads((out / "report.json").read_text())["gate"]["passed"]


def test_registry_lists_intervals_and_keeps_the_model_card(evaluated) -> None:
    card, workdir, _report, registered = evaluated
    [info] = registry.list_versions(card, workdir)
    assert info.version == registered["registered_version"] and "champion" in info.aliases
    iv = registry.metric_intervals(info)["roc_auc"]
    assert iv["ci_low"] is not None and iv["ci_low"] <= iv["value"] <= iv["ci_high"]
    assert info.metrics["test_latency_p99_ms"] > 0
    # The model card travels with the version: as its description and as a run artifact.
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=workdir.tracking_uri)
    mv = client.get_model_version(card.registered_model_name, info.version)
    assert mv.description.startswith("# Model card: harmful_content / tfidf_logreg")
    arts = [a.path for a in client.list_artifacts(info.run_id, "model_card")]
    assert arts == ["model_card/model_card.md"]
    from typer.testing import CliRunner

    from mlsd_ray.cli import app

    args = ["registry", str(CARD), "--workdir", str(workdir.root), "--table"]
    for o in OVERRIDES:
        args += ["--set", o]
    shown = CliRunner().invoke(app, args)
    assert shown.exit_code == 0, shown.output
    assert f"{iv['value']:.3f} [{iv['ci_low']:.3f}, {iv['ci_high']:.3f}]" in shown.output
    assert "challenger,champion" in shown.output


def test_over_the_latency_budget_never_becomes_champion(evaluated) -> None:
    card, workdir, _, registered = evaluated
    slow = load_card(
        CARD,
        [
            *OVERRIDES,
            "requirements.priority=latency",
            "requirements.latency_p99_ms=0.0001",  # nothing answers this fast
            "evaluation.gate.use_intervals=false",
            "evaluation.gate.min_improvement=-1",  # would pass on quality alone
        ],
    )
    report = pipeline.evaluate(slow, workdir)
    failed = {r["rule"] for r in report["gate"]["rules"] if not r["passed"]}
    assert failed == {"latency_p99"}
    result = pipeline.register(slow, workdir, report)
    assert not result["promoted"]
    assert "latency_p99" in " ".join(report["gate"]["failed"]) or "budget" in result["summary"]
    champion = registry.get_alias(card, workdir, "champion")
    assert champion is not None and champion.version == registered["registered_version"]


def test_report_shows_ece_before_and_after_calibration(evaluated) -> None:
    _card, workdir, report, _ = evaluated
    meta = read_manifest(workdir.model_dir("tfidf_logreg")).metadata["calibration"]
    cal = report["calibration"]["tfidf_logreg"]
    assert meta["requested"] == "auto" and cal["method"] == meta["chosen"]
    assert cal["test_ece_after"] == pytest.approx(report["metrics"]["tfidf_logreg"]["ece"])
    if cal["method"] == "none":
        assert cal["test_ece_before"] == cal["test_ece_after"]
    assert report["calibration"]["majority"]["method"] == "none"
    markdown = (workdir.reports / "evaluation" / "report.md").read_text()
    assert "## Calibration" in markdown and "| tfidf_logreg |" in markdown


def test_external_sets_are_scored_beside_test_and_gate(
    evaluated, shared_datasets: Path, tmp_path: Path
) -> None:
    """SMS Spam (spam = harmful) as an out-of-domain set: scored for every model and the
    champion, reported, and a no-regression gate rule against the champion."""
    card, workdir, _report, _registered = evaluated
    sms = tmp_path / "sms.tsv"
    lines = (shared_datasets / "harmful_content" / "sms_spam.tsv").read_text().splitlines()
    sms.write_text("\n".join(lines[:400]) + "\n\n")  # a blank line: a row that is left out
    external = (
        f"evaluation.external=[{{name: sms, uri: '{sms}', rename: {{SMS: text, Label: label}}, "
        "label_mapping: {ham: 0, spam: 1}, max_regression: 0.0}]"
    )
    again = pipeline.evaluate(load_card(CARD, [*OVERRIDES, external]), workdir)
    result = again["external"]["sms"]
    assert result["rows_ok"] == 399 and result["rows_in"] >= 399
    champion = registry.get_alias(card, workdir, registry.CHAMPION)
    expected = {"majority", "tfidf_logreg"} | (
        {f"champion v{champion.version}"} if champion else set()
    )
    assert set(result["models"]) == expected
    tfidf = result["models"]["tfidf_logreg"]
    assert tfidf["n"] == 399 and 0.0 <= tfidf["roc_auc"] <= 1.0
    assert tfidf["intervals"]["roc_auc"][0] <= tfidf["roc_auc"] <= tfidf["intervals"]["roc_auc"][1]
    rules = {r["rule"]: r for r in again["gate"]["rules"]}
    if champion is not None:  # the same model, the same rows: no regression
        candidate = result["models"][again["candidate"]]["roc_auc"]
        champ = result["models"][f"champion v{champion.version}"]["roc_auc"]
        assert rules["external:sms"]["passed"] == (candidate >= champ)
    markdown = (workdir.reports / "evaluation" / "report.md").read_text()
    assert "## External set: sms" in markdown
