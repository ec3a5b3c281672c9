"""The served card over real HTTP: Ray Serve on the shared local Ray, httpx on loopback.

One app for the module (a TF-IDF package trained here, served from ``model_dir``), deleted at
the end; Serve itself is shut down only if this module started it. The last test deletes the
app on purpose: that is what flushes the rest of the prediction log, which the monitor then
reads.
"""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from mlsd_ray.models.package import InputSchema, ModelManifest, save_package
from mlsd_ray.models.simple import TfidfLogReg
from mlsd_ray.predict import Predictor
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard, load_card
from tests.conftest import REPO, free_port

pytestmark = pytest.mark.integration

APP = "serve_http_test"
MAX_INSTANCES = 8
THRESHOLD = 0.2
OK_WORDS = [
    "thanks",
    "lovely",
    "photo",
    "great",
    "game",
    "tonight",
    "nice",
    "day",
    "see",
    "you",
    "soon",
    "friends",
]
BAD_WORDS = ["idiot", "stupid", "trash", "loser", "hate", "shut", "up", "ugly", "moron"]


def _texts(
    rng: np.random.Generator, words: list[str], n: int, lo: int = 3, hi: int = 9
) -> list[str]:
    return [" ".join(rng.choice(words, size=rng.integers(lo, hi))) for _ in range(n)]


def _shifted(rng: np.random.Generator, n: int) -> list[str]:
    """Much longer posts with links and mentions: a drift the monitor must see."""
    return [
        " ".join(rng.choice(OK_WORDS + BAD_WORDS, size=40)) + f" @user{i} http://spam.example/{i}"
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def served(ray_cluster, tmp_path_factory) -> dict[str, Any]:
    from ray import serve

    from mlsd_ray.serve.app import run_server

    tmp = tmp_path_factory.mktemp("serve_http")
    rng = np.random.default_rng(0)
    train = pd.DataFrame(
        {
            "text": _texts(rng, OK_WORDS, 300) + _texts(rng, BAD_WORDS, 300),
            "label": [0] * 300 + [1] * 300,
        }
    )
    model = TfidfLogReg(["text"], min_df=1).fit(train[["text"]], train["label"].to_numpy())
    package = save_package(
        model,
        tmp / "package",
        ModelManifest(
            name="tfidf_logreg",
            kind="tfidf_logreg",
            category="binary",
            inputs=[InputSchema(name="text", type="text")],
            classes=["ok", "harmful"],
            # A business threshold far from 0.5, so that labels at 0.5 would differ.
            threshold=THRESHOLD,
            metadata={"version": "test-1"},
        ),
    )
    card = load_card(
        REPO / "systems" / "harmful_content.yaml",
        overrides=[
            f"name={APP}",
            f"deployment.port={free_port()}",
            "deployment.route_prefix=/harmful",
            "deployment.num_cpus_per_replica=0.5",
            "deployment.autoscaling.max_replicas=1",
            f"deployment.max_instances_per_request={MAX_INSTANCES}",
            # Count-based flushes only while serving; the rest is written at shutdown.
            "monitoring.flush_every_n=64",
            "monitoring.flush_every_s=600",
        ],
    )
    workdir = Workdir.of(tmp / "work")
    train_uri = Path(workdir.split_uri(card, "train"))
    train_uri.mkdir(parents=True)
    train.to_parquet(train_uri / "part-0.parquet")

    serve_was_running = bool(serve.status().proxies)
    url = run_server(card, workdir, model_dir=package)
    client = httpx.Client(base_url=url, timeout=60)
    state = {
        "card": card,
        "workdir": workdir,
        "package": package,
        "url": url,
        "client": client,
        "predictor": Predictor(package),
        "rng": rng,
        "served": {},  # request_id -> (instances, predictions)
    }
    yield state
    client.close()
    if APP in serve.status().applications:
        serve.delete(APP)
    if not serve_was_running:
        serve.shutdown()


def _predict(state: dict[str, Any], instances: list[Any], request_id: str | None = None) -> dict:
    headers = {"X-Request-Id": request_id} if request_id else {}
    r = state["client"].post("/predict", json={"instances": instances}, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    state["served"][body["request_id"]] = (instances, body["predictions"])
    return body


def test_url_follows_the_card(served):
    card: DesignCard = served["card"]
    assert served["url"].endswith(f":{card.deployment.port}/harmful")


def test_healthz(served):
    r = served["client"].get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "model_version": "test-1", "model_name": "tfidf_logreg"}


def test_predictions_equal_offline_predictor(served):
    instances: list[Any] = ["you stupid idiot", {"text": "lovely photo, thanks"}, "", "see you"]
    body = _predict(served, instances, request_id="offline-check")
    assert body["model_version"] == "test-1"
    assert body["model_name"] == "tfidf_logreg"
    assert body["request_id"] == "offline-check"
    expected = served["predictor"].predict(instances)
    assert len(body["predictions"]) == len(instances)
    np.testing.assert_allclose(body["predictions"], expected, rtol=0, atol=1e-12)
    assert body["predictions"][0] > 0.5 > body["predictions"][1]
    # Labels at the package's stored threshold (0.2), as the README promises.
    assert body["labels"] == ["harmful" if p >= THRESHOLD else "ok" for p in expected]
    # A small answer: these keys and nothing else.
    assert set(body) == {"predictions", "labels", "model_version", "model_name", "request_id"}


def test_single_model_is_one_deployment(served):
    """No ingress hop for a single model: edge and batched model are one deployment."""
    from ray import serve

    from mlsd_ray.serve.app import SINGLE_NAME

    deployments = serve.status().applications[APP].deployments
    assert set(deployments) == {SINGLE_NAME}


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b'{"instances": ["a", ', 400, "not valid JSON"),
        (b"", 400, "empty"),
        (b'["a"]', 400, "JSON object"),
        (b'{"inputs": ["a"]}', 422, "'instances' is missing"),
        (b'{"instances": "a"}', 422, "must be a list"),
        (b'{"instances": []}', 422, "empty"),
        (b'{"instances": [42]}', 422, "instances[0]"),
        (b'{"instances": [{"text": ["a"]}]}', 422, "instances[0].text"),
        (b'{"instances": [{"txt": "a"}]}', 422, "unknown field"),
        (b'{"instances": [{"text": null}]}', 422, "required"),
        (b'{"instances": ["a","a","a","a","a","a","a","a","a"]}', 422, "at most 8"),
    ],
    ids=[
        "malformed-json",
        "empty-body",
        "not-an-object",
        "missing-instances",
        "instances-not-a-list",
        "empty-list",
        "wrong-instance-type",
        "wrong-field-type",
        "unknown-field",
        "null-field",
        "too-many-instances",
    ],
)
def test_bad_requests_get_4xx_with_a_reason(served, body, status, reason):
    r = served["client"].post(
        "/predict", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and reason in detail
    assert r.headers["x-request-id"] == r.json()["request_id"]


def test_concurrent_requests_are_batched(served):
    before = served["client"].get("/stats").json()
    rng: np.random.Generator = served["rng"]
    texts = _texts(rng, OK_WORDS, 64) + _texts(rng, BAD_WORDS, 64)
    expected = served["predictor"].predict(texts)

    def one(i: int) -> tuple[int, dict]:
        with httpx.Client(base_url=served["url"], timeout=60) as c:
            r = c.post("/predict", json={"instances": [texts[i]]})
            return i, r.json() | {"status": r.status_code}

    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(one, range(len(texts))))
    for i, body in results:
        assert body["status"] == 200, body
        assert body["predictions"] == pytest.approx([expected[i]], abs=1e-12)
        served["served"][body["request_id"]] = ([texts[i]], body["predictions"])

    after = served["client"].get("/stats").json()
    assert after["requests"]["ok"] - before["requests"]["ok"] == len(texts)
    assert after["requests"]["server_error"] == 0
    hist = {int(k): v for k, v in after["batches"]["size_histogram"].items()}
    assert after["batches"]["max_size"] > 1, after
    assert max(hist) <= served["card"].deployment.batching.max_batch_size
    assert after["instances"] >= len(texts)


def test_load_generator_reports_figures(served):
    from mlsd_ray.serve.loadtest import load_test

    result = load_test(served["url"], clients=8, requests=40, max_seconds=60)
    # httpx stops at the budget; wrk (when installed) runs for the time it takes
    assert result["ok"] >= 40 and result["statuses"] == {"200": result["ok"]}
    assert result["requests_per_s"] > 0
    assert result["p50_ms"] <= result["p99_ms"]


def _scrape(port: int) -> dict[str, float]:
    """Prometheus text from Ray's metrics endpoint -> {series with labels: value} of ours."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith(("ray_mlsd_", "ray_serve_")):
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


def _total(scraped: dict[str, float], name: str, **labels: str) -> float:
    want = [f"{k}={v}" for k, v in labels.items()]
    return sum(
        v
        for k, v in scraped.items()
        if k.split("{")[0] == name and all(w in k for w in want) and f"application={APP}" in k
    )


@pytest.mark.slow
def test_prometheus_metrics_move(served):
    """Serve's built-in metrics and the project's own, on Ray's one metrics endpoint."""
    import ray

    port = ray._private.worker.global_worker.node.metrics_export_port
    before = _scrape(port)
    ok_before = _total(before, "ray_mlsd_requests_total", code="200")
    bad_before = _total(before, "ray_mlsd_requests_total", code="422")
    for i in range(6):
        _predict(served, ["you stupid idiot", f"lovely photo {i}"])
    r = served["client"].post("/predict", json={"instances": [{"txt": "a"}]})
    assert r.status_code == 422
    deadline = time.monotonic() + 90  # Ray's agent exports every 10 s or so
    while True:
        now = _scrape(port)
        moved = (
            _total(now, "ray_mlsd_requests_total", code="200") >= ok_before + 6
            and _total(now, "ray_mlsd_requests_total", code="422") >= bad_before + 1
            and _total(now, "ray_mlsd_model_info", model_version="test-1", inference="fp32") == 1
        )
        if moved or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert moved, {k: v for k, v in now.items() if "mlsd_requests" in k}
    # The project's own series: latency histogram, batch sizes, scores, the model version.
    assert _total(now, "ray_mlsd_request_latency_ms_count") >= 7
    assert _total(now, "ray_mlsd_batch_size_count") > _total(before, "ray_mlsd_batch_size_count")
    assert _total(now, "ray_mlsd_instances_total") >= 12
    scores = _total(now, "ray_mlsd_predicted_score_count")
    assert scores - _total(before, "ray_mlsd_predicted_score_count") >= 12
    # A distribution, not only a count: the insults land above 0.5, the friendly posts below.
    bucket = "ray_mlsd_predicted_score_bucket"
    low = _total(now, bucket, le="0.5") - _total(before, bucket, le="0.5")
    assert 0 < low < scores - _total(before, "ray_mlsd_predicted_score_count")
    assert _total(now, "ray_mlsd_model_info", model_version="test-1", inference="fp32") == 1
    # Serve's built-in request counter for the deployment, on the same endpoint.
    assert any(
        k.startswith("ray_serve_deployment_request_counter") and f"application={APP}" in k
        for k in now
    ), sorted({k.split("{")[0] for k in now})


def test_log_and_monitor_after_shutdown(served):
    from ray import serve

    from mlsd_ray.monitor.log import read_prediction_log
    from mlsd_ray.monitor.stage import run_monitor

    card, workdir = served["card"], served["workdir"]
    log_uri = workdir.prediction_log_uri(card)
    # 128 single-instance requests above: at least one count-based flush (every 64) happened.
    assert len(read_prediction_log(log_uri)) >= card.monitoring.flush_every_n

    rng: np.random.Generator = served["rng"]
    for i in range(8):
        _predict(served, _shifted(rng, MAX_INSTANCES), request_id=f"shifted-{i}")

    serve.delete(APP)  # graceful shutdown: the replica flushes what it still holds
    logged = read_prediction_log(log_uri)
    assert {"request_id", "ts", "model_version", "text", "probability"} <= set(logged.columns)
    assert (logged["model_version"] == "test-1").all()
    served_rows = {
        (rid, (inst if isinstance(inst, str) else inst["text"]), p)
        for rid, (instances, preds) in served["served"].items()
        for inst, p in zip(instances, preds, strict=True)
    }
    logged_rows = set(zip(logged["request_id"], logged["text"], logged["probability"], strict=True))
    missing = served_rows - logged_rows
    assert not missing, f"{len(missing)} served predictions are not in the log"

    summary = run_monitor(card, workdir, model_dir=served["package"])
    assert summary["n_current"] == len(logged)
    assert summary["features"]["text.char_length"]["status"] == "alert"
    assert summary["features"]["text.url_share"]["status"] == "alert"
    assert "text.char_length" in summary["drifting"]
    assert Path(summary["report_md"]).is_file() and Path(summary["report_json"]).is_file()
    assert Path(summary["plots"]["text.char_length"]).stat().st_size > 0
    assert workdir.summary_path("monitor").is_file()
