"""Offline batch prediction on Ray Data: same scores as the Predictor, local and on S3."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.dataset as pads
import pytest
from typer.testing import CliRunner

from mlsd_ray import storage
from mlsd_ray.batch_predict import predict_dataset
from mlsd_ray.errors import DataError
from mlsd_ray.predict import Predictor
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import load_card
from tests.conftest import REPO
from tests.integration.serve_fixtures import tfidf_package, toy_posts

pytestmark = pytest.mark.integration
CARD = REPO / "systems" / "harmful_content.yaml"


def _read(uri: str) -> pd.DataFrame:
    fs, path = storage.filesystem(uri)
    return pads.dataset(path, filesystem=fs, format="parquet").to_table().to_pandas()


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    return tfidf_package(tmp_path_factory.mktemp("batch") / "pkg")


@pytest.mark.slow  # the session's first Ray Data job pays its start-up
def test_parquet_in_parquet_out_equals_the_predictor(ray_cluster, package, tmp_path):
    posts = toy_posts(seed=3, n=60).drop(columns="label").assign(post_id=range(120))
    posts.to_parquet(tmp_path / "posts.parquet")
    card = load_card(CARD)
    summary = predict_dataset(
        card,
        Workdir.of(tmp_path / "work"),
        str(tmp_path / "posts.parquet"),
        model_dir=package,
        batch_size=32,
    )
    assert summary["rows"] == 120
    assert summary["output"] == str(tmp_path / "work" / "batch_predictions")
    out = _read(summary["output"]).sort_values("post_id")
    assert list(out["post_id"]) == list(range(120))  # extra columns are kept
    expected = Predictor(package).predict(posts["text"].tolist())
    np.testing.assert_allclose(out["probability"], expected, rtol=0, atol=1e-12)
    assert set(out["model_version"]) == {"tfidf_logreg-0"}


def test_cli_reads_csv_from_s3_and_writes_parquet_to_s3(ray_cluster, package, s3_bucket, tmp_path):
    from mlsd_ray.cli import app

    posts = toy_posts(seed=4, n=10).drop(columns="label")
    storage.write_text(f"s3://{s3_bucket}/batch/posts.csv", posts.to_csv(index=False))
    out = f"s3://{s3_bucket}/batch/predictions"
    result = CliRunner().invoke(
        app,
        [
            "predict",
            str(CARD),
            "--input",
            f"s3://{s3_bucket}/batch/posts.csv",
            "--output",
            out,
            "--model-dir",
            str(package),
            "--workdir",
            str(tmp_path / "work"),
        ],
    )
    assert result.exit_code == 0, result.output
    scored = _read(out)
    assert len(scored) == 20
    expected = dict(
        zip(posts["text"], Predictor(package).predict(posts["text"].tolist()), strict=True)
    )
    for text, p in zip(scored["text"], scored["probability"], strict=True):
        assert p == pytest.approx(expected[text], abs=1e-12)


def test_missing_columns_are_named(ray_cluster, package, tmp_path):
    pd.DataFrame({"body": ["a", "b"]}).to_parquet(tmp_path / "wrong.parquet")
    with pytest.raises(DataError, match=r"lacks the card's input column\(s\) \['text'\]"):
        predict_dataset(
            load_card(CARD),
            Workdir.of(tmp_path),
            str(tmp_path / "wrong.parquet"),
            model_dir=package,
        )
    with pytest.raises(DataError, match="No input"):
        predict_dataset(
            load_card(CARD), Workdir.of(tmp_path), str(tmp_path / "nope.parquet"), model_dir=package
        )
