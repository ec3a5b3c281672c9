"""TabularPreprocessor encodings (onehot, ordinal, hashing), feature crosses, missing values,
JSON round trips, and the offline/online identity of features through a model package."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mlsd_ray.errors import ModelError, NotFittedError
from mlsd_ray.features import (
    CROSS_SEP,
    MISSING,
    OTHER,
    SMALL_BATCH,
    TabularPreprocessor,
    stable_bucket,
)
from mlsd_ray.models.package import InputSchema, ModelManifest, save_package
from mlsd_ray.models.simple import TabularLogReg
from mlsd_ray.predict import Predictor

REPO = Path(__file__).resolve().parents[2]
CARD = REPO / "systems" / "event_registration.yaml"


def md5_bucket(value: str, buckets: int) -> int:
    """The documented hash, written out independently of the code under test."""
    return int.from_bytes(hashlib.md5(value.encode("utf-8")).digest()[:8], "little") % buckets


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            "color": ["red", "red", "red", "blue", "blue", "green"],
            "size": ["S", "M", "S", "L", None, "M"],
            "flag": ["True", "False", "True", "True", "False", ""],
        }
    )


def test_transform_before_fit_raises() -> None:
    pre = TabularPreprocessor(["x"], ["color"], encodings={"color": "hashing"})
    with pytest.raises(NotFittedError):
        pre.transform(frame())
    with pytest.raises(NotFittedError):
        _ = pre.feature_names_
    with pytest.raises(NotFittedError):
        pre.to_dict()


def test_onehot_default_and_missing_category() -> None:
    pre = TabularPreprocessor([], ["size"])
    assert pre.fit(frame()) is pre
    # Frequency ranked, ties broken by value; None became its own __missing__ category.
    assert pre.categories_["size"] == ["M", "S", "L", MISSING]
    assert pre.feature_names_ == [f"size={v}" for v in ["M", "S", "L", MISSING, OTHER]]
    Z = pre.transform(pd.DataFrame({"size": ["S", None, "", "XXL"]}))
    assert Z.shape == (4, 5)
    np.testing.assert_array_equal(Z.sum(axis=1), 1.0)
    assert Z[0, 1] == 1.0  # S
    assert Z[1, 3] == 1.0 and Z[2, 3] == 1.0  # null and "" are both missing
    assert Z[3, 4] == 1.0  # unseen -> __other__


def test_ordinal_is_frequency_rank_scaled_to_unit_interval() -> None:
    pre = TabularPreprocessor([], ["color"], encodings={"color": "ordinal"}).fit(frame())
    assert pre.categories_["color"] == ["red", "blue", "green"]
    assert pre.feature_names_ == ["color#rank"]
    Z = pre.transform(pd.DataFrame({"color": ["red", "blue", "green", "purple", None]}))
    assert Z.shape == (5, 1)
    # Codes 0, 1, 2 for the known values, 3 (its own code) for unseen and missing-unseen.
    np.testing.assert_array_equal(Z[:, 0], [0.0, 1 / 3, 2 / 3, 1.0, 1.0])
    assert Z.min() >= 0.0 and Z.max() <= 1.0


def test_hashing_uses_the_stable_bucket() -> None:
    pre = TabularPreprocessor([], ["color"], encodings={"color": "hashing"}, hash_buckets=8)
    pre.fit(frame())
    assert "color" not in pre.categories_  # hashing learns nothing
    assert pre.feature_names_ == [f"color#hash{i}" for i in range(8)]
    values = ["red", "never-seen", None]
    Z = pre.transform(pd.DataFrame({"color": values}))
    assert Z.shape == (3, 8)
    np.testing.assert_array_equal(Z.sum(axis=1), 1.0)
    for row, value in enumerate(["red", "never-seen", MISSING]):
        assert Z[row].argmax() == md5_bucket(value, 8)


def test_stable_bucket_is_the_same_in_another_process() -> None:
    expected = md5_bucket("Returning_Visitor", 32)
    assert stable_bucket("Returning_Visitor", 32) == expected
    code = (
        "from mlsd_ray.features import stable_bucket; print(stable_bucket('Returning_Visitor', 32))"
    )
    for seed in ("1", "12345"):  # Python's own hash() would differ between these
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert int(out.stdout.strip()) == expected


def test_crosses_hash_the_joined_values() -> None:
    pre = TabularPreprocessor(
        ["x"], ["color", "size", "flag"], crosses=[["color", "flag"]], hash_buckets=16
    ).fit(frame())
    names = pre.feature_names_
    assert names[-16:] == [f"color&flag#hash{i}" for i in range(16)]
    Z = pre.transform(frame())
    assert Z.shape == (6, len(names)) == (6, 1 + 3 + 1 + 4 + 1 + 3 + 1 + 16)
    cross = Z[:, -16:]
    np.testing.assert_array_equal(cross.sum(axis=1), 1.0)
    # Unseen and missing values still hash; "" counts as missing.
    for row, (color, flag) in enumerate(zip(frame()["color"], frame()["flag"], strict=True)):
        joined = f"{color}{CROSS_SEP}{flag or MISSING}"
        assert cross[row].argmax() == md5_bucket(joined, 16)
    new = pre.transform(
        pd.DataFrame({"x": [0.0], "color": ["teal"], "size": [None], "flag": [None]})
    )
    assert new[0, -16:].argmax() == md5_bucket(f"teal{CROSS_SEP}{MISSING}", 16)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"encodings": {"color": "target"}}, "Unknown encoding"),
        ({"encodings": {"x": "ordinal"}}, "not a categorical column"),
        ({"crosses": [["color"]]}, "two or more"),
        ({"crosses": [["color", "x"]]}, "non-categorical"),
        ({"hash_buckets": 0}, "hash_buckets"),
    ],
)
def test_bad_configuration_is_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        TabularPreprocessor(["x"], ["color", "size"], **kwargs).fit(frame())


def test_mixed_json_round_trip_gives_identical_transforms() -> None:
    pre = TabularPreprocessor(
        ["x"],
        ["color", "size", "flag"],
        encodings={"color": "ordinal", "size": "hashing"},
        crosses=[["color", "size", "flag"]],
        hash_buckets=4,
    ).fit(frame())
    Z = pre.transform(frame())
    assert Z.shape == (6, len(pre.feature_names_))
    d = json.loads(json.dumps(pre.to_dict()))  # plain JSON all the way
    back = TabularPreprocessor.from_dict(d)
    assert back.feature_names_ == pre.feature_names_
    np.testing.assert_array_equal(back.transform(frame()), Z)


def test_dict_without_new_keys_still_loads() -> None:
    """A preprocessor.json written before encodings existed: one-hot everything, missing as ""."""
    legacy = {
        "numeric": ["x"],
        "categorical": ["size"],
        "max_categories": 50,
        "mean_": {"x": 2.0},
        "scale_": {"x": 2.0},
        "categories_": {"size": ["S", "", "M"]},
    }
    pre = TabularPreprocessor.from_dict(legacy)
    assert pre.feature_names_ == ["x", "size=S", "size=", "size=M", f"size={OTHER}"]
    Z = pre.transform(pd.DataFrame({"x": [4.0, None], "size": [None, "XL"]}))
    np.testing.assert_array_equal(Z, [[1.0, 0, 1, 0, 0], [0.0, 0, 0, 0, 1]])
    assert pre.to_dict()["encodings"] == {} and pre.to_dict()["crosses"] == []


# -- offline / online identity ---------------------------------------------------------------


def test_offline_and_online_features_are_identical(shared_datasets: Path, tmp_path: Path) -> None:
    """Rows typed as the ETL types them (training) and the same rows sent as JSON through the
    Predictor (serving) must give the very same features and probabilities."""
    csv = shared_datasets / "ad_click" / "online_shoppers_dev.csv"
    if not csv.is_file():
        pytest.skip(f"{csv} not found in the shared data sets")
    card = yaml.safe_load(CARD.read_text())
    inputs = card["framing"]["inputs"]
    names = [f["name"] for f in inputs]
    numeric = [f["name"] for f in inputs if f["type"] == "float"]
    categorical = [f["name"] for f in inputs if f["type"] == "category"]
    mapping = card["framing"]["label"]["mapping"]

    # Offline: every cell read as text, then cast the way the ETL casts (float() of the
    # stripped cell for float inputs, the stripped string for category inputs).
    text = pd.read_csv(csv, nrows=200, dtype=str, keep_default_na=False)
    offline = pd.DataFrame(
        {
            f["name"]: (
                text[f["name"]].map(lambda s: float(s.strip())).astype("float64")
                if f["type"] == "float"
                else text[f["name"]].str.strip().astype("string")
            )
            for f in inputs
        }
    )
    y = text["Revenue"].map(lambda v: mapping[v.strip()]).to_numpy()
    assert len(np.unique(y)) == 2

    params = {
        "numeric": numeric,
        "categorical": categorical,
        "encodings": {"Browser": "hashing", "Month": "ordinal", "Region": "ordinal"},
        "crosses": [["VisitorType", "Weekend"]],
        "hash_buckets": 16,
    }
    model = TabularLogReg(names, **params).fit(offline, y)
    manifest = ModelManifest(
        name="event_registration",
        kind=model.kind,
        category="binary",
        inputs=[InputSchema(name=f["name"], type=f["type"]) for f in inputs],
        classes=card["framing"]["label"]["classes"],
        params=model.params,
    )
    save_package(model, tmp_path / "pkg", manifest)
    predictor = Predictor(tmp_path / "pkg")

    # Online: what an HTTP client sends, the raw CSV row as JSON (ints stay ints, Weekend
    # is a JSON boolean). json.dumps writes floats exactly (repr), as HTTP clients do.
    raw = pd.read_csv(csv, nrows=200)[names]
    instances = json.loads(json.dumps(raw.to_dict(orient="records")))
    assert isinstance(instances[0]["Weekend"], bool)
    assert isinstance(instances[0]["Browser"], int)
    online = predictor.to_frame(instances)

    pre = predictor.model.pre_  # type: ignore[attr-defined]
    offline_features = model.pre_.transform(offline)
    online_features = pre.transform(online)
    assert offline_features.shape == (200, len(pre.feature_names_))
    np.testing.assert_array_equal(online_features, offline_features)
    np.testing.assert_array_equal(
        predictor.predict_frame(online), model.predict_proba(offline)[:, 1]
    )
    assert predictor.predict(instances) == model.predict_proba(offline)[:, 1].tolist()


def test_served_batches_encode_as_the_whole_frame_does() -> None:
    """Batches up to SMALL_BATCH rows take a dict lookup of categories, bigger ones a hash
    index; nulls, blanks, numbers as categories, unseen values and a refit all agree."""
    rng = np.random.default_rng(0)
    n = 2 * SMALL_BATCH + 50
    X = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.integers(0, 5, n).astype(float),
            "c": rng.choice(np.array(["x", "y", "", None, "z"], dtype=object), n),
            "d": rng.choice([1, 2, 3], n),
            "e": pd.Series(rng.choice(["p", "q", "r", "s"], n)).astype("string"),
        }
    )
    X.loc[::7, "b"] = np.nan
    X.loc[::11, "e"] = pd.NA
    pre = TabularPreprocessor(
        ["a", "b"], ["c", "d", "e"], max_categories=2, encodings={"d": "ordinal"},
        crosses=[["c", "e"]],
    ).fit(X)  # fmt: skip
    Y = X.sample(frac=1, random_state=1).reset_index(drop=True)
    Y.loc[:20, "c"] = "unseen"
    whole = pre.transform(Y)
    assert len(Y) > SMALL_BATCH  # the hash-index path
    rows = np.vstack([pre.transform(Y.iloc[i : i + 5]) for i in range(0, 100, 5)])
    np.testing.assert_array_equal(rows, whole[:100])
    assert whole[:21, pre.feature_names_.index(f"c={OTHER}")].tolist() == [1.0] * 21
    # a refit with other categories is seen at once (the lookups belong to the fitted list)
    first = next(v for v in pre.categories_["c"] if v != MISSING)
    seen = Y[Y["c"] == first].iloc[:3]
    assert pre.transform(seen)[:, pre.feature_names_.index(f"c={first}")].tolist() == [1.0] * 3
    pre.fit(X.assign(c="w"))
    assert pre.transform(seen)[:, pre.feature_names_.index("c=w")].tolist() == [0.0] * 3
