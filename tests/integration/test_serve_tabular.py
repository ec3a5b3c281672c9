"""A tabular card (event registration) served over HTTP: dict instances, typed log columns."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from mlsd_ray.models.package import InputSchema, ModelManifest, save_package
from mlsd_ray.models.simple import TabularLogReg
from mlsd_ray.predict import Predictor
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard, load_card
from tests.conftest import REPO, free_port

pytestmark = pytest.mark.integration

APP = "serve_tabular_test"


def _sessions(card: DesignCard, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    for f in card.framing.inputs:
        if f.type == "float":
            data[f.name] = rng.exponential(2.0, size=n).round(3)
        else:
            data[f.name] = rng.choice(["1", "2", "3"], size=n)
    data["Month"] = rng.choice(["Feb", "May", "Nov"], size=n)
    return pd.DataFrame(data)


@pytest.fixture(scope="module")
def served(ray_cluster, tmp_path_factory):
    from ray import serve

    from mlsd_ray.serve.app import run_server

    tmp = tmp_path_factory.mktemp("serve_tabular")
    card = load_card(
        REPO / "systems" / "event_registration.yaml",
        overrides=[
            f"name={APP}",
            f"deployment.port={free_port()}",
            "deployment.route_prefix=/events",
            "deployment.num_cpus_per_replica=0.5",
        ],
    )
    train = _sessions(card, 400, seed=0)
    y = (train["PageValues"] > 2.0).astype(int).to_numpy()
    numeric = [f.name for f in card.framing.inputs if f.type == "float"]
    categorical = [f.name for f in card.framing.inputs if f.type == "category"]
    model = TabularLogReg(card.feature_names, numeric=numeric, categorical=categorical).fit(
        train, y
    )
    package = save_package(
        model,
        tmp / "package",
        ModelManifest(
            name="logreg",
            kind="logreg",
            category="binary",
            inputs=[InputSchema(name=f.name, type=f.type) for f in card.framing.inputs],
            classes=["no_registration", "registration"],
            params=model.params,
        ),
    )
    workdir = Workdir.of(tmp / "work")
    serve_was_running = bool(serve.status().proxies)
    url = run_server(card, workdir, model_dir=package)
    with httpx.Client(base_url=url, timeout=60) as client:
        yield {"card": card, "workdir": workdir, "package": package, "client": client}
    if APP in serve.status().applications:
        serve.delete(APP)
    if not serve_was_running:
        serve.shutdown()


def test_dict_instances_match_offline(served):
    card = served["card"]
    instances = _sessions(card, 5, seed=1).to_dict(orient="records")
    instances[0]["OperatingSystems"] = 2  # a number for a category is fine: it becomes "2"
    r = served["client"].post("/predict", json={"instances": instances})
    assert r.status_code == 200, r.text
    expected = Predictor(served["package"]).predict(instances)
    np.testing.assert_allclose(r.json()["predictions"], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"PageValues": "high"}, "PageValues: expected a number"),
        ({"PageValues": None}, "PageValues: required field is missing"),
        ({"Clicks": 3}, "unknown field(s) ['Clicks']"),
    ],
)
def test_bad_tabular_instances_are_422(served, change, reason):
    instance = _sessions(served["card"], 1, seed=2).to_dict(orient="records")[0] | change
    r = served["client"].post("/predict", json={"instances": [instance]})
    assert r.status_code == 422 and reason in r.json()["detail"]


def test_log_has_one_typed_column_per_feature(served):
    from ray import serve

    from mlsd_ray.monitor.log import read_prediction_log

    card = served["card"]
    instances = _sessions(card, 20, seed=3).to_dict(orient="records")
    assert served["client"].post("/predict", json={"instances": instances}).status_code == 200
    serve.delete(APP)  # flushes the log
    logged = read_prediction_log(served["workdir"].prediction_log_uri(card))
    assert len(logged) == 25  # 5 + 20 served rows; rejected requests are not logged
    assert logged["PageValues"].dtype == np.float64
    assert logged["Month"].map(type).eq(str).all()
    assert set(logged["OperatingSystems"]) <= {"1", "2", "3"}
