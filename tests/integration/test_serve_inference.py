"""``deployment.inference`` reaches the Serve replicas: a tiny transformer served with ONNX Runtime.

The replica exports the graph into the ONNX cache when it loads the package, so the file named
after these weights appearing there proves the card's choice travelled through
``build_application`` to the ``Predictor`` in the replica; the answers over HTTP equal offline
predictions of the same path.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import torch

from mlsd_ray.models.package import InputSchema, ModelManifest, save_package
from mlsd_ray.models.transformer import TransformerTextClassifier
from mlsd_ray.predict import Predictor
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import load_card
from tests.conftest import REPO, free_port
from tests.toy_data import toy_split

pytestmark = [pytest.mark.integration, pytest.mark.slow]

APP = "serve_inference_test"
PARAMS = {"pretrained": "tiny", "max_length": 24, "epochs": 1, "batch_size": 16, "n_classes": 2}


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see test_fast_inference: 2 spinning threads on a busy machine
    try:
        train = toy_split(64, 0)
        model = TransformerTextClassifier(["text"], **{**PARAMS, "learning_rate": 1e-3})
        model.fit(train[["text"]], train["label"].to_numpy())
    finally:
        torch.set_num_threads(threads)
    manifest = ModelManifest(
        name="tiny",
        kind="transformer",
        category="binary",
        inputs=[InputSchema(name="text", type="text")],
        classes=["ok", "harmful"],
        params={**PARAMS, "text_input": "text"},
        metadata={"version": "test-1"},
    )
    return save_package(model, tmp_path_factory.mktemp("inference") / "tiny", manifest)


def test_serve_uses_the_cards_inference_path(ray_cluster, package: Path, tmp_path: Path) -> None:
    from ray import serve

    from mlsd_ray.serve.app import run_server

    card = load_card(
        REPO / "systems" / "harmful_content.yaml",
        overrides=[
            f"name={APP}",
            f"deployment.port={free_port()}",
            "deployment.route_prefix=/inference",
            "deployment.num_cpus_per_replica=0.5",
            "deployment.autoscaling.max_replicas=1",
            "deployment.inference=onnx",
        ],
    )
    from mlsd_ray.models.fast_inference import onnx_file_for

    # The replica's cache is the default one (it does not see this process's environment);
    # the file is named after the weights' hash, and training is seeded, so an earlier run on
    # this machine may have left it: remove it, so only this replica can write it.
    graph = onnx_file_for(package)
    graph.unlink(missing_ok=True)
    serve_was_running = bool(serve.status().proxies)
    url = run_server(card, Workdir.of(tmp_path / "work"), model_dir=package)
    try:
        texts = [t for t in toy_split(12, 5)["text"]]
        with httpx.Client(base_url=url, timeout=120) as client:
            r = client.post("/predict", json={"instances": texts})
        assert r.status_code == 200, r.text
        served = r.json()["predictions"]
        assert graph.is_file(), "the replica did not load the ONNX path"
        offline = Predictor(package, inference="onnx").predict(texts)
        assert served == pytest.approx(offline, abs=1e-5)
        assert served == pytest.approx(Predictor(package).predict(texts), abs=1e-5)
        # Intra-op threads = the replica's num_cpus (0.5 -> at least one).
        with httpx.Client(base_url=url, timeout=30) as client:
            stats = client.get("/stats").json()
        assert stats["inference"] == "onnx" and stats["threads"] == 1
    finally:
        if APP in serve.status().applications:
            serve.delete(APP)
        if not serve_was_running:
            serve.shutdown()
