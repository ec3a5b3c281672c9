"""Workdir URIs, the card's storage section, and path traversal (no Ray, no network)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlsd_ray import storage
from mlsd_ray.errors import CardError, StorageError
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import load_card

CARD = Path(__file__).resolve().parents[2] / "systems" / "harmful_content.yaml"


@pytest.mark.parametrize(
    "uri",
    ["s3://bucket/a/../b", "s3://bucket/./a", "s3://bucket/a\\..\\b", "s3://B/a", "s3://x/a"],
)
def test_bad_s3_uris_are_refused(uri: str) -> None:
    with pytest.raises(StorageError, match="S3 URI"):
        storage.check_uri(uri)


@pytest.mark.parametrize("name", ["../etc", "/etc/passwd", "a/../../b", "", "a\\..\\b", "."])
def test_artifact_names_cannot_leave_their_folder(name: str, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="path traversal"):
        storage.safe_join(str(tmp_path), name)
    with pytest.raises(StorageError):
        Workdir(tmp_path).model_dir(name)


def test_plain_names_join(tmp_path: Path) -> None:
    assert storage.safe_join(str(tmp_path), "minilm") == str(tmp_path / "minilm")
    assert storage.safe_join("s3://bkt/p", "models", "m") == "s3://bkt/p/models/m"


def test_resolve_refuses_traversal_in_remote_workdir(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MLSD_CACHE_DIR", str(tmp_path))
    wd = Workdir.of("s3://bkt/team/sys")
    assert wd.resolve("data") == "s3://bkt/team/sys/data"
    assert wd.ray_results_uri == "s3://bkt/team/sys/ray_results"
    with pytest.raises(StorageError):
        wd.resolve("../other-team/data")


def test_remote_workdir_mirror_is_a_cache_keyed_by_uri(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MLSD_CACHE_DIR", str(tmp_path))
    a, b = Workdir.of("s3://bkt/a"), Workdir.of("s3:/bkt/b")  # Typer's Path drops a slash
    assert a.remote and b.uri == "s3://bkt/b"
    assert a.root.is_relative_to(tmp_path) and a.root != b.root
    assert a.artifact_root == "s3://bkt/a/mlartifacts"
    assert not Workdir.of(tmp_path / "w").remote


def test_card_storage_section(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MLSD_WORKDIR", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    card = load_card(
        CARD,
        [
            "storage.uri=s3://bkt/from-card",
            f"storage.cache_dir={tmp_path}",
            "storage.tracking_uri=http://127.0.0.1:5999",
        ],
    )
    wd = Workdir.for_card(card)
    assert wd.uri == "s3://bkt/from-card" and wd.root.is_relative_to(tmp_path)
    assert wd.tracking_uri == "http://127.0.0.1:5999"
    assert Workdir.for_card(card, tmp_path / "explicit").uri == str(tmp_path / "explicit")


def test_card_storage_rejects_unknown_scheme_and_keys() -> None:
    with pytest.raises(CardError, match=r"storage\.uri"):
        load_card(CARD, ["storage.uri=gs://bkt/x"])
    with pytest.raises(CardError, match=r"storage\.bucket"):
        load_card(CARD, ["storage.bucket=x"])


def test_mlflow_s3_endpoint_follows_the_object_store_but_not_over_the_user(monkeypatch) -> None:
    # One process may use two object stores in turn (the suite does): a derived endpoint that
    # stayed behind sent MLflow's artifacts to a server that was gone.
    monkeypatch.delenv("MLFLOW_S3_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1111")
    storage.export_mlflow_s3_endpoint()
    assert os.environ["MLFLOW_S3_ENDPOINT_URL"] == "http://127.0.0.1:1111"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:2222")
    storage.export_mlflow_s3_endpoint()
    assert os.environ["MLFLOW_S3_ENDPOINT_URL"] == "http://127.0.0.1:2222"
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    storage.export_mlflow_s3_endpoint()
    assert "MLFLOW_S3_ENDPOINT_URL" not in os.environ
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", "http://users-choice:9000")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:3333")
    storage.export_mlflow_s3_endpoint()
    assert os.environ["MLFLOW_S3_ENDPOINT_URL"] == "http://users-choice:9000"
