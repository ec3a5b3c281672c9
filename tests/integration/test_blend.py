"""Cross-family blends (kind ``blend``) through the training stage on real Online Shoppers rows:
a logistic regression and a GBDT, combined by stacking and by weighted averaging; the package
is loaded by the ordinary Predictor, and its validation figure is the cross-fitted one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mlsd_ray.evaluate.analysis import score_split
from mlsd_ray.models.blend import logit
from mlsd_ray.predict import Predictor
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import load_card
from mlsd_ray.train.stage import train_models
from tests.integration.test_ladder_train import CARD, write_splits

pytestmark = pytest.mark.integration

CANDIDATES = """[
  {name: logreg, kind: logreg},
  {name: xgboost, kind: xgboost, trainer: {num_workers: 0},
   params: {n_estimators: 60, max_depth: 3, learning_rate: 0.15, early_stopping_rounds: 10}},
  {name: stack, kind: blend, params: {members: [logreg, xgboost], folds: 3}},
  {name: avg, kind: blend, params: {members: [logreg, xgboost], method: weighted}}]"""


def test_blends_combine_packaged_members_out_of_fold(
    ray_cluster, shared_datasets: Path, tmp_path: Path
) -> None:
    card = load_card(CARD, overrides=[f"models.candidates={CANDIDATES}"])
    workdir = Workdir(tmp_path)
    splits = write_splits(card, workdir, shared_datasets)
    val = splits["validation"]
    summary = train_models(card, workdir)

    inputs = card.feature_names
    members = {n: Predictor(summary["models"][n]["dir"]) for n in ("logreg", "xgboost")}
    P = np.column_stack([members[n].predict_frame(val[inputs]) for n in ("logreg", "xgboost")])
    stack, avg = (Predictor(summary["models"][n]["dir"]) for n in ("stack", "avg"))
    # The ordinary Predictor serves the blend: the combiner over the members' calibrated scores.
    combiner = json.loads((Path(summary["models"]["stack"]["dir"]) / "blend.json").read_text())
    coef, b = np.asarray(combiner["combiner"]["coef"]), combiner["combiner"]["intercept"]
    expected = 1 / (1 + np.exp(-(logit(P) @ coef + b)))
    np.testing.assert_allclose(stack.predict_frame(val[inputs]), expected, atol=1e-9)
    weights = np.asarray(
        json.loads((Path(avg.model_dir) / "blend.json").read_text())["combiner"]["weights"]
    )
    assert weights.min() >= 0 and weights.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(avg.predict_frame(val[inputs]), P @ weights, atol=1e-9)

    # Its validation figure is cross-fitted (out of fold), not the in-sample combiner's, and the
    # evaluation stage chooses the threshold on those same scores.
    uri = workdir.split_uri(card, "validation")
    for name, predictor in (("stack", stack), ("avg", avg)):
        y, oof = score_split(Path(predictor.model_dir), uri)
        recorded = summary["models"][name]["validation_roc_auc"]
        assert roc_auc_score(y, oof) == pytest.approx(recorded)
        assert recorded > 0.85
        in_sample = roc_auc_score(val["label"], predictor.predict_frame(val[inputs]))
        assert in_sample != pytest.approx(recorded, abs=1e-9)
    assert not [p for p in Path(stack.model_dir).rglob("*") if p.suffix in (".pkl", ".joblib")]
