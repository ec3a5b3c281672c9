"""Rollouts and robustness of the served graph, over real HTTP on one Serve app.

Two registry versions of a tiny TF-IDF model (champion = 1, challenger = 2). The app is
redeployed in place between tests (canary -> shadow -> plain -> overloaded settings), which
is itself what a rollout does: every redeploy must keep answering.
"""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from mlsd_ray import registry
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard, load_card
from tests.conftest import REPO, free_port
from tests.integration.serve_fixtures import tfidf_package

pytestmark = pytest.mark.integration

APP = "serve_rollout_test"
CARD = REPO / "systems" / "harmful_content.yaml"
BASE = [
    f"name={APP}",
    "deployment.route_prefix=/rollout",
    "deployment.num_cpus_per_replica=0.25",
    "deployment.autoscaling.min_replicas=1",
    "deployment.autoscaling.max_replicas=1",
    "deployment.max_instances_per_request=8",
    "monitoring.flush_every_n=1000",
    "monitoring.flush_every_s=0.5",
]


def _card(*overrides: str) -> DesignCard:
    return load_card(CARD, overrides=[*BASE, *overrides])


@pytest.fixture(scope="module")
def rollout(ray_cluster, tmp_path_factory) -> Any:
    from ray import serve

    from mlsd_ray.serve.app import run_server

    tmp = tmp_path_factory.mktemp("serve_rollout")
    workdir = Workdir.of(tmp / "work")
    card = _card(f"deployment.port={free_port()}")
    for seed in (0, 1):  # versions 1 and 2
        package = tfidf_package(tmp / f"pkg{seed}", seed=seed)
        registry.log_and_register(card, workdir, "tfidf_logreg", package, {}, {"roc_auc": 0.9})
    registry.set_alias(card, workdir, registry.CHAMPION, "1")
    registry.set_alias(card, workdir, registry.CHALLENGER, "2")

    serve_was_running = bool(serve.status().proxies)
    url = run_server(
        _card(
            f"deployment.port={card.deployment.port}",
            "deployment.rollout.mode=canary",
            "deployment.rollout.canary_weight=0.3",
        ),
        workdir,
    )
    client = httpx.Client(base_url=url, timeout=60)
    yield {"workdir": workdir, "url": url, "client": client, "port": card.deployment.port}
    client.close()
    if APP in serve.status().applications:
        serve.delete(APP)
    if not serve_was_running:
        serve.shutdown()


def _redeploy(state: dict[str, Any], *overrides: str) -> DesignCard:
    from ray import serve

    from mlsd_ray.serve.app import build_application

    card = _card(f"deployment.port={state['port']}", *overrides)
    serve.run(build_application(card, state["workdir"]), name=APP, route_prefix="/rollout")
    return card


def _post(client: httpx.Client, text: str, request_id: str | None = None) -> httpx.Response:
    headers = {"X-Request-Id": request_id} if request_id else {}
    return client.post("/predict", json={"instances": [text]}, headers=headers)


def test_autoscaling_and_limits_reach_serve(rollout):
    from ray.serve.context import _get_global_client

    card = _card()
    client = _get_global_client()
    info, _ = client.get_deployment_info("ModelServer", APP)  # what the controller runs
    cfg = info.deployment_config
    auto = cfg.autoscaling_config
    a = card.deployment.autoscaling
    assert (auto.min_replicas, auto.max_replicas) == (a.min_replicas, a.max_replicas)
    assert auto.target_ongoing_requests == a.target_ongoing_requests
    assert (auto.upscale_delay_s, auto.downscale_delay_s) == (
        a.upscale_delay_s,
        a.downscale_delay_s,
    )
    assert cfg.max_ongoing_requests == card.deployment.effective_max_ongoing_requests
    assert cfg.max_queued_requests == card.deployment.max_queued_requests
    assert cfg.user_config["max_batch_size"] == card.deployment.batching.max_batch_size


def test_canary_weight_is_respected(rollout):
    n = 200

    def one(i: int) -> tuple[int, str, str]:
        r = _post(rollout["client"], f"see you at the game {i}")
        body = r.json()
        return r.status_code, body["route"], body["model_version"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(one, range(n)))
    assert {s for s, _, _ in results} == {200}
    # The route decides the version: challenger answers come from version 2 only.
    assert all((route == "challenger") == (version == "2") for _, route, version in results)
    share = sum(route == "challenger" for _, route, _ in results) / n
    assert abs(share - 0.3) < 0.1, share  # 0.3 +- 3.1 standard deviations at n = 200


def test_shadow_answers_are_logged_not_returned(rollout):
    from mlsd_ray.monitor.log import read_prediction_log

    card = _redeploy(rollout, "deployment.rollout.mode=shadow")
    ids = [f"shadow-{i}" for i in range(12)]
    for rid in ids:
        r = _post(rollout["client"], "you stupid idiot", request_id=rid)
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["route"], body["model_version"]) == ("champion", "1")
        assert set(body) == {
            "predictions",
            "labels",
            "model_version",
            "model_name",
            "route",
            "request_id",
        }
    shadow_uri = rollout["workdir"].resolve(card.deployment.rollout.shadow_log_uri)
    deadline = time.monotonic() + 30
    logged: Any = None
    while time.monotonic() < deadline:  # the challenger's logger flushes every 0.5 s
        try:
            logged = read_prediction_log(shadow_uri)
            if set(ids) <= set(logged["request_id"]):
                break
        except Exception:
            pass
        time.sleep(0.5)
    assert logged is not None and set(ids) <= set(logged["request_id"])
    assert (logged[logged["request_id"].isin(ids)]["model_version"] == "2").all()
    assert (logged[logged["request_id"].isin(ids)]["arm"] == "shadow").all()
    main = read_prediction_log(rollout["workdir"].prediction_log_uri(card))
    assert (main[main["request_id"].isin(ids)]["model_version"] == "1").all()


@pytest.mark.slow
def test_promote_and_rollback_follow_the_alias_without_failures(rollout):
    from mlsd_ray.serve import rollout as ops

    card = _redeploy(rollout, "deployment.rollout.mode=none")
    seen: list[tuple[float, int, str]] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=rollout["url"], timeout=60) as c:
            while not stop.is_set():
                try:
                    r = _post(c, "lovely photo thanks")
                    version = r.json().get("model_version", "") if r.status_code == 200 else ""
                    seen.append((time.monotonic(), r.status_code, version))
                except httpx.HTTPError:
                    seen.append((time.monotonic(), -1, ""))
                time.sleep(0.02)

    def settle_on(version: str) -> float:
        """Wait until the endpoint answers with ``version`` five times in a row."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            recent = [v for _, s, v in seen[-5:]]
            if len(recent) == 5 and set(recent) == {version}:
                return time.monotonic()
            time.sleep(0.2)
        raise AssertionError(f"endpoint never settled on version {version}: {seen[-5:]}")

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        settle_on("1")
        assert ops.promote(card, rollout["workdir"], "2")["version"] == "2"
        assert registry.get_alias(card, rollout["workdir"]).version == "2"  # type: ignore[union-attr]
        settle_on("2")
        health = rollout["client"].get("/healthz").json()
        assert health["model_version"] == "2"
        # Rollback through the CLI, as an operator would (in-process: same Ray).
        from mlsd_ray.cli import app

        sets = [x for o in [*BASE, f"deployment.port={rollout['port']}"] for x in ("--set", o)]
        cli = CliRunner().invoke(
            app,
            ["rollback", str(CARD), "--workdir", str(rollout["workdir"].root), *sets, "--reload"],
        )
        assert cli.exit_code == 0, cli.output
        assert registry.get_alias(card, rollout["workdir"]).version == "1"  # type: ignore[union-attr]
        settle_on("1")
        assert rollout["client"].get("/healthz").json()["model_version"] == "1"
    finally:
        stop.set()
        for t in threads:
            t.join()
    statuses = [s for _, s, _ in seen]
    assert len(statuses) > 20 and set(statuses) == {200}, {s for s in statuses if s != 200}
    versions = [v for _, _, v in seen]
    assert "2" in versions and versions[-1] == "1"


@pytest.mark.slow
def test_fuzzed_requests_never_get_a_5xx(rollout, tmp_path):
    """Schemathesis against the live OpenAPI schema: every generated request gets < 500."""
    before = rollout["client"].get("/stats").json()["requests"]["server_error"]
    url = rollout["url"]
    cmd = [
        str(REPO / ".venv" / "bin" / "schemathesis"),
        "run",
        f"{url}/openapi.json",
        "--url",
        url,
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "15",
        "--seed",
        "7",
        "--workers",
        "1",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-time",
        "30",
        "--no-shrink",
        "--report",
        "ndjson",
        "--report-dir",
        str(tmp_path),
    ]
    if not (REPO / ".venv" / "bin" / "schemathesis").exists():
        cmd[0:1] = [sys.executable, "-m", "schemathesis.cli"]
    # cwd: schemathesis keeps a .schemathesis/ cache in the folder it runs in.
    work = tmp_path / "st"
    work.mkdir()
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=work)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    events = next(p for p in tmp_path.iterdir() if p.is_file()).read_text()
    assert "/predict" in events  # the predict operation was exercised
    stats = rollout["client"].get("/stats").json()["requests"]
    assert stats["server_error"] == before
    assert stats["client_error"] > 0  # malformed bodies were generated and refused with 4xx


@pytest.mark.slow
def test_a_burst_is_shed_with_503_not_queued(rollout):
    # One request at a time in the model, each batch waiting 0.3 s, two queued at most.
    _redeploy(
        rollout,
        "deployment.max_ongoing_requests=1",
        "deployment.max_queued_requests=2",
        "deployment.batching.max_batch_size=4",
        "deployment.batching.batch_wait_timeout_s=0.3",
    )
    assert _post(rollout["client"], "warm up").status_code == 200

    def one(i: int) -> httpx.Response:
        with httpx.Client(base_url=rollout["url"], timeout=60) as c:
            return _post(c, f"burst {i}")

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(one, range(32)))
    elapsed = time.monotonic() - t0
    codes = [r.status_code for r in answers]
    assert set(codes) <= {200, 503}, codes
    shed = [r for r in answers if r.status_code == 503]
    assert shed and codes.count(200) >= 1, codes
    for r in shed:  # the ingress (model queue full) or Serve's proxy (ingress queue full)
        assert "overloaded" in r.text or "backpressure" in r.text, r.text
        assert r.headers.get("retry-after") == "1"
    # Unbounded queueing would take 32 x 0.3 s here.
    assert elapsed < 32 * 0.3, elapsed


@pytest.mark.slow
def test_a_slow_answer_times_out_with_504(rollout):
    _redeploy(
        rollout,
        "deployment.request_timeout_s=0.2",
        "deployment.batching.max_batch_size=8",
        "deployment.batching.batch_wait_timeout_s=1.0",
    )
    r = _post(rollout["client"], "a lone request waits for a batch that never fills")
    assert r.status_code == 504, r.text
    assert "request_timeout_s" in r.json()["detail"]
