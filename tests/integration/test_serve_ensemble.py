"""A registered blend served as a graph over HTTP (``deployment.ensemble.graph: true``):
ingress -> combiner -> preprocessor + one batched deployment per member package of the blend.

Nothing is fitted when the app is built: the served answer must equal the blend package's own
``Predictor`` (probability, labels at its stored threshold, its version).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from mlsd_ray.errors import CardError
from mlsd_ray.predict import Predictor
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import load_card
from tests.conftest import REPO, free_port
from tests.integration.serve_fixtures import blend_package, tfidf_package

pytestmark = [pytest.mark.integration, pytest.mark.slow]
APP = "serve_ensemble_test"
THRESHOLD = 0.3


def graph_card(port: int) -> Any:
    return load_card(
        REPO / "systems" / "harmful_content.yaml",
        overrides=[
            f"name={APP}",
            f"deployment.port={port}",
            "deployment.route_prefix=/ensemble",
            "deployment.num_cpus_per_replica=0.25",
            "deployment.autoscaling.max_replicas=1",
            "deployment.ensemble.graph=true",
        ],
    )


@pytest.fixture(scope="module")
def packages(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("serve_ensemble_packages")
    members = {
        "small": tfidf_package(tmp / "small", seed=0, name="small", c=0.05),
        "wide": tfidf_package(tmp / "wide", seed=1, name="wide", c=10.0),
    }
    blend = blend_package(tmp / "blend", members, threshold=THRESHOLD, version="blend-7")
    return members | {"blend": blend}


@pytest.fixture(scope="module")
def served(ray_cluster, tmp_path_factory, packages) -> Any:
    from ray import serve

    from mlsd_ray.serve.app import run_server

    workdir = Workdir.of(tmp_path_factory.mktemp("serve_ensemble") / "work")
    card = graph_card(free_port())
    serve_was_running = bool(serve.status().proxies)
    url = run_server(card, workdir, model_dir=packages["blend"])
    try:
        deployments = serve.status().applications[APP].deployments
        with httpx.Client(base_url=url, timeout=60) as client:
            yield {"client": client, "deployments": set(deployments)}
    finally:
        if APP in serve.status().applications:
            serve.delete(APP)
        if not serve_was_running:
            serve.shutdown()


def test_the_graph_answers_what_the_registered_blend_answers(served, packages):
    assert {"Member_small", "Member_wide", "Preprocessor", "Combiner"} <= served["deployments"]
    texts = ["you stupid idiot", "lovely photo thanks", "see you tonight", "shut up loser"]
    r = served["client"].post("/predict", json={"instances": texts})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == "blend"
    assert body["model_version"] == "blend-7" == r.headers["x-model-version"]
    blend = Predictor(packages["blend"])
    expected = blend.predict(texts)
    np.testing.assert_allclose(body["predictions"], expected, atol=1e-9)
    assert body["labels"] == blend.labels(np.asarray(expected))
    assert body["labels"] == ["harmful" if p >= THRESHOLD else "ok" for p in expected]
    assert body["predictions"][0] > 0.5 > body["predictions"][1]


def test_the_preprocessor_rejects_bad_instances_once(served):
    r = served["client"].post("/predict", json={"instances": [{"txt": "a"}]})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert detail.count("unknown field") == 1, detail
    health = served["client"].get("/healthz").json()
    assert health == {"status": "ok", "model_version": "blend-7", "model_name": "blend"}


def test_a_version_that_is_not_a_blend_is_refused_as_a_graph(tmp_path, packages):
    """Refused while the app is built, before anything is deployed (no Ray needed)."""
    from mlsd_ray.serve.app import build_application

    card = graph_card(free_port())
    with pytest.raises(CardError, match=r"deployment\.ensemble\.graph: .* not a blend"):
        build_application(card, Workdir.of(tmp_path / "work"), model_dir=packages["small"])
