"""The predictor validates raw instances before the model sees them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsd_ray.models.package import InputSchema, ModelManifest, save_package
from mlsd_ray.models.simple import TabularLogReg, TfidfLogReg
from mlsd_ray.predict import InvalidInput, Predictor


@pytest.fixture(scope="module")
def text_predictor(tmp_path_factory) -> Predictor:
    X = pd.DataFrame({"text": ["you idiot", "nice day", "idiot loser", "lovely weather"] * 10})
    y = np.array([1, 0, 1, 0] * 10)
    d = tmp_path_factory.mktemp("m") / "pkg"
    save_package(
        TfidfLogReg(["text"], min_df=1).fit(X, y),
        d,
        ModelManifest(
            name="t",
            kind="tfidf_logreg",
            category="binary",
            inputs=[InputSchema(name="text", type="text")],
            classes=["ok", "harmful"],
            params={"min_df": 1},
        ),
    )
    return Predictor(d, version="7")


@pytest.fixture(scope="module")
def tabular_predictor(tmp_path_factory) -> Predictor:
    X = pd.DataFrame({"n": [1.0, 2.0, 3.0, 4.0] * 10, "c": ["a", "b"] * 20})
    y = np.array([0, 0, 1, 1] * 10)
    d: Path = tmp_path_factory.mktemp("t") / "pkg"
    save_package(
        TabularLogReg(["n", "c"], numeric=["n"], categorical=["c"]).fit(X, y),
        d,
        ModelManifest(
            name="tab",
            kind="logreg",
            category="binary",
            inputs=[InputSchema(name="n", type="float"), InputSchema(name="c", type="category")],
            classes=["no", "yes"],
            params={"numeric": ["n"], "categorical": ["c"]},
        ),
    )
    return Predictor(d)


def test_text_instances_as_strings_or_objects(text_predictor: Predictor) -> None:
    a = text_predictor.predict(["you idiot", {"text": "nice day"}])
    assert len(a) == 2 and a[0] > 0.5 > a[1]
    assert text_predictor.version == "7"


def test_batch_call_adds_probability(text_predictor: Predictor) -> None:
    out = text_predictor(pd.DataFrame({"text": ["you idiot", "nice day"], "label": [1, 0]}))
    assert list(out.columns) == ["text", "label", "probability"]
    assert out["probability"].tolist() == text_predictor.predict(["you idiot", "nice day"])


@pytest.mark.parametrize(
    ("instances", "message"),
    [
        ("just a string", "'instances' must be a list"),
        ([5], "expected an object"),
        ([{"txt": "x"}], "unknown field"),
        ([{"text": None}], "required field is missing"),
        ([{"text": ["a"]}], "expected a string"),
    ],
)
def test_text_validation(text_predictor: Predictor, instances, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        text_predictor.to_frame(instances)


@pytest.mark.parametrize(
    ("instance", "message"),
    [
        ({"n": "three", "c": "a"}, "expected a number"),
        ({"n": True, "c": "a"}, "expected a number"),
        ({"n": float("nan"), "c": "a"}, "finite"),
        ({"c": "a"}, "required field is missing"),
    ],
)
def test_tabular_validation(tabular_predictor: Predictor, instance, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        tabular_predictor.to_frame([instance])


def test_tabular_prediction_and_unseen_category(tabular_predictor: Predictor) -> None:
    p = tabular_predictor.predict([{"n": 4, "c": "a"}, {"n": 1.0, "c": "never-seen"}])
    assert p[0] > p[1]
