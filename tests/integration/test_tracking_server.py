"""A real MLflow tracking server: PostgreSQL backend (127.0.0.1:5432), artifacts on moto's S3.

Each test module run uses a database and a bucket prefix of its own and removes them.
"""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsd_ray import registry, storage
from mlsd_ray import tracking_server as ts
from mlsd_ray.errors import StorageError
from mlsd_ray.models.package import InputSchema, ModelManifest, save_package
from mlsd_ray.models.simple import MajorityClass
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import load_card
from tests.conftest import free_port
from tests.e2e.conftest import CARD

pytestmark = pytest.mark.integration


def _postgres_up() -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def server(s3_bucket, tmp_path_factory):
    if not _postgres_up():
        pytest.skip("PostgreSQL is not listening on 127.0.0.1:5432")
    run = uuid.uuid4().hex[:8]
    cfg = ts.ServerConfig(
        backend_store_uri=f"postgresql+psycopg://postgres@127.0.0.1:5432/mlsd_i10_{run}",
        artifacts_destination=f"s3://{s3_bucket}/mlflow-{run}",
        port=free_port(),
        state_dir=tmp_path_factory.mktemp("mlflow-server"),
    )
    proc = ts.start(cfg)
    try:
        yield cfg
    finally:
        ts.stop(proc)
        ts.drop_database(cfg.backend_store_uri)


def _package(path: Path) -> Path:
    x = pd.DataFrame({"text": ["a", "b", "c"]})
    model = MajorityClass(["text"]).fit(x, np.array([0, 1, 1]))
    manifest = ModelManifest(
        name="tfidf_logreg",
        kind="majority",
        category="binary",
        inputs=[InputSchema(name="text", type="text")],
        classes=["negative", "positive"],
    )
    return save_package(model, path, manifest)


@pytest.mark.slow
def test_registry_through_the_server(server, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLSD_CACHE_DIR", str(tmp_path / "node-b"))
    card = load_card(CARD, [f"storage.tracking_uri={server.url}"])
    driver = Workdir.for_card(card, tmp_path / "driver")
    assert driver.tracking_uri == server.url
    info = registry.log_and_register(
        card,
        driver,
        model_name="tfidf_logreg",
        model_dir=_package(tmp_path / "pkg"),
        params={"model": "tfidf_logreg"},
        metrics={"test_roc_auc": 0.5},
    )
    registry.set_alias(card, driver, registry.CHAMPION, info.version)
    # The store is PostgreSQL: the version is a row there, not a file in the workdir.
    import psycopg

    db = server.backend_store_uri.replace("+psycopg", "")
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT version FROM model_versions WHERE name = %s", (card.registered_model_name,)
        ).fetchall()
    assert [str(r[0]) for r in rows] == [info.version]
    assert not (tmp_path / "driver" / "mlflow.db").exists()
    # The artifacts went through the server to the bucket.
    fs, base = storage.filesystem(server.artifacts_destination)
    import pyarrow.fs as pafs

    listed = fs.get_file_info(pafs.FileSelector(base, recursive=True))
    assert any(i.path.endswith("model/mlsd_model.json") for i in listed)
    # Another node (another workdir, empty cache) fetches the champion through the server.
    other = Workdir.for_card(card, tmp_path / "other-node")
    version, package = registry.fetch_model(card, other, registry.CHAMPION)
    assert version == info.version and (package / "mlsd_model.json").is_file()
    source = registry.package_source(package)
    assert source is not None and source["tracking_uri"] == server.url
    got = registry.localize(tmp_path / "missing-on-this-node", source)
    assert got.is_relative_to(tmp_path / "node-b")
    assert json.loads((got / "mlsd_model.json").read_text())["kind"] == "majority"


def _get(url: str, user: str | None = None, password: str | None = None) -> int:
    req = urllib.request.Request(url)
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=180) as r:
            return int(r.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def test_open_host_without_credentials_is_refused(tmp_path, monkeypatch) -> None:
    for key in ts.AUTH_ENV:
        monkeypatch.delenv(key, raising=False)
    cfg = ts.ServerConfig(host="0.0.0.0", port=free_port(), state_dir=tmp_path)
    assert cfg.needs_auth
    with pytest.raises(StorageError, match="without authentication"):
        ts.start(cfg)
    assert not (tmp_path / "server.log").exists()  # refused before anything started


@pytest.mark.slow
def test_basic_auth_server_requires_credentials(s3_bucket, tmp_path, monkeypatch) -> None:
    if not _postgres_up():
        pytest.skip("PostgreSQL is not listening on 127.0.0.1:5432")
    password = f"pw-{uuid.uuid4().hex}"  # MLflow wants 12+ characters
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_USERNAME", "mlsd-admin")
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", password)
    run = uuid.uuid4().hex[:8]
    cfg = ts.ServerConfig(
        backend_store_uri=f"postgresql+psycopg://postgres@127.0.0.1:5432/mlsd_i10_auth_{run}",
        artifacts_destination=f"s3://{s3_bucket}/mlflow-auth-{run}",
        port=free_port(),
        state_dir=tmp_path,
        auth=True,
    )
    argv, _env = ts.command(cfg)
    assert password not in " ".join(argv)
    proc = ts.start(cfg)
    try:
        search = f"{cfg.url}/api/2.0/mlflow/experiments/search?max_results=1"
        assert _get(search) == 401
        assert _get(search, "mlsd-admin", "wrong") == 401
        assert _get(search, "mlsd-admin", password) == 200
        # Clients authenticate from the environment only.
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "mlsd-admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        card = load_card(CARD, [f"storage.tracking_uri={cfg.url}"])
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        with registry.tracked_run(card, Workdir.for_card(card, tmp_path / "w"), "auth") as run:
            assert run.info.run_id  # created on the server with the admin's credentials
    finally:
        ts.stop(proc)
        ts.drop_database(cfg.backend_store_uri)
    for f in tmp_path.rglob("*"):
        if f.is_file() and f.suffix in (".ini", ".log", ".json", ".txt"):
            assert password not in f.read_text(errors="replace"), f


def test_cli_refuses_open_host_without_auth(tmp_path) -> None:
    from typer.testing import CliRunner

    from mlsd_ray.cli import app

    res = CliRunner().invoke(
        app, ["mlflow-server", "--host", "0.0.0.0", "--no-auth", "--state-dir", str(tmp_path)]
    )
    assert res.exit_code != 0 and "--no-auth is refused off loopback" in res.output


def test_help_lists_the_command() -> None:
    out = subprocess.run(
        [str(Path(__import__("sys").executable).with_name("mlsd")), "mlflow-server", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "PostgreSQL" in out
