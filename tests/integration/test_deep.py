"""Deep tabular models on the shared local Ray: the mlp through Ray Train on real data, tuning
with Ray Tune (ASHA stops trials early, MLflow parent and child runs), the regression card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mlsd_ray import pipeline, registry
from mlsd_ray.data.layout import read_split
from mlsd_ray.predict import Predictor
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import card_from_dict
from mlsd_ray.train.stage import train_models

pytestmark = pytest.mark.integration
SYSTEMS = Path(__file__).resolve().parents[2] / "systems"


@pytest.mark.slow
def test_mlp_beats_majority_on_online_shoppers(ray_cluster, shared_datasets, tmp_path) -> None:
    raw = yaml.safe_load((SYSTEMS / "event_registration.yaml").read_text())
    raw["data"]["sources"][0]["uri"] = str(shared_datasets / "ad_click/online_shoppers_dev.csv")
    raw["models"]["candidates"] = [
        {
            "name": "mlp",
            "kind": "mlp",
            "params": {"hidden": [32, 16], "cross_layers": 1, "epochs": 6, "patience": 2},
        }
    ]
    card = card_from_dict(raw, base_dir=SYSTEMS)
    workdir = Workdir(tmp_path)
    pipeline.etl(card, workdir)

    summary = train_models(card, workdir)

    mlp, majority = summary["models"]["mlp"], summary["models"]["majority"]
    assert mlp["validation_roc_auc"] > 0.85 > 0.5 == majority["validation_roc_auc"]
    curve = mlp["learning_curve"]
    assert curve["verdict"] in ("good_fit", "overfitting", "underfitting") and curve["detail"]
    assert Path(curve["png"]).is_file() and Path(summary["report"]).is_file()
    assert "## mlp (mlp)" in Path(summary["report"]).read_text()
    # On the test split too, through the package the Predictor (and Serve) loads.
    test = read_split(workdir.split_uri(card, "test"))
    from sklearn.metrics import roc_auc_score

    p = Predictor(mlp["dir"]).predict_frame(test[card.feature_names])
    assert roc_auc_score(test["label"], p) > 0.85


def tiny_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n)})
    df["color"] = rng.choice(["red", "blue"], size=n)
    df["label"] = ((df.x1 * df.x2 + (df.color == "red")) > 0.5).astype("int64")
    return df


def tiny_card(tuning: dict) -> dict:
    return {
        "name": "tiny_tune",
        "requirements": {"business_objective": "test"},
        "framing": {
            "ml_objective": "test",
            "inputs": [
                {"name": "x1", "type": "float"},
                {"name": "x2", "type": "float"},
                {"name": "color", "type": "category"},
            ],
            "label": {"column": "y"},
        },
        "data": {"sources": [{"uri": "unused.csv"}]},
        "models": {
            "baseline": {"name": "majority", "kind": "majority"},
            "candidates": [
                {
                    "name": "mlp",
                    "kind": "mlp",
                    "params": {"hidden": [16], "patience": 0, "epochs": 4, "batch_size": 64},
                    "tuning": tuning,
                }
            ],
        },
    }


@pytest.mark.slow
def test_tuning_stops_trials_early_and_retrains_the_best(ray_cluster, tmp_path: Path) -> None:
    tuning = {
        "space": {
            "learning_rate": {"type": "loguniform", "low": 1e-5, "high": 3e-2},
            "dropout": {"type": "choice", "values": [0.0, 0.3]},
        },
        "num_samples": 4,
        "max_concurrent_trials": 2,
        "max_t": 4,
        "grace_period": 1,
        "reduction_factor": 2,
    }
    card = card_from_dict(tiny_card(tuning))
    workdir = Workdir(tmp_path)
    for name, frame in (("train", tiny_frame(400, 0)), ("validation", tiny_frame(150, 1))):
        folder = Path(workdir.split_uri(card, name))
        folder.mkdir(parents=True)
        frame.to_parquet(folder / "part-0.parquet", index=False)

    summary = train_models(card, workdir, only=["mlp"])

    info = summary["models"]["mlp"]["tuning"]
    assert info["trials"] == 4
    trials = json.loads((workdir.reports / "tuning" / "mlp" / "trials.json").read_text())
    epochs = sorted(t["epochs"] for t in trials)
    assert epochs[0] < 4 == epochs[-1], epochs  # ASHA stopped at least one trial before max_t
    assert info["stopped_early"] == sum(e < 4 for e in epochs) >= 1
    assert (workdir.reports / "tuning" / "mlp" / "tuning.png").stat().st_size > 1000
    # The best configuration was retrained (Ray Train) and packaged.
    manifest = json.loads((workdir.model_dir("mlp") / "mlsd_model.json").read_text())
    assert manifest["params"]["learning_rate"] == info["best_config"]["learning_rate"]
    best = min(trials, key=lambda t: t["best"])
    assert best["is_best"] and best["config"] == info["best_config"]
    # MLflow: one parent run, one child run per trial with its sampled config.
    children = registry.child_runs(card, workdir, info["parent_run_id"])
    assert len(children) == 4
    assert {c["params"]["learning_rate"] for c in children} == {
        str(t["config"]["learning_rate"]) for t in trials
    }
    assert all("val_loss" in c["metrics"] for c in children)


@pytest.mark.slow
def test_watch_time_card_beats_the_mean(ray_cluster, tmp_path: Path) -> None:
    """The regression card end to end on a 20k-row head of MovieLens-100k (the full file runs
    with `mlsd run systems/watch_time.yaml`, see the README)."""
    from mlsd_ray.spec import load_card

    full = load_card(SYSTEMS / "watch_time.yaml").data.sources[0].uri
    head = tmp_path / "ml-20k.inter"
    head.write_text("".join(Path(full).read_text().splitlines(keepends=True)[:20001]))
    card = load_card(
        SYSTEMS / "watch_time.yaml",
        overrides=[
            f"data.sources.0.uri={head}",
            "models.candidates.1.params.epochs=3",
            "models.candidates.1.params.max_categories=100",
            "models.candidates.0.params.max_categories=100",
        ],
    )
    workdir = Workdir(tmp_path / "w")
    pipeline.etl(card, workdir)
    pipeline.train(card, workdir)
    report = pipeline.evaluate(card, workdir)

    metrics = report["metrics"]
    assert set(metrics) == {"mean", "ridge", "mlp"}
    for m in metrics.values():
        assert {"mse", "mae", "rmse", "r2"} <= set(m)
        assert m["rmse"] == pytest.approx(m["mse"] ** 0.5)
    for name in ("ridge", "mlp"):
        assert (
            metrics[name]["rmse"] < metrics["mean"]["rmse"]
            or metrics[name]["mae"] < metrics["mean"]["mae"]
        ), name
    assert report["gate"]["config"]["metric"] == "rmse"
    assert (
        "| model | n | rmse | mae | mse | r2 |"
        in (workdir.reports / "evaluation" / "report.md").read_text()
    )
