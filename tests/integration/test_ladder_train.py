"""The tabular ladder through the training stage on the shared local Ray: GBDTs via Ray Train
(XGBoostTrainer / LightGBMTrainer), ensembles via Ray tasks, on real Online Shoppers rows of
the event_registration card, ranked on one validation split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsd_ray.evaluate.stage import validation_leaderboard
from mlsd_ray.models.base import load_model_class
from mlsd_ray.predict import Predictor
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard, load_card
from mlsd_ray.train.stage import train_models
from mlsd_ray.train.trainers import kind_params

pytestmark = pytest.mark.integration

CARD = Path(__file__).resolve().parents[2] / "systems" / "event_registration.yaml"
SMALL = "{n_estimators: 40, max_depth: 3, learning_rate: 0.15}"


def card(*overrides: str) -> DesignCard:
    return load_card(CARD, overrides=list(overrides))


def write_splits(card: DesignCard, workdir: Workdir, shared: Path) -> dict[str, pd.DataFrame]:
    """Real rows as ETL writes them: typed inputs and an int64 ``label`` (seeded split)."""
    raw = pd.read_csv(shared / "ad_click" / "online_shoppers_dev.csv")
    frame = pd.DataFrame()
    for field in card.framing.inputs:
        col = raw[field.name]
        frame[field.name] = col.astype("float64") if field.type == "float" else col.astype(str)
    frame["label"] = raw["Revenue"].astype(str).str.lower().isin(["1", "true"]).astype("int64")
    rows = np.random.default_rng(0).permutation(len(frame))
    splits = {
        "train": frame.iloc[rows[:2000]].reset_index(drop=True),
        "validation": frame.iloc[rows[2000:2800]].reset_index(drop=True),
    }
    for name, part in splits.items():
        folder = Path(workdir.split_uri(card, name))
        folder.mkdir(parents=True)
        part.to_parquet(folder / "part-00000.parquet", index=False)
    return splits


@pytest.mark.slow  # two Ray Train runs: 12-17 s start-up each on a quiet machine, 90 s loaded
def test_gbdts_train_through_ray_train(ray_cluster, shared_datasets: Path, tmp_path: Path) -> None:
    c = card(
        f"models.candidates.1.params={SMALL}",
        f"models.candidates.2.params={SMALL}",
        "models.refit=false",  # the package is the Ray Train fit itself, compared below
    )
    workdir = Workdir(tmp_path)
    splits = write_splits(c, workdir, shared_datasets)
    val = splits["validation"]

    summary = train_models(c, workdir, only=["majority", "xgboost", "lightgbm"])

    for name in ("xgboost", "lightgbm"):
        entry = summary["models"][name]
        assert entry["validation_roc_auc"] > 0.85, name
        predictor = Predictor(entry["dir"])
        assert predictor.manifest.kind == name
        assert predictor.manifest.metadata["best_iteration"] >= 1
        # Ray Train boosts exactly what an in-process fit boosts: same data, same params.
        spec = next(s for s in c.models.candidates if s.name == name)
        local = load_model_class(name)(c.feature_names, **kind_params(spec, c))
        local.fit(
            splits["train"][c.feature_names],
            splits["train"]["label"].to_numpy(),
            val[c.feature_names],
            val["label"].to_numpy(),
        )
        np.testing.assert_allclose(
            predictor.model.predict_proba(val[c.feature_names]),
            local.predict_proba(val[c.feature_names]),
            atol=1e-6,
        )
    board = validation_leaderboard(c, workdir, ["majority", "xgboost", "lightgbm"])
    assert list(board)[-1] == "majority"


def test_ensembles_fan_out_as_ray_tasks(ray_cluster, shared_datasets: Path, tmp_path: Path) -> None:
    c = card(
        "models.candidates.3.params.n_estimators=3",
        f"models.candidates.3.params.base={{kind: xgboost, params: {SMALL}}}",
        "models.candidates.4.params.folds=2",
        f"models.candidates.4.params.base=[{{kind: logreg}}, {{kind: lightgbm, params: {SMALL}}}]",
    )
    workdir = Workdir(tmp_path)
    splits = write_splits(c, workdir, shared_datasets)

    summary = train_models(c, workdir, only=["majority", "bagging", "stacking"])

    for name in ("bagging", "stacking"):
        entry = summary["models"][name]
        assert entry["validation_roc_auc"] > 0.85, name
        predictor = Predictor(entry["dir"])
        members = sorted((Path(entry["dir"]) / "members").iterdir())
        assert len(members) == (3 if name == "bagging" else 2)
        rows = splits["validation"].head(5).drop(columns=["label"]).to_dict("records")
        scores = predictor.predict(rows)
        assert len(scores) == 5 and all(0.0 <= s <= 1.0 for s in scores)
    board = validation_leaderboard(c, workdir, ["majority", "bagging", "stacking"])
    assert set(board) == {"majority", "bagging", "stacking"} and list(board)[-1] == "majority"
