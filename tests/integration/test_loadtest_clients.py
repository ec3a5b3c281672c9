"""The load generator's two clients (wrk and httpx) against a real HTTP server on loopback.

The server is a small FastAPI app under uvicorn in a thread: it records every body it gets and
answers 200, or 400 for an instance "bad". Both clients must count the same way, send the
bodies they were given, respect the request budget, and report a server that is not there.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mlsd_ray.errors import ServiceError
from mlsd_ray.serve import wrk
from mlsd_ray.serve.loadtest import load_test
from tests.conftest import free_port

pytestmark = pytest.mark.integration

needs_wrk = pytest.mark.skipif(
    not wrk.available(), reason="wrk is not installed (apt-get install wrk; .ci/run does)"
)


@pytest.fixture(scope="module")
def server() -> Iterator[dict[str, Any]]:
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    seen: Counter[str] = Counter()
    app = FastAPI()

    @app.post("/predict")
    @app.post("/app/prefix/predict")  # a route prefix, as Serve gives each app
    def predict(body: dict[str, Any]) -> Any:
        for inst in body["instances"]:
            seen[str(inst)] += 1
        if "bad" in body["instances"]:
            return JSONResponse({"detail": "bad instance"}, status_code=400)
        return {"scores": [0.5] * len(body["instances"])}

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.post(f"{url}/predict", json={"instances": ["warm"]}, timeout=2)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield {"url": url, "seen": seen}
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.mark.parametrize("client", ["httpx", pytest.param("wrk", marks=needs_wrk)])
def test_budget_bodies_and_counts(server: dict[str, Any], client: str) -> None:
    server["seen"].clear()
    instances = [f"post {i}" for i in range(10)]
    r = load_test(server["url"], instances, clients=4, requests=120, max_seconds=30, client=client)
    assert r["statuses"] == {"200": r["ok"]}
    if client == "httpx":  # stops at the budget
        assert r["ok"] == 120
    else:  # runs for the time the budget takes at the probed rate, at least 2 s, at most 30
        assert r["ok"] >= 120 and 1.9 <= r["seconds"] <= 10
    assert r["requests_per_s"] > 0 and 0 < r["p50_ms"] <= r["p99_ms"]
    assert set(server["seen"]) == set(instances)  # every body sent, nothing else
    assert sum(server["seen"].values()) >= r["ok"]


@pytest.mark.parametrize("client", ["httpx", pytest.param("wrk", marks=needs_wrk)])
def test_client_errors_are_counted_by_code(server: dict[str, Any], client: str) -> None:
    r = load_test(server["url"], ["fine", "bad"], clients=2, requests=40, client=client)
    assert set(r["statuses"]) == {"200", "400"}
    assert r["ok"] == r["statuses"]["200"]
    # the bodies alternate: as many of each, give or take the requests in flight at the end
    assert abs(r["statuses"]["200"] - r["statuses"]["400"]) <= 4


@pytest.mark.parametrize("client", ["httpx", pytest.param("wrk", marks=needs_wrk)])
def test_a_route_prefix_in_the_url_is_kept(server: dict[str, Any], client: str) -> None:
    r = load_test(f"{server['url']}/app/prefix/", clients=2, requests=20, client=client)
    assert r["ok"] >= 20 and r["statuses"] == {"200": r["ok"]}


def test_a_server_that_is_not_there() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    r = load_test(url, clients=2, requests=10, max_seconds=1, client="httpx")
    assert r["ok"] == 0 and r["statuses"] == {"-1": 10}
    if wrk.available():  # wrk does not start without a first connection: a clear error
        with pytest.raises(ServiceError, match=f"wrk failed against {url}.*refused"):
            load_test(url, clients=2, requests=10, max_seconds=1, client="wrk")


def test_retries_stay_on_httpx(server: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="same id"):
        load_test(server["url"], clients=1, requests=2, retries=1, client="wrk")
    r = load_test(server["url"], clients=2, requests=10, retries=1)  # auto: httpx
    assert r["ok"] == 10 and len(r["timeline"]) == 10 and "client" not in r
