"""Missing values end to end on real Online Shoppers rows with blanks injected: optional inputs
(``required: false``) keep their rows and are imputed inside the model (median + indicator for
logreg, NaN for xgboost), the same in training, evaluation's batch scoring, batch prediction
and a serving request that omits them; a required input's blanks still quarantine, and the
data report says how many and suggests ``required: false``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsd_ray import pipeline
from mlsd_ray.batch_predict import predict_dataset
from mlsd_ray.evaluate.stage import batch_predict
from mlsd_ray.metrics import classification_metrics
from mlsd_ray.predict import InvalidInput, Predictor
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import load_card

pytestmark = pytest.mark.integration

CARD = Path(__file__).resolve().parents[2] / "systems" / "event_registration.yaml"
OPTIONAL = {"PageValues": 0.12, "Month": 0.08}  # column -> share of blanks injected
REQUIRED_BLANKS = ("BounceRates", 0.03)


def blanked_csv(shared: Path, out: Path) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    raw = pd.read_csv(shared / "ad_click" / "online_shoppers_dev.csv").iloc[:4000]
    rng = np.random.default_rng(7)
    blanks = {}
    for column, share in [*OPTIONAL.items(), REQUIRED_BLANKS]:
        rows = rng.random(len(raw)) < share
        raw[column] = raw[column].astype(object).where(~rows, "")
        blanks[column] = rows
    raw.to_csv(out, index=False)
    return raw, blanks


@pytest.mark.slow  # ETL + three small models in the driver: about 40 s on a quiet machine
def test_optional_inputs_are_imputed_everywhere(
    ray_cluster, shared_datasets: Path, tmp_path: Path
) -> None:
    raw, blanks = blanked_csv(shared_datasets, tmp_path / "shoppers_blank.csv")
    index = {f.name: i for i, f in enumerate(load_card(CARD).framing.inputs)}
    card = load_card(
        CARD,
        overrides=[
            f"data.sources.0.uri={tmp_path / 'shoppers_blank.csv'}",
            *[f"framing.inputs.{index[c]}.required=false" for c in OPTIONAL],
            "models.candidates.1.params={n_estimators: 60, max_depth: 3}",
            "models.candidates.1.trainer={num_workers: 0}",
        ],
    )
    workdir = Workdir(tmp_path / "work")

    etl = pipeline.etl(card, workdir)
    # Only the required column's blanks quarantine; the optional ones keep their rows.
    assert etl["rows_quarantined"] == int(blanks["BounceRates"].sum())
    missing = etl["missing_by_column"]
    assert missing["BounceRates"]["action"] == "quarantined"
    assert "required: false" in missing["BounceRates"]["suggestion"]
    assert missing["PageValues"]["action"] == "imputed by the model"
    kept = ~blanks["BounceRates"]
    assert missing["PageValues"]["missing_rows"] == int((blanks["PageValues"] & kept).sum())
    assert missing["PageValues"]["suggestion"] == ""
    report = Path(etl["report"]).read_text()
    assert "## Missing values" in report and "`BounceRates` `required: false`" in report

    summary = pipeline.train(card, workdir, only=["majority", "logreg", "xgboost"])
    logreg = Predictor(summary["models"]["logreg"]["dir"])
    assert "PageValues#missing" in logreg.model.pre_.feature_names_
    pre = json.loads((Path(logreg.model_dir) / "preprocessor.json").read_text())
    assert set(pre["imputed_"]) == {"PageValues"}  # median-filled, with an indicator
    xgb = Predictor(summary["models"]["xgboost"]["dir"])
    assert xgb.model.pre_.keep_nan and not xgb.model.pre_.imputed_
    for name in ("logreg", "xgboost"):
        assert summary["models"][name]["validation_roc_auc"] > 0.8, name
        # The card calibrates on validation (auto: by out-of-fold log loss); the package ships it.
        report = summary["models"][name]["calibration"]
        assert report["chosen"] in ("none", "platt", "isotonic")
        shipped = (Path(summary["models"][name]["dir"]) / "calibration.json").is_file()
        assert shipped == (report["chosen"] != "none")
        assert report["ece_after"] <= report["ece_before"] + 1e-9
    assert "calibration" not in summary["models"]["majority"]

    # Evaluation's scoring path (Ray Data + Predictor) on the test split, blanks included.
    test_uri = workdir.split_uri(card, "test")
    test = pd.read_parquet(test_uri)
    assert test["PageValues"].isna().any() and test["Month"].isna().any()
    for predictor in (logreg, xgb):
        y, p = batch_predict(predictor.model_dir, test_uri)
        assert np.isfinite(p).all() and len(p) == len(test)
        assert classification_metrics(y, p, 0.5)["roc_auc"] > 0.8

    # Serving: a request may omit an optional field, not a required one.
    row = raw[kept & ~blanks["PageValues"] & ~blanks["Month"]].iloc[0]
    # As a JSON body carries it: numbers as floats, categories as strings.
    instance = {
        f.name: float(row[f.name]) if f.type == "float" else str(row[f.name])
        for f in card.framing.inputs
    }
    full = xgb.predict([instance])[0]
    partial = {k: v for k, v in instance.items() if k not in OPTIONAL}
    for predictor in (logreg, xgb):
        (p_partial,) = predictor.predict([partial])
        assert 0.0 <= p_partial <= 1.0
        with pytest.raises(InvalidInput, match="BounceRates"):
            predictor.predict([{k: v for k, v in instance.items() if k != "BounceRates"}])
    assert 0.0 <= full <= 1.0
    # Omitting PageValues (the strongest signal) moves the answer: it is imputed, not ignored.
    # (raw scores: the calibration map may flatten both to the same value)
    raw = [xgb.model.predict_proba(xgb.to_frame([i]))[0, 1] for i in (instance, partial)]
    assert raw[1] != pytest.approx(raw[0])

    # Batch prediction on a file without the optional columns at all.
    no_optional = tmp_path / "no_optional.parquet"
    test.drop(columns=[*OPTIONAL, "label"]).head(200).to_parquet(no_optional, index=False)
    out = predict_dataset(
        card, workdir, str(no_optional), str(tmp_path / "scored"), model_dir=logreg.model_dir
    )
    scored = pd.read_parquet(out["output"])
    assert len(scored) == 200 and np.isfinite(scored["probability"].to_numpy()).all()
