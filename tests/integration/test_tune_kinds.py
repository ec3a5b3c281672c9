"""`tuning:` on the GBDTs and logreg (Ray Tune + Optuna + ASHA), on real Online Shoppers rows of
the event_registration card: GBDT trials report per chunk of boosting rounds so ASHA can stop
them, every trial is an MLflow child run, and the best configuration is retrained and packaged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlsd_ray import registry
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import load_card
from mlsd_ray.train.stage import train_models
from tests.integration.test_ladder_train import CARD, write_splits

pytestmark = pytest.mark.integration


@pytest.mark.slow  # 6 + 3 small trials on 1 CPU each: about 60 s on a quiet machine
def test_gbdt_and_logreg_tuning(ray_cluster, shared_datasets: Path, tmp_path: Path) -> None:
    gbdt_tuning = (
        "{num_samples: 6, max_t: 4, grace_period: 1, reduction_factor: 2, "
        "max_concurrent_trials: 2, seed: 1}"
    )
    card = load_card(
        CARD,
        overrides=[
            "models.candidates.0.tuning={num_samples: 2, max_t: 1}",
            "models.candidates.1.params={n_estimators: 80, early_stopping_rounds: 20}",
            "models.candidates.1.trainer={num_workers: 0}",
            f"models.candidates.1.tuning={gbdt_tuning}",
        ],
    )
    workdir = Workdir(tmp_path)
    write_splits(card, workdir, shared_datasets)

    summary = train_models(card, workdir, only=["logreg", "xgboost"])

    info = summary["models"]["xgboost"]["tuning"]
    assert info["metric"] == "val_roc_auc" and info["trials"] == 6
    trials = json.loads((workdir.reports / "tuning" / "xgboost" / "trials.json").read_text())
    for t in trials:  # one report per 20 rounds (80 rounds / max_t 4), ASHA may cut it short
        rounds = [h["epoch"] for h in t["history"]]
        assert rounds == [20, 40, 60, 80][: len(rounds)] and rounds, rounds
        assert set(t["config"]) == {
            "max_depth",
            "learning_rate",
            "subsample",
            "colsample",
            "min_child_weight",
        }
    assert info["stopped_early"] == sum(len(t["history"]) < 4 for t in trials) >= 1
    best = max(trials, key=lambda t: t["best"])
    assert best["is_best"] and best["config"] == info["best_config"]
    manifest = json.loads((workdir.model_dir("xgboost") / "mlsd_model.json").read_text())
    for key, value in info["best_config"].items():  # the package is the best configuration
        assert manifest["params"][key] == value
    assert manifest["metadata"]["tuning"]["parent_run_id"] == info["parent_run_id"]
    assert summary["models"]["xgboost"]["validation_roc_auc"] > 0.88
    children = registry.child_runs(card, workdir, info["parent_run_id"])
    assert len(children) == 6 and all("val_roc_auc" in c["metrics"] for c in children)

    lr = summary["models"]["logreg"]["tuning"]
    assert lr["trials"] == 2 and set(lr["best_config"]) == {"C"} and lr["stopped_early"] == 0
    lr_manifest = json.loads((workdir.model_dir("logreg") / "mlsd_model.json").read_text())
    assert lr_manifest["params"]["C"] == lr["best_config"]["C"]
