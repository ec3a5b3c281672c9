"""Simple models and the preprocessor: scikit-learn contract, save/load without pickle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsd_ray.errors import NotFittedError
from mlsd_ray.features import TabularPreprocessor
from mlsd_ray.models.package import InputSchema, ModelManifest, load_package, save_package
from mlsd_ray.models.simple import MajorityClass, TabularLogReg, TfidfLogReg

TEXTS = pd.DataFrame(
    {"text": ["you are an idiot", "what a nice day", "idiot loser go away", "lovely weather"] * 15}
)
Y = np.array([1, 0, 1, 0] * 15)


def tabular(with_second_category: bool = False) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    n = 400
    x = rng.normal(size=n)
    cat = rng.choice(["a", "b", "c"], size=n)
    y = ((x + (cat == "a") * 1.5 + rng.normal(scale=0.5, size=n)) > 0.5).astype(int)
    frame = pd.DataFrame({"x": x, "cat": cat})
    if with_second_category:
        frame["cat2"] = pd.Series(rng.choice(["u", "v", None], size=n), dtype="string")
    return frame, y


def test_preprocessor_contract() -> None:
    X, _ = tabular()
    pre = TabularPreprocessor(["x"], ["cat"])
    with pytest.raises(NotFittedError):
        pre.transform(X)
    assert pre.fit(X) is pre
    Z = pre.transform(X)
    assert Z.shape == (len(X), 1 + 3 + 1)
    assert abs(Z[:, 0].mean()) < 1e-9 and abs(Z[:, 0].std() - 1) < 1e-9
    # An unseen category lands in the shared "other" column instead of failing.
    new = pre.transform(pd.DataFrame({"x": [0.0], "cat": ["zzz"]}))
    assert new[0, -1] == 1.0 and new[0, 1:4].sum() == 0
    # Missing numerics are imputed with the training mean (0 after scaling).
    assert pre.transform(pd.DataFrame({"x": [None], "cat": ["a"]}))[0, 0] == pytest.approx(0.0)
    round_trip = TabularPreprocessor.from_dict(pre.to_dict())
    np.testing.assert_allclose(round_trip.transform(X), Z)


@pytest.mark.parametrize(
    ("model", "X", "y"),
    [
        (
            TabularLogReg(
                ["x", "cat", "cat2"],
                numeric=["x"],
                categorical=["cat", "cat2"],
                encodings={"cat": "hashing", "cat2": "ordinal"},
                crosses=[["cat", "cat2"]],
                hash_buckets=8,
            ),
            *tabular(with_second_category=True),
        ),
    ],
    ids=["logreg_encodings"],  # every kind's plain round trip: test_model_kinds.py
)
def test_fit_predict_save_load(model, X: pd.DataFrame, y: np.ndarray, tmp_path: Path) -> None:
    with pytest.raises(NotFittedError):
        model.predict_proba(X)
    assert model.fit(X, y) is model
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    manifest = ModelManifest(
        name="m",
        kind=model.kind,
        category="binary",
        inputs=[InputSchema(name=c, type="text") for c in model.inputs],
        classes=["neg", "pos"],
        params=model.params,
    )
    save_package(model, tmp_path / "pkg", manifest)
    assert not list((tmp_path / "pkg").glob("*.pkl"))
    loaded, m2 = load_package(tmp_path / "pkg")
    assert m2.kind == model.kind
    np.testing.assert_allclose(loaded.predict_proba(X), proba)


def test_learning_models_separate_the_classes() -> None:
    from sklearn.metrics import roc_auc_score

    p = TfidfLogReg(["text"], min_df=1).fit(TEXTS, Y).predict_proba(TEXTS)[:, 1]
    assert roc_auc_score(Y, p) == 1.0
    X, y = tabular()
    p = TabularLogReg(["x", "cat"], numeric=["x"], categorical=["cat"]).fit(X, y).predict_proba(X)
    assert roc_auc_score(y, p[:, 1]) > 0.85
    prior = MajorityClass(["text"]).fit(TEXTS, np.array([0, 0, 0, 1] * 15)).predict_proba(TEXTS)
    np.testing.assert_allclose(prior[0], [0.75, 0.25])
