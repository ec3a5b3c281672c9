"""Regression end to end without Ray: kinds, metrics, gate, card, package:// sources, Predictor."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mlsd_ray.errors import CardError, ModelError
from mlsd_ray.evaluate.gate import decide
from mlsd_ray.metrics import regression_metrics
from mlsd_ray.models.package import ModelManifest, save_package
from mlsd_ray.models.regression import MeanRegressor, TabularRidge
from mlsd_ray.package_uri import package_path
from mlsd_ray.predict import PREDICTION, Predictor
from mlsd_ray.spec import Gate, card_from_dict, load_card

REPO = Path(__file__).resolve().parents[2]
CARD = REPO / "systems" / "watch_time.yaml"


def test_regression_metrics_by_hand() -> None:
    m = regression_metrics(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 4.0, 2.0]))
    # errors 0, 0, 1, -2: MSE 5/4, MAE 3/4, R2 = 1 - 5 / 5 (sum of squares around 2.5 is 5).
    assert m["mse"] == pytest.approx(1.25) and m["mae"] == pytest.approx(0.75)
    assert m["rmse"] == pytest.approx(np.sqrt(1.25)) and m["r2"] == pytest.approx(0.0)
    assert m["n"] == 4 and regression_metrics(np.array([1.0]), np.array([2.0]))["r2"] is None


def test_mean_and_ridge_kinds() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=200), "c": rng.choice(["x", "y"], size=200)})
    y = 2 * X.a.to_numpy() + (X.c == "x") * 3 + 5
    mean = MeanRegressor(["a", "c"]).fit(X, y)
    assert mean.is_regressor and np.allclose(mean.predict(X[:3]), y.mean())
    ridge = TabularRidge(["a", "c"], numeric=["a"], categorical=["c"], alpha=0.01).fit(X, y)
    assert regression_metrics(y, ridge.predict(X))["rmse"] < 0.05
    with pytest.raises(ModelError, match="no class probabilities"):
        ridge.predict_proba(X)


def test_gate_for_lower_is_better_metrics() -> None:
    gate = Gate(metric="rmse", max_value=1.0, min_improvement=0.05)
    ok = decide(gate, {"rmse": 0.8}, {"rmse": 1.1}, {"rmse": 0.9})
    assert ok.passed, ok.reasons
    bad = decide(gate, {"rmse": 0.88}, {"rmse": 0.85}, {"rmse": 0.9})
    assert [r["rule"] for r in bad.rules if not r["passed"]] == ["beats_baseline", "beats_champion"]
    assert not decide(Gate(metric="mae", max_value=0.5), {"mae": 0.6}, None, None).passed


def test_predictor_answers_values_for_regression(tmp_path: Path) -> None:
    X = pd.DataFrame({"a": [1.0, 2.0, 3.0]})
    manifest = ModelManifest(
        name="mean",
        kind="mean",
        category="regression",
        inputs=[{"name": "a", "type": "float"}],
        classes=[],
    )
    save_package(MeanRegressor(["a"]).fit(X, np.array([1.0, 2.0, 6.0])), tmp_path / "m", manifest)
    predictor = Predictor(tmp_path / "m")
    assert predictor.predict([{"a": 7}, {"a": 0.5}]) == [3.0, 3.0]
    assert predictor(X)[PREDICTION].tolist() == [3.0, 3.0, 3.0]


def test_watch_time_card_reads_movielens_from_the_installed_package() -> None:
    card = load_card(CARD)
    uri = card.data.sources[0].uri
    assert uri.endswith("recbole/dataset_example/ml-100k/ml-100k.inter") and Path(uri).is_file()
    # Read in place from the installed package (which may live in the repo's .venv), not copied.
    installed = Path(importlib.util.find_spec("recbole").origin).parent  # type: ignore[union-attr]
    assert Path(uri).resolve().is_relative_to(installed.resolve())
    header = Path(uri).read_text().split("\n", 1)[0].split("\t")
    assert sorted(card.data.sources[0].rename) == sorted(header)  # the typed header is mapped
    assert card.framing.category == "regression" and card.evaluation.gate.metric == "rmse"
    assert card.models.baseline.kind == "mean"


def test_package_uri_errors_are_clear() -> None:
    with pytest.raises(CardError, match="not installed"):
        package_path("package://no_such_pkg_xyz/data.csv")
    with pytest.raises(CardError, match="does not exist in the installed 'recbole'"):
        package_path("package://recbole/nope.csv")
    with pytest.raises(CardError, match="leaves the package"):
        package_path("package://recbole/../../etc/passwd")
    with pytest.raises(CardError, match="not package://PACKAGE/PATH"):
        package_path("package://recbole")


def test_gate_metric_must_fit_the_category() -> None:
    raw = yaml.safe_load(CARD.read_text())
    raw["evaluation"]["gate"]["metric"] = "roc_auc"
    with pytest.raises(CardError, match="does not fit category 'regression'"):
        card_from_dict(raw, base_dir=CARD.parent)
    raw["evaluation"]["gate"]["metric"] = "rmse"
    raw["models"]["candidates"][1]["tuning"] = {"space": {"dropout": {"type": "uniform"}}}
    with pytest.raises(CardError, match="uniform needs low < high"):
        card_from_dict(raw, base_dir=CARD.parent)


def test_tuning_section_is_checked() -> None:
    from mlsd_ray.train.tune import search_space

    raw = yaml.safe_load(CARD.read_text())
    raw["models"]["baseline"]["tuning"] = {
        "space": {"alpha": {"type": "uniform", "low": 0, "high": 1}}
    }
    with pytest.raises(CardError, match=r"tuning is supported for kinds \[.*\], not 'mean'"):
        card_from_dict(raw, base_dir=CARD.parent)
    raw["models"]["baseline"].pop("tuning")
    raw["models"]["candidates"][1]["tuning"] = {
        "space": {"hidden": {"type": "choice", "values": [[8], [16]]}}
    }
    with pytest.raises(CardError, match="choice values must be numbers, strings or booleans"):
        card_from_dict(raw, base_dir=CARD.parent)
    raw["models"]["candidates"][1]["tuning"] = {
        "space": {"lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2}}
    }
    card = card_from_dict(raw, base_dir=CARD.parent)
    tuning = card.models.candidates[1].tuning
    assert tuning is not None
    with pytest.raises(CardError, match=r"models\.mlp\.tuning\.space\.lr: not an mlp option"):
        search_space(tuning.space, "models.mlp.tuning")
