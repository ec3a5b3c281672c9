"""Kind mlp in process (no Ray): options, training, class weights, round trips, curves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsd_ray.errors import CardError, ModelError, NotFittedError
from mlsd_ray.models.mlp import MLPParams, TabularMLP
from mlsd_ray.models.package import ModelManifest, load_package, save_package
from mlsd_ray.train.curves import diagnose, write_curve

INPUTS = ["x1", "x2", "color"]


def frame(n: int, seed: int, positive_rate: float = 0.5) -> tuple[pd.DataFrame, np.ndarray]:
    """y depends on x1 * x2 (an interaction) and on the color."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n),
            "color": rng.choice(["red", "green", "blue"], size=n),
        }
    )
    score = X.x1 * X.x2 + (X.color == "red") + 0.3 * rng.normal(size=n)
    y = (score > np.quantile(score, 1 - positive_rate)).astype(np.int64).to_numpy()
    return X, y


def mlp(**params) -> TabularMLP:  # type: ignore[no-untyped-def]
    base = {"numeric": ["x1", "x2"], "categorical": ["color"], "num_workers": 0, "seed": 0}
    return TabularMLP(INPUTS, **{**base, **params})


def test_options_are_typed_and_errors_name_the_key() -> None:
    assert MLPParams().hidden == [64, 32]
    with pytest.raises(CardError, match=r"models\.m\.params\.dropout: got 1.5"):
        MLPParams.from_params({"dropout": 1.5}, where="models.m.params")
    with pytest.raises(CardError, match=r"models\.m\.params\.hiden: unknown option"):
        MLPParams.from_params({"hiden": [8]}, where="models.m.params")


def test_mlp_learns_an_interaction_and_stops_early() -> None:
    X, y = frame(1200, 0)
    Xv, yv = frame(400, 1)
    model = mlp(epochs=40, patience=3, learning_rate=0.01, cross_layers=2).fit(X, y, Xv, yv)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(yv, model.predict_proba(Xv)[:, 1]) > 0.85
    assert len(model.history_) < 40  # early stopping ended it
    best = min(model.history_, key=lambda r: r["val_loss"])
    assert model.history_[-1]["best_epoch"] == best["epoch"]
    assert model.predict(Xv[:5]).tolist() == model.predict_proba(Xv[:5]).argmax(1).tolist()


def test_class_weights_raise_the_minority_probability() -> None:
    X, y = frame(1500, 2, positive_rate=0.1)
    plain = mlp(epochs=5).fit(X, y)
    weighted = mlp(epochs=5, class_weight="balanced").fit(X, y)
    p_plain, p_weighted = plain.predict_proba(X)[:, 1], weighted.predict_proba(X)[:, 1]
    # Balanced weights make positives count 9x: predicted P(positive) and recall go up.
    assert p_weighted.mean() > 2 * p_plain.mean()
    assert ((p_weighted >= 0.5) & (y == 1)).sum() > ((p_plain >= 0.5) & (y == 1)).sum()


def test_focal_loss_trains_and_reaches_a_lower_loss_value_than_cross_entropy() -> None:
    X, y = frame(800, 3)
    ce = mlp(epochs=3).fit(X, y)
    focal = mlp(epochs=3, loss="focal", focal_gamma=2.0).fit(X, y)
    # The same data and seed: focal's per-row factor (1 - p_t)^2 < 1 shrinks the loss.
    assert focal.history_[0]["train_loss"] < 0.5 * ce.history_[0]["train_loss"]


@pytest.mark.parametrize("category", ["binary", "regression"])
def test_package_round_trip_gives_identical_predictions(category: str, tmp_path: Path) -> None:
    X, y = frame(300, 4)
    target = y if category == "binary" else X.x1.to_numpy() * 3 + 10
    model = mlp(epochs=2, category=category, cross_layers=1).fit(X, target)
    manifest = ModelManifest(
        name="m",
        kind="mlp",
        category=category,
        inputs=[{"name": c, "type": "float"} for c in INPUTS],
        classes=["a", "b"],
        params=model.params,
    )
    save_package(model, tmp_path / "m", manifest)
    loaded, _ = load_package(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "learning_curve.json").read_text()) == model.history_
    if category == "binary":
        np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    else:
        np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
        assert abs(model.predict(X).mean() - target.mean()) < 1.0  # the target scaling is undone
        with pytest.raises(ModelError, match="regression"):
            loaded.predict_proba(X)


def test_predict_before_fit_raises() -> None:
    with pytest.raises(NotFittedError):
        mlp().predict_proba(frame(5, 0)[0])


def test_diagnosis_of_typical_curves(tmp_path: Path) -> None:
    def hist(train: list[float], val: list[float]) -> list[dict]:
        return [
            {"epoch": i + 1, "train_loss": t, "val_loss": v}
            for i, (t, v) in enumerate(zip(train, val, strict=True))
        ]

    over = diagnose(hist([0.6, 0.4, 0.3, 0.2, 0.1], [0.6, 0.5, 0.5, 0.55, 0.62]), 0.69)
    assert over["verdict"] == "overfitting" and over["best_epoch"] == 2
    assert "rose" in over["detail"] and over["gap"] > 1
    flat = diagnose(hist([0.68, 0.68, 0.679], [0.69, 0.69, 0.69]), 0.69)
    assert flat["verdict"] == "underfitting"
    good = diagnose(hist([0.6, 0.4, 0.3, 0.28], [0.58, 0.41, 0.32, 0.31]), 0.69)
    assert good["verdict"] == "good_fit"
    assert diagnose(hist([0.5], [0.5]))["verdict"] == "insufficient"
    out = write_curve(hist([0.6, 0.4], [0.6, 0.45]), tmp_path, "m", 0.69)
    assert Path(out["png"]).stat().st_size > 1000
    assert json.loads(Path(out["json"]).read_text())["diagnosis"]["verdict"] == out["verdict"]
