"""Refit on train + validation (``models.refit``, on by default) on real Online Shoppers rows:
the package is the configuration refitted on all labelled rows with the selection run's number
of rounds, while validation metrics, calibration and the threshold's validation scores stay
those of the selection run (out of sample)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsd_ray.evaluate.analysis import score_split
from mlsd_ray.metrics import classification_metrics
from mlsd_ray.models.base import load_model_class
from mlsd_ray.predict import Predictor
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import load_card
from mlsd_ray.train.stage import train_models
from tests.integration.test_ladder_train import CARD, write_splits

pytestmark = pytest.mark.integration


@pytest.mark.slow  # two small in-process fits, twice: about 20 s on a quiet machine
def test_refit_packages_the_model_fitted_on_train_and_validation(
    ray_cluster, shared_datasets: Path, tmp_path: Path
) -> None:
    card = load_card(
        CARD,
        overrides=[
            "models.candidates.1.params={n_estimators: 200, max_depth: 3,"
            " early_stopping_rounds: 10}",
            "models.candidates.1.trainer={num_workers: 0}",
        ],
    )
    workdir = Workdir(tmp_path)
    splits = write_splits(card, workdir, shared_datasets)
    both = pd.concat([splits["train"], splits["validation"]], ignore_index=True)
    summary = train_models(card, workdir, only=["logreg", "xgboost"])

    inputs = card.feature_names
    xgb = summary["models"]["xgboost"]
    manifest = json.loads((Path(xgb["dir"]) / "mlsd_model.json").read_text())
    rounds = manifest["metadata"]["refit"]["rounds"]
    assert manifest["metadata"]["refit"]["rows"] == len(both) == 2800
    assert 1 <= rounds < 200 and manifest["params"]["n_estimators"] == rounds
    # The package is exactly the fixed-rounds fit on all labelled rows.
    local = load_model_class("xgboost")(inputs, **manifest["params"])
    local.fit(both[inputs], both["label"].to_numpy())
    predictor = Predictor(xgb["dir"])
    np.testing.assert_allclose(
        predictor.model.predict_proba(both[inputs]), local.predict_proba(both[inputs]), atol=1e-6
    )
    # The threshold is chosen on the selection run's validation scores, not in-sample ones.
    val_uri = workdir.split_uri(card, "validation")
    for name in ("logreg", "xgboost"):
        y, p = score_split(Path(summary["models"][name]["dir"]), val_uri)
        recorded = summary["models"][name]["validation"]["roc_auc"]
        assert classification_metrics(y, p)["roc_auc"] == pytest.approx(recorded)
    in_sample = predictor.predict_frame(splits["validation"][inputs])
    y_val = splits["validation"]["label"].to_numpy()
    assert classification_metrics(y_val, in_sample)["roc_auc"] > recorded
