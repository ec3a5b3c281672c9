"""The contract every model kind keeps, parametrised over the table of kinds: fit, the shape of
its answers, a save/load round trip with identical predictions, the package files it declares,
and no pickle anywhere. A new kind is tested here once it has an entry in `FAST`."""

from __future__ import annotations

import pickle
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from mlsd_ray.models.kinds import KINDS, check_params
from mlsd_ray.models.package import InputSchema, ModelManifest, load_package, save_package

#: Small, fast params per kind (the card params a test card would hold).
FAST: dict[str, dict[str, Any]] = {
    "majority": {},
    "tfidf_logreg": {"min_df": 1},
    "logreg": {"C": 1.0},
    "transformer": {"dropout": 0.1},
    "mlp": {"hidden": [8], "epochs": 2, "num_workers": 0, "batch_size": 32},
    "cnn": {"channels": [4], "epochs": 2, "num_workers": 0, "batch_size": 32},
    "mean": {},
    "ridge": {"alpha": 1.0},
    "xgboost": {"n_estimators": 8, "max_depth": 2},
    "lightgbm": {"n_estimators": 8, "max_depth": 2},
    "bagging": {"n_estimators": 2, "base": {"kind": "logreg"}},
    "stacking": {"folds": 2, "base": [{"kind": "logreg"}, {"kind": "majority"}]},
    "blend": {"members": ["lr", "xgb"], "folds": 2},
}
#: What the trainer fills from the card (mlsd_ray.train.trainers.kind_params).
TABULAR = {"numeric": ["x"], "categorical": ["cat"]}
TRANSFORMER = {"pretrained": "tiny", "max_length": 16, "epochs": 1, "batch_size": 16}
TRANSFORMER |= {"learning_rate": 1e-3, "n_classes": 2, "seed": 0, "text_input": "text"}
PICKLED = (".pkl", ".pickle", ".joblib", ".pt", ".bin")
WORDS = ["hate you", "awful idiot", "nice day", "thanks friend"]


def cases() -> list[tuple[str, str]]:
    out = []
    for name, kind in KINDS.items():
        task = "binary" if "binary" in kind.tasks else "regression"
        out.append((name, task))
        if "regression" in kind.tasks and task != "regression":
            out.append((name, "regression"))
        # Three classes catch what two hide (a multiclass coef_ is Fortran-ordered and was
        # saved transposed); the transformer's head is the same code for any k (slow: once).
        if "multiclass" in kind.tasks and name != "transformer":
            out.append((name, "multiclass"))
    return out


def data(kind: str, task: str) -> tuple[pd.DataFrame, np.ndarray, list[InputSchema]]:
    rng = np.random.default_rng(0)
    n = 40 if kind == "transformer" else 120
    y = rng.integers(0, 3 if task == "multiclass" else 2, n)
    if KINDS[kind].inputs == "image":  # 8x8 grey PNGs, base64, brighter for class 1
        from mlsd_ray.images import encode_png

        images = [encode_png((rng.random((8, 8)) * 100 + 120 * c).astype(np.uint8)) for c in y]
        return pd.DataFrame({"img": images}), y, [InputSchema(name="img", type="image")]
    if KINDS[kind].inputs == "text":
        texts = [f"{WORDS[2 * min(c, 1) + rng.integers(2)]} w{c} {rng.integers(50)}" for c in y]
        return pd.DataFrame({"text": texts}), y, [InputSchema(name="text", type="text")]
    x = y + rng.normal(0, 0.7, n)
    cat = np.where(rng.random(n) < 0.7, np.array(["a", "b", "d"])[y], "c")
    frame = pd.DataFrame({"x": x, "cat": cat})
    target = x * 3.0 + 1.0 if task == "regression" else y
    schema = [InputSchema(name="x", type="float"), InputSchema(name="cat", type="category")]
    return frame, target, schema


def build(kind: str, task: str, inputs: list[str]) -> Any:
    params = dict(FAST[kind])
    if KINDS[kind].inputs == "tabular":
        params |= TABULAR
    if kind == "tfidf_logreg":
        params["text_input"] = "text"
    if kind == "transformer":
        params |= TRANSFORMER
    if KINDS[kind].tasks == frozenset({"binary", "multiclass", "regression"}):
        params["category"] = task
    if kind == "cnn":  # as mlsd_ray.train.cnn.cnn_params fills it
        params |= {"category": task, "n_classes": 3 if task == "multiclass" else 2}
    if kind == "mlp":  # as mlsd_ray.train.deep.deep_params fills it
        params["n_classes"] = {"binary": 2, "multiclass": 3, "regression": 1}[task]
    if kind == "blend":  # as the training stage attaches them: other candidates' packages
        return KINDS[kind].model_class()(inputs, **params).with_members(blend_members(inputs))
    if task == "regression" and "base" in params:  # members that regress
        small = {"kind": "xgboost", "params": {"n_estimators": 4, "max_depth": 2}}
        params["base"] = small if kind == "bagging" else [small, small]
    return KINDS[kind].model_class()(inputs, **params)


def blend_members(inputs: list[str]) -> dict[str, Path]:
    """Two member packages of different families (logreg, xgboost) fitted on the binary data."""
    X, y, schema = data("logreg", "binary")
    folder = Path(tempfile.mkdtemp(prefix="blend-members-"))
    out = {}
    for name, kind in (("lr", "logreg"), ("xgb", "xgboost")):
        model = build(kind, "binary", inputs).fit(X, y)
        manifest = ModelManifest(
            name=name,
            kind=kind,
            category="binary",
            inputs=schema,
            classes=["neg", "pos"],
            params=model.params,
        )
        out[name] = save_package(model, folder / name, manifest)
    return out


def answers(model: Any, task: str, X: pd.DataFrame) -> np.ndarray:
    return model.predict(X) if task == "regression" else model.predict_proba(X)


def test_every_kind_is_in_the_contract_and_its_card_params_validate() -> None:
    assert set(FAST) == set(KINDS)
    for kind, params in FAST.items():
        check_params(kind, params)
    with pytest.raises(ValueError, match="kind 'logreg' has no param 'c'"):
        check_params("logreg", {"c": 4})


@pytest.mark.parametrize(("kind", "task"), cases(), ids=lambda v: str(v))
def test_kind_contract(
    kind: str, task: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y, schema = data(kind, task)
    model = build(kind, task, list(X.columns))
    assert model.kind == kind
    assert model.fit(X, y) is model
    got = answers(model, task, X)
    if task == "regression":
        assert got.shape == (len(X),) and np.isfinite(got).all()
    else:
        assert got.shape == (len(X), 3 if task == "multiclass" else 2)
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)

    manifest = ModelManifest(
        name=kind,
        kind=kind,
        category=task,
        inputs=schema,
        classes=["a", "b", "c"] if task == "multiclass" else ["neg", "pos"],
        params=model.params,
    )
    folder = save_package(model, tmp_path / kind, manifest)
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert not [p.name for p in files if p.name.endswith(PICKLED)]
    for declared in KINDS[kind].package_format.split(", "):
        name = declared.split(" ")[0]
        if "." in name and "/" not in name:  # a file, not a folder or a family of files
            assert (folder / name).is_file(), (kind, name)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("loading a model package must not unpickle")

    for name in ("load", "loads"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    loaded, read = load_package(folder)
    assert type(loaded) is type(model) and read.kind == kind
    np.testing.assert_array_equal(answers(loaded, task, X), got)

    if KINDS[kind].refit:  # models.refit: the same configuration fits again on more rows
        fixed, info = model.refit_params(model.params)
        again = type(model)(list(X.columns), **fixed)
        assert again.fit(X, y) is again
        assert answers(again, task, X).shape == got.shape
        if KINDS[kind].tune_by == "rounds":  # no validation rows left: rounds fixed
            assert info["rounds"] == model.best_iteration_ == fixed["n_estimators"]
