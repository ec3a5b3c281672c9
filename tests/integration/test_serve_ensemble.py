"""An ensemble graph over HTTP: ingress -> combiner -> preprocessor + two members (batched).

The stacked combiner is fitted on the validation split when the app is built; the served
answer must equal the same stacker applied offline to the members' own predictions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from mlsd_ray.predict import Predictor
from mlsd_ray.serve.combine import StackedCombiner
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import load_card
from tests.conftest import REPO, free_port
from tests.integration.serve_fixtures import tfidf_package, toy_posts

pytestmark = [pytest.mark.integration, pytest.mark.slow]
APP = "serve_ensemble_test"


@pytest.fixture(scope="module")
def served(ray_cluster, tmp_path_factory) -> Any:
    from ray import serve

    from mlsd_ray.serve.app import run_server

    tmp = tmp_path_factory.mktemp("serve_ensemble")
    workdir = Workdir.of(tmp / "work")
    card = load_card(
        REPO / "systems" / "harmful_content.yaml",
        overrides=[
            f"name={APP}",
            f"deployment.port={free_port()}",
            "deployment.route_prefix=/ensemble",
            "deployment.num_cpus_per_replica=0.25",
            "deployment.autoscaling.max_replicas=1",
            "deployment.ensemble.members=[small, wide]",
            "deployment.ensemble.combiner=stacked",
        ],
    )
    tfidf_package(workdir.model_dir("small"), seed=0, name="small", c=0.05)
    tfidf_package(workdir.model_dir("wide"), seed=1, name="wide", c=10.0)
    validation = Path(workdir.split_uri(card, "validation"))
    validation.mkdir(parents=True)
    toy_posts(seed=2, n=80).to_parquet(validation / "part-0.parquet")

    serve_was_running = bool(serve.status().proxies)
    url = run_server(card, workdir)
    with httpx.Client(base_url=url, timeout=60) as client:
        yield {"card": card, "workdir": workdir, "client": client}
    if APP in serve.status().applications:
        serve.delete(APP)
    if not serve_was_running:
        serve.shutdown()


def test_stacked_answer_equals_offline_combination(served):
    card, workdir = served["card"], served["workdir"]
    texts = ["you stupid idiot", "lovely photo thanks", "see you tonight", "shut up loser"]
    r = served["client"].post("/predict", json={"instances": texts})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == "ensemble(small+wide)"
    assert body["model_version"] == "small-0+wide-1"
    stacker = StackedCombiner.load(workdir.resolve(card.deployment.ensemble.stacker_path))
    scores = np.column_stack(
        [Predictor(workdir.model_dir(n)).predict(texts) for n in ("small", "wide")]
    )
    np.testing.assert_allclose(body["predictions"], stacker.combine(scores), atol=1e-9)
    assert body["predictions"][0] > 0.5 > body["predictions"][1]


def test_the_preprocessor_rejects_bad_instances_once(served):
    r = served["client"].post("/predict", json={"instances": [{"txt": "a"}]})
    assert r.status_code == 422 and "unknown field" in r.json()["detail"]
    health = served["client"].get("/healthz").json()
    assert health == {
        "status": "ok",
        "model_version": "small-0+wide-1",
        "model_name": "ensemble(small+wide)",
    }
