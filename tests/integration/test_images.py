"""Images end to end on real digits (scikit-learn's load_digits): ETL quarantines undecodable
images, the CNN trains with Ray Train's TorchTrainer, and Serve answers base64 PNGs over HTTP
exactly as the offline Predictor does."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pandas as pd
import pytest

from mlsd_ray.data.etl import SPLITS, read_split, run_etl
from mlsd_ray.data.synthetic import generate_digits
from mlsd_ray.predict import Predictor
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import load_card
from mlsd_ray.train.stage import train_models
from tests.conftest import REPO, free_port

pytestmark = pytest.mark.integration

APP = "digits_images_test"
BROKEN = [
    "this is not base64!",  # not base64 at all
    base64.b64encode(b"plain text, not a picture").decode(),  # base64 of no image
    base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30).decode(),  # a PNG header, no image
]


@pytest.fixture(scope="module")
def trained(ray_cluster, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("digits")
    frame = generate_digits(1797, seed=0)
    broken = pd.DataFrame({"image": BROKEN, "label": ["1", "2", "3"]})
    source = tmp / "digits.csv"
    pd.concat([frame, broken], ignore_index=True).to_csv(source, index=False)
    card = load_card(
        REPO / "systems" / "digits.yaml",
        overrides=[
            f"name={APP}",
            f"data.sources.0.uri={source}",
            "data.report=false",
            "models.candidates.0.params.epochs=12",
            f"deployment.port={free_port()}",
            "deployment.route_prefix=/digits",
            "deployment.num_cpus_per_replica=0.5",
        ],
    )
    workdir = Workdir(tmp / "work")
    etl = run_etl(card, workdir)
    summary = train_models(card, workdir, only=["cnn"])
    return {"card": card, "workdir": workdir, "etl": etl, "summary": summary}


def test_etl_quarantines_exactly_the_undecodable_images(trained) -> None:
    etl = trained["etl"]
    assert etl.rows_in == 1800 and etl.rows_ok == 1797
    assert etl.quarantine_by_reason == {"undecodable_image": 3}
    quarantine = read_split(trained["card"], trained["workdir"], "quarantine")
    assert sorted(quarantine["image"]) == sorted(BROKEN)
    assert all("undecodable image in 'image'" in r for r in quarantine["_reason"])
    rows = sum(len(read_split(trained["card"], trained["workdir"], s)) for s in SPLITS)
    assert rows == 1797


def test_cnn_trained_with_ray_train_reads_digits(trained) -> None:
    info = trained["summary"]["models"]["cnn"]
    predictor = Predictor(info["dir"])
    assert predictor.manifest.kind == "cnn" and predictor.manifest.inputs[0].type == "image"
    assert predictor.manifest.metadata["run_name"].startswith(f"{APP}-cnn-")  # a TorchTrainer run
    test = read_split(trained["card"], trained["workdir"], "test")
    proba = predictor.predict_frame(test[["image"]])
    accuracy = float((proba.argmax(axis=1) == test["label"].to_numpy()).mean())
    assert accuracy > 0.9, accuracy


def test_http_answers_equal_offline_predictions(trained) -> None:
    from ray import serve

    from mlsd_ray.serve.app import run_server

    card, workdir = trained["card"], trained["workdir"]
    package = trained["summary"]["models"]["cnn"]["dir"]
    test = read_split(card, workdir, "test")
    instances = [{"image": v} for v in test["image"].tolist()[:16]]
    expected = Predictor(package).predict(instances)
    serve_was_running = bool(serve.status().proxies)
    url = run_server(card, workdir, model_dir=package)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            r = client.post("/predict", json={"instances": instances})
            assert r.status_code == 200, r.text
            np.testing.assert_allclose(r.json()["predictions"], expected, rtol=0, atol=1e-9)
            bad = client.post("/predict", json={"instances": [{"image": BROKEN[1]}]})
            assert bad.status_code == 422 and "cannot decode" in bad.json()["detail"]
    finally:
        if APP in serve.status().applications:
            serve.delete(APP)
        if not serve_was_running:
            serve.shutdown()
