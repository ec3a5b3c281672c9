"""Promote and rollback of a served blend graph (``deployment.ensemble.graph: true``).

Two blends are registered as versions 1 and 2 of the card's model: different members and
thresholds. The graph app serves the champion alias; ``promote`` and ``rollback`` (the same
calls as the CLI) re-point the alias, and the running graph must follow: its member
deployments, its scores and its labels become those of the other registered blend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from mlsd_ray import registry
from mlsd_ray.predict import Predictor
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import load_card
from tests.conftest import REPO, free_port
from tests.integration.serve_fixtures import blend_package, tfidf_package

pytestmark = [pytest.mark.integration, pytest.mark.slow]
APP = "serve_ensemble_rollout_test"
TEXTS = ["you stupid idiot", "lovely photo thanks", "see you tonight", "shut up loser"]


def _card(port: int) -> Any:
    return load_card(
        REPO / "systems" / "harmful_content.yaml",
        overrides=[
            f"name={APP}",
            f"deployment.port={port}",
            "deployment.route_prefix=/ensemble_rollout",
            "deployment.num_cpus_per_replica=0.25",
            "deployment.autoscaling.max_replicas=1",
            "deployment.ensemble.graph=true",
        ],
    )


@pytest.fixture(scope="module")
def blends(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("serve_ensemble_rollout")
    small = tfidf_package(tmp / "small", seed=0, name="small", c=0.05)
    wide = tfidf_package(tmp / "wide", seed=1, name="wide", c=10.0)
    narrow = tfidf_package(tmp / "narrow", seed=3, name="narrow", c=1.0)
    return {
        "1": blend_package(tmp / "b1", {"small": small, "wide": wide}, threshold=0.3),
        "2": blend_package(tmp / "b2", {"small": small, "narrow": narrow}, threshold=0.7),
    }


def _members() -> set[str]:
    from ray import serve

    names = serve.status().applications[APP].deployments
    return {n.removeprefix("Member_") for n in names if n.startswith("Member_")}


def _answers_like(client: httpx.Client, package: Path) -> None:
    r = client.post("/predict", json={"instances": TEXTS})
    assert r.status_code == 200, r.text
    body = r.json()
    blend = Predictor(package)
    expected = blend.predict(TEXTS)
    np.testing.assert_allclose(body["predictions"], expected, atol=1e-9)
    assert body["labels"] == blend.labels(np.asarray(expected))


def test_promote_and_rollback_move_the_graph_between_registered_blends(
    ray_cluster, tmp_path, blends
):
    from ray import serve

    from mlsd_ray.serve import rollout as ops
    from mlsd_ray.serve.app import run_server

    card = _card(free_port())
    workdir = Workdir.of(tmp_path / "work")
    for version, package in blends.items():
        info = registry.log_and_register(card, workdir, "blend", package, {}, {"roc_auc": 0.9})
        assert info.version == version
    registry.set_alias(card, workdir, registry.CHAMPION, "1")

    serve_was_running = bool(serve.status().proxies)
    url = run_server(card, workdir)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            assert _members() == {"small", "wide"}  # the champion blend's members
            _answers_like(client, blends["1"])

            assert ops.promote(card, workdir, "2")["version"] == "2"
            assert _members() >= {"small", "narrow"}  # (a removed one may still be going)
            _answers_like(client, blends["2"])

            assert ops.rollback(card, workdir)["version"] == "1"
            assert registry.get_alias(card, workdir).version == "1"  # type: ignore[union-attr]
            assert _members() >= {"small", "wide"}
            _answers_like(client, blends["1"])
    finally:
        if APP in serve.status().applications:
            serve.delete(APP)
        if not serve_was_running:
            serve.shutdown()
