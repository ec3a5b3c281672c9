"""Serve config files and the options derived from the card; builds apps without Ray."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import ValidationError
from ray.serve.config import AutoscalingConfig
from ray.serve.schema import ServeDeploySchema

from mlsd_ray.models.package import InputSchema, ModelManifest, save_package
from mlsd_ray.models.simple import TfidfLogReg
from mlsd_ray.serve.app import (
    ServeArgs,
    base_url,
    build_app,
    ingress_options,
    model_options,
    resolve_model,
)
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import load_card
from tests.conftest import REPO

CONFIGS = sorted((REPO / "serve_configs").glob("*.yaml"))


def test_every_card_with_a_deployment_has_a_config():
    """bench/tune_all.py writes each card's tuned values into its config (the ranking graph
    is tuned elsewhere)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tune_all", REPO / "bench" / "tune_all.py")
    assert spec is not None and spec.loader is not None
    tune_all = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tune_all)
    cards = set(tune_all.cards_with_a_deployment())
    assert cards >= {"harmful_content", "event_registration", "digits", "watch_time"}
    assert not cards & {"watch_time_ranking", "ad_click_ranking"}  # ranking graphs
    assert {p.stem for p in CONFIGS} >= cards


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_serve_config_is_valid_and_matches_its_card(path: Path):
    raw = yaml.safe_load(path.read_text())
    schema = ServeDeploySchema.model_validate(raw)
    assert schema.http_options.host == "127.0.0.1"
    [app] = schema.applications
    assert app.import_path == "mlsd_ray.serve.app:build_app"
    args = ServeArgs.model_validate(app.args)
    card = load_card(REPO / args.card, overrides=args.overrides)  # paths are repo-relative
    assert app.name == card.name
    assert schema.http_options.port == card.deployment.port
    assert app.route_prefix == card.deployment.route_prefix


def test_serve_args_reject_unknown_keys():
    with pytest.raises(ValidationError):
        ServeArgs.model_validate({"card": "c.yaml", "work_dir": "x"})
    assert ServeArgs(card="c.yaml").workdir == "mlsd-work"


def test_model_options_follow_the_card():
    card = load_card(REPO / "systems" / "harmful_content.yaml")
    opts = model_options(card)
    assert opts["max_ongoing_requests"] == 32  # 2 x batch 16: batches can fill
    assert opts["ray_actor_options"] == {"num_cpus": 1.0}
    auto = opts["autoscaling_config"]
    assert (auto["min_replicas"], auto["max_replicas"], auto["target_ongoing_requests"]) == (
        1,
        2,
        16,
    )
    AutoscalingConfig(**auto)  # Serve accepts it

    card = load_card(
        REPO / "systems" / "harmful_content.yaml",
        overrides=["deployment.num_cpus_per_replica=0.25", "deployment.max_ongoing_requests=5"],
    )
    opts = model_options(card)
    assert opts["ray_actor_options"] == {"num_cpus": 0.25}
    assert opts["max_ongoing_requests"] == 5
    ingress = ingress_options(card)
    assert ingress["ray_actor_options"] == {"num_cpus": 0}
    assert ingress["max_ongoing_requests"] >= 2 * 5 * 2


def test_base_url():
    assert base_url("127.0.0.1", 8000, "/") == "http://127.0.0.1:8000"
    assert base_url("0.0.0.0", 8001, "/api/") == "http://127.0.0.1:8001/api"


def _package(tmp_path: Path) -> Path:
    df = pd.DataFrame({"text": ["nice day", "you idiot", "lovely", "stupid trash"]})
    model = TfidfLogReg(["text"], min_df=1).fit(df, np.array([0, 1, 0, 1]))
    manifest = ModelManifest(
        name="m",
        kind="tfidf_logreg",
        category="binary",
        inputs=[InputSchema(name="text", type="text")],
        classes=["ok", "harmful"],
    )
    return save_package(model, tmp_path / "pkg", manifest)


def test_build_app_with_a_local_package(tmp_path: Path):
    from ray import serve

    app = build_app(
        {
            "card": str(REPO / "systems" / "harmful_content.yaml"),
            "workdir": str(tmp_path / "work"),
            "model_dir": str(_package(tmp_path)),
            "overrides": ["deployment.port=8123"],
        }
    )
    assert isinstance(app, serve.Application)


def test_registry_is_asked_for_the_alias(tmp_path: Path, monkeypatch):
    registry = pytest.importorskip("mlsd_ray.registry")
    calls = []

    def fake_fetch(card, workdir, alias):
        calls.append(alias)
        return "3", tmp_path / "pkg"

    monkeypatch.setattr(registry, "fetch_model", fake_fetch)
    card = load_card(REPO / "systems" / "harmful_content.yaml")
    workdir = Workdir.of(tmp_path)
    assert resolve_model(card, workdir) == ("3", (tmp_path / "pkg").resolve())
    assert resolve_model(card, workdir, alias="challenger")[0] == "3"
    assert calls == ["champion", "challenger"]
    # A local package bypasses the registry; its version comes from the package.
    assert resolve_model(card, workdir, model_dir=tmp_path) == (None, tmp_path.resolve())
    assert len(calls) == 2
