"""The gate with intervals, per-metric and per-slice rules and the latency budget; behavioural
tests and latency on a real (tiny) model; online metrics from a real prediction log."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsd_ray.behaviour_suite import Perturbation, load_suite
from mlsd_ray.evaluate.behaviour import run_suite
from mlsd_ray.evaluate.gate import Evidence, decide
from mlsd_ray.evaluate.latency import measure_latency
from mlsd_ray.models.package import InputSchema, ModelManifest, save_package
from mlsd_ray.models.simple import TfidfLogReg
from mlsd_ray.monitor.log import PredictionLogger, read_prediction_log
from mlsd_ray.monitor.online import online_metrics
from mlsd_ray.predict import Predictor
from mlsd_ray.spec import Gate, GateRule, OnlineMetric, Requirements
from mlsd_ray.tasks.bootstrap import paired_difference
from tests.toy_data import toy_split

REPO = Path(__file__).resolve().parents[2]


def _failed(decision) -> set[str]:  # type: ignore[no-untyped-def]
    return {r["rule"] for r in decision.rules if not r["passed"]}


def test_gate_uses_the_improvements_lower_bound() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    good = np.clip(y * 0.4 + rng.uniform(size=400) * 0.6, 0, 1)
    slightly = np.clip(good + rng.normal(0, 0.02, 400), 0, 1)  # same quality, noise only
    gate = Gate(metric="roc_auc", min_value=0.5, min_improvement=0.0, must_beat_baseline=False)
    cmp = {"roc_auc": paired_difference(y, slightly, good, 0.5, 0.5, "roc_auc", n_resamples=300)}
    cand = {"roc_auc": 0.9001}
    champ = {"roc_auc": 0.9}
    # On point estimates a hair's better model would win; the interval says "not shown".
    point = decide(gate.model_copy(update={"use_intervals": False}), cand, None, champ)
    assert point.passed
    honest = decide(gate, cand, None, champ, Evidence(comparisons=cmp))
    assert not honest.passed and _failed(honest) == {"beats_champion"}
    assert "CI [" in honest.reasons[0] and "lower bound" in honest.reasons[0]
    worse = np.clip(good + rng.normal(0, 0.4, 400), 0, 1)
    clear = {"roc_auc": paired_difference(y, good, worse, 0.5, 0.5, "roc_auc", n_resamples=300)}
    assert decide(gate, cand, None, champ, Evidence(comparisons=clear)).passed


def test_relative_improvement_without_intervals() -> None:
    gate = Gate(min_improvement=0.1, improvement="relative", use_intervals=False)
    assert decide(gate, {"roc_auc": 0.77}, None, {"roc_auc": 0.7}).passed
    lost = decide(gate, {"roc_auc": 0.76}, None, {"roc_auc": 0.7})
    assert not lost.passed and "needs >= 0.7700" in lost.reasons[0]


def test_per_metric_per_slice_and_latency_rules_name_what_failed() -> None:
    gate = Gate(
        metric="roc_auc",
        min_value=0.7,
        must_beat_baseline=False,
        use_intervals=False,
        rules=[
            GateRule(metric="recall", min_value=0.6),
            GateRule(metric="recall", slice="short", min_value=0.5),
            GateRule(metric="f1", slice="short", min_improvement=0.0),
        ],
    )
    slices = [{"slice": "short", "metrics": {"recall": 0.3, "f1": 0.4}}]
    champ_slices = [{"slice": "short", "metrics": {"recall": 0.5, "f1": 0.5}}]
    req = Requirements(business_objective="x", latency_p99_ms=50, priority="latency")
    ev = Evidence(
        slices=slices,
        champion_slices=champ_slices,
        latency={"p50_ms": 20.0, "p99_ms": 80.0},
        requirements=req,
    )
    d = decide(gate, {"roc_auc": 0.9, "recall": 0.7}, None, {"roc_auc": 0.8}, ev)
    assert _failed(d) == {"min_value[recall@short]", "beats_champion[f1@short]", "latency_p99"}
    assert any("p99 80.00 ms > budget 50" in r for r in d.reasons)
    # Priority accuracy: latency is reported, not a rule.
    ev.requirements = req.model_copy(update={"priority": "accuracy"})
    rules = decide(gate, {"roc_auc": 0.9}, None, None, ev).rules
    assert "latency_p99" not in {r["rule"] for r in rules}


@pytest.fixture(scope="module")
def toy_predictor(tmp_path_factory) -> Predictor:
    train = toy_split(300, seed=0)
    model = TfidfLogReg(["text"], min_df=1).fit(train[["text"]], train["label"].to_numpy())
    path = tmp_path_factory.mktemp("toy") / "model"
    manifest = ModelManifest(
        name="toy",
        kind="tfidf_logreg",
        category="binary",
        inputs=[InputSchema(name="text", type="text")],
        classes=["ok", "harmful"],
        threshold=0.5,
        params={"min_df": 1},
    )
    save_package(model, path, manifest)
    return Predictor(path)


def test_perturbations() -> None:
    assert Perturbation(change_names=True).apply("Alex met Maria") == "Maria met Sam"
    assert Perturbation(strip_punctuation=True).apply("hi, you!") == "hi you"
    assert Perturbation(add_url=True, append=" x").apply("a").startswith("a https://")


def test_behaviour_suite_runs_and_reports(toy_predictor: Predictor, tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        """
tests:
  - {name: mft_pos, type: min_functionality, expect: positive,
     texts: ["i hate you", "go away idiot"]}
  - {name: mft_wrong, type: min_functionality, expect: positive,
     texts: ["have a nice day"], gate: true}
  - {name: inv_url, type: invariance, perturb: {add_url: true}, max_change: 0.3,
     texts: ["lovely weather", "stupid person"]}
  - {name: dir_insult, type: directional, perturb: {append: " idiot stupid person"},
     texts: ["see you soon", "great game"]}
"""
    )
    results = {r["name"]: r for r in run_suite(toy_predictor, suite)}
    assert results["mft_pos"]["passed"] and results["mft_pos"]["pass_rate"] == 1.0
    assert not results["mft_wrong"]["passed"] and results["mft_wrong"]["failures"]
    assert results["inv_url"]["passed"]
    assert results["dir_insult"]["passed"]
    gate = Gate(min_value=0.0, must_beat_baseline=False)
    ev = Evidence(behaviour=list(results.values()))
    assert _failed(decide(gate, {"roc_auc": 0.9}, None, None, ev)) == {"behaviour[mft_wrong]"}
    # The shipped suite for the harmful-content card loads.
    assert len(load_suite(REPO / "systems" / "behaviour" / "harmful_content.yaml").tests) >= 5


def test_latency_is_measured_and_bounded(toy_predictor: Predictor) -> None:
    out = measure_latency(toy_predictor, ["hello there", "you idiot"], requests=50)
    assert out["requests"] == 50 and 0 < out["p50_ms"] <= out["p99_ms"]
    capped = measure_latency(toy_predictor, ["x"], requests=10_000_000, max_seconds=0.2)
    assert capped["requests"] < 10_000_000 and capped["seconds"] < 5


def test_online_metrics_from_the_prediction_log(tmp_path: Path) -> None:
    uri = str(tmp_path / "log")
    with PredictionLogger(uri, fields={"text": "text"}) as logger:
        logger.log("r1", [{"text": "a"}, {"text": "b"}], [0.9, 0.2], "1")
        logger.log("r2", [{"text": "c"}], [0.7], "2")
        logger.log("r3", [{"text": "d"}], [0.1], "2")
    log = read_prediction_log(uri)
    feedback = pd.DataFrame(
        {
            "request_id": ["r1", "r1", "r2", "r3"],
            "position": [0, 1, 0, 0],
            "label": [1, 1, 0, 1],
            "clicked": [1, 0, 1, None],
            "watch_time_s": [30.0, None, 10.0, 5.0],
        }
    )
    metrics = [
        OnlineMetric(name="caught", kind="caught_share", column="label"),
        OnlineMetric(name="precision", kind="precision", column="label"),
        OnlineMetric(name="ctr", kind="click_through_rate", column="clicked"),
        OnlineMetric(name="watch", kind="mean", column="watch_time_s"),
    ]
    out = online_metrics(metrics, log, feedback, threshold=0.5)
    m = out["metrics"]
    assert out["served"] == 4 and out["with_feedback"] == 4
    assert m["caught"]["value"] == pytest.approx(1 / 3)  # harmful r1/0, r1/1, r3: caught r1/0
    assert m["precision"]["value"] == pytest.approx(0.5)  # flagged r1/0 (harmful), r2 (ok)
    assert m["ctr"]["value"] == pytest.approx(0.5)
    assert m["watch"]["value"] == pytest.approx(15.0)
    assert m["caught"]["by_version"]["1"]["value"] == pytest.approx(0.5)
    from mlsd_ray.errors import DataError

    with pytest.raises(DataError, match="repeats the key"):
        online_metrics(metrics, log, pd.concat([feedback, feedback]), 0.5)


def test_cli_online_reads_the_workdirs_log(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mlsd_ray.cli import app

    card = REPO / "systems" / "harmful_content.yaml"
    with PredictionLogger(str(tmp_path / "work" / "predictions"), fields={"text": "text"}) as lg:
        lg.log("a", [{"text": "x"}, {"text": "y"}], [0.95, 0.1], "3")
    feedback = tmp_path / "feedback.csv"
    feedback.write_text("request_id,position,label\na,0,1\na,1,1\n")
    args = ["online", str(card), "--workdir", str(tmp_path / "work")]
    result = CliRunner().invoke(app, [*args, "--feedback", str(feedback), "--threshold", "0.5"])
    assert result.exit_code == 0, result.output
    out = (tmp_path / "work" / "reports" / "online" / "online_metrics.json").read_text()
    assert '"harmful_caught"' in out and '"value": 0.5' in out  # one of two harmful caught
    missing = CliRunner().invoke(app, [*args, "--feedback", str(tmp_path / "nope.csv")])
    assert missing.exit_code != 0


def test_negative_margin_tolerates_a_small_loss() -> None:
    gate = Gate(min_improvement=-0.01, use_intervals=False, must_beat_baseline=False)
    assert decide(gate, {"roc_auc": 0.895}, None, {"roc_auc": 0.9}).passed
    assert not decide(gate, {"roc_auc": 0.88}, None, {"roc_auc": 0.9}).passed
    assert not decide(Gate(use_intervals=False), {"roc_auc": 0.9}, None, {"roc_auc": 0.9}).passed
