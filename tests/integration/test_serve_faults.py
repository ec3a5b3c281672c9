"""A model replica killed (SIGKILL) during a bounded load test: no client sees a failure.

The single-model graph (edge + model in one deployment) with two replicas of a tiny TF-IDF
package. Clients retry a 5xx or a dropped connection with the same request id (the load
generator's retries); one replica is killed a few seconds in. Serve restarts it; the test asserts
zero failed requests and that latency comes back (a generous bound, no speed figure).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import httpx
import numpy as np
import pytest

from mlsd_ray.settings import Workdir
from mlsd_ray.spec import load_card
from tests.conftest import REPO, free_port
from tests.integration.serve_fixtures import tfidf_package

pytestmark = [pytest.mark.integration, pytest.mark.slow]
APP = "serve_faults_test"
LOAD_S = 25.0
KILL_AT_S = 5.0


@pytest.fixture(scope="module")
def served(ray_cluster, tmp_path_factory) -> Any:
    from ray import serve

    from mlsd_ray.serve.app import run_server

    tmp = tmp_path_factory.mktemp("serve_faults")
    card = load_card(
        REPO / "systems" / "harmful_content.yaml",
        overrides=[
            f"name={APP}",
            f"deployment.port={free_port()}",
            "deployment.route_prefix=/faults",
            "deployment.num_cpus_per_replica=0.25",
            "deployment.autoscaling.min_replicas=2",
            "deployment.autoscaling.max_replicas=2",
            "deployment.health_check_period_s=1",
            "monitoring.flush_every_s=600",
        ],
    )
    package = tfidf_package(tmp / "pkg")
    serve_was_running = bool(serve.status().proxies)
    url = run_server(card, Workdir.of(tmp / "work"), model_dir=package)
    yield {"url": url}
    if APP in serve.status().applications:
        serve.delete(APP)
    if not serve_was_running:
        serve.shutdown()


def _replica_pids(url: str, want: int = 2, timeout_s: float = 60) -> set[int]:
    """The model replicas' process ids, as their /stats report them (requests spread over
    both replicas, so a few calls see each)."""
    pids: set[int] = set()
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url, timeout=30) as c:
        while len(pids) < want and time.monotonic() < deadline:
            r = c.get("/stats")
            if r.status_code == 200:
                pids.add(int(r.json()["pid"]))
    assert len(pids) == want, pids
    return pids


def test_replica_kill_under_load_fails_no_request(served):
    from mlsd_ray.serve.loadtest import load_test

    url = served["url"]
    before = _replica_pids(url)
    victim = min(before)
    result: dict[str, Any] = {}

    def load() -> None:
        result.update(load_test(url, clients=4, requests=100_000, max_seconds=LOAD_S, retries=8))

    thread = threading.Thread(target=load)
    thread.start()
    time.sleep(KILL_AT_S)
    os.kill(victim, signal.SIGKILL)
    killed_at = KILL_AT_S
    thread.join(timeout=LOAD_S + 120)
    assert not thread.is_alive()

    assert result["requests"] > 20, result
    # Zero failed requests: every request got its 200, some of them after a retry.
    assert result["statuses"] == {"200": result["requests"]}, result["statuses"]
    # p99 comes back: the last 5 s of the load answer within a generous bound.
    timeline = np.asarray(result["timeline"])
    tail = timeline[timeline[:, 0] >= timeline[:, 0].max() - 5.0, 1]
    assert tail.size and float(np.percentile(tail, 99)) < 5000, tail
    after_kill = timeline[timeline[:, 0] >= killed_at]
    slow = after_kill[after_kill[:, 1] > 5 * max(1.0, float(np.percentile(timeline[:, 1], 50)))]
    recovery_s = float(slow[:, 0].max() - killed_at) if slow.size else 0.0
    print(
        f"replica kill: {result['requests']} requests, {result['retried']} retries, 0 failed, "
        f"p99 {result['p99_ms']} ms, slow answers ended {recovery_s:.1f} s after the kill"
    )
    # Serve replaced the killed replica.
    after = _replica_pids(url)
    assert victim not in after and len(after) == 2
