"""Serve a tiny model behind a chosen proxy in a fresh local Ray, answer, shut down; run as a
child process by test_serve_proxy.py (the proxy is fixed when Ray starts, and the test
session's own Ray has the default one).

    python -m tests.integration.proxy_child PROXY PORT STATS_PORT METRICS_PORT TMPDIR

Prints one JSON line: the answer, the listeners of our haproxy processes, and how many of them
were left after shutdown.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx


def _our_haproxy(run_dir: str) -> list[object]:
    import psutil

    from mlsd_ray.serve.proxy import is_ours

    return [
        p
        for p in psutil.process_iter(["pid", "name", "cmdline"])
        if is_ours(p.info.get("name"), p.info.get("cmdline"), run_dir)
    ]


def main() -> None:
    import os

    import psutil
    import ray
    from ray import serve

    from mlsd_ray.runtime import ensure_ray
    from mlsd_ray.serve import proxy
    from mlsd_ray.serve.app import run_server
    from mlsd_ray.settings import Workdir
    from mlsd_ray.spec import load_card
    from tests.conftest import REPO
    from tests.integration.serve_fixtures import tfidf_package

    mode, port, stats_port, metrics_port, tmp = sys.argv[1:6]
    card = load_card(
        REPO / "systems" / "harmful_content.yaml",
        overrides=[
            "name=proxy_test",
            f"deployment.proxy={mode}",
            f"deployment.port={port}",
            # "0": the card's default (a free port chosen when Ray starts)
            *([f"deployment.haproxy.stats_port={stats_port}"] if stats_port != "0" else []),
            *([f"deployment.haproxy.metrics_port={metrics_port}"] if metrics_port != "0" else []),
            "deployment.num_cpus_per_replica=0.25",
            "deployment.autoscaling.max_replicas=1",
        ],
    )
    package = tfidf_package(Path(tmp) / "pkg")
    proxy.prepare(card)  # what run_server does first; here so that Ray's start can be retried
    for attempt in range(3):  # Ray's GCS can time out at start on a loaded machine
        try:
            ensure_ray()
            break
        except Exception:
            ray.shutdown()
            if attempt == 2:
                raise
    url = run_server(card, Workdir.of(Path(tmp) / "work"), model_dir=package)
    status, body, deadline = 0, "", time.monotonic() + 120
    while time.monotonic() < deadline:  # routes reach the proxy a moment after serve.run
        try:
            r = httpx.post(f"{url}/predict", json={"instances": ["you idiot"]}, timeout=30)
            status, body = r.status_code, r.text
            if status == 200:
                break
        except httpx.HTTPError as err:
            body = str(err)
        time.sleep(0.5)
    run_dir = os.environ.get(proxy.RUN_DIR_ENV, "")
    listeners = sorted(
        {
            f"{c.laddr.ip}:{c.laddr.port}"
            for p in (_our_haproxy(run_dir) if run_dir else [])
            for c in psutil.Process(p.pid).net_connections(kind="inet")  # type: ignore[attr-defined]
            if c.status == psutil.CONN_LISTEN
        }
    )
    # Every other listener of this process and the Ray it started, off loopback, except the
    # replicas' inter-deployment gRPC socket on [::] (Ray's hard-coded bind; see
    # test_s3_workdir's listener test, which names the same exception).
    me = psutil.Process()
    mine = {me.pid} | {c.pid for c in me.children(recursive=True)}
    loopback = ("127.0.0.1", "::1", "::ffff:127.0.0.1")
    open_ = []
    for c in psutil.net_connections(kind="inet"):
        if c.status != psutil.CONN_LISTEN or c.pid not in mine or c.laddr.ip in loopback:
            continue
        try:
            name = " ".join(psutil.Process(c.pid).cmdline())[:80]  # name() is cut at 15
        except psutil.Error:
            name = "?"
        if not (name.startswith("ray::ServeReplica") and c.laddr.ip in ("::", "0.0.0.0")):
            open_.append(f"{c.laddr.ip}:{c.laddr.port} {name}")
    serve.shutdown()
    ray.shutdown()
    proxy.cleanup()
    left = len(_our_haproxy(run_dir)) if run_dir else 0
    out = {"status": status, "body": body, "listeners": listeners, "left": left, "open": open_}
    sys.stdout.write("RESULT " + json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
