"""The project on a real multi-node Ray cluster: a head and two workers, each in its own network
namespace with its own address and a private tmpfs (tests/multinode.py), token auth on, every
artifact on an S3 server on the bridge. Nothing of the project is changed for it.

The head schedules no work (``--num-cpus=0``, as on a real cluster) and each worker node has one
CPU, so two one-CPU Train workers must land on two different nodes and a Serve replica on a
worker node; the tests check where they ran. Tests run in order on one cluster; the last one
kills a node.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import REPO, fast_overrides
from tests.multinode import NamespaceCluster, NamespacesUnavailable, check_namespaces

pytestmark = [pytest.mark.slow, pytest.mark.integration]

BUCKET = "mlsd-multinode"
CARD = "systems/event_registration.yaml"
SERVE_PORT = 8011
# Two GBDT workers and two DDP workers, small enough for seconds of training.
CANDIDATES = (
    "models.candidates=["
    "{name: xgboost, kind: xgboost, params: {n_estimators: 40, max_depth: 3, learning_rate: 0.1},"
    " trainer: {num_workers: 2}},"
    "{name: mlp, kind: mlp, params: {hidden: [16], epochs: 3, patience: 0, num_workers: 2}}]"
)


@pytest.fixture(scope="module")
def cluster(shared_datasets: Path) -> Iterator[NamespaceCluster]:
    try:
        check_namespaces()
    except NamespacesUnavailable as why:
        pytest.skip(f"no multi-node cluster on this machine: {why}")
    with NamespaceCluster(workers=2, head_cpus=0, worker_cpus=1) as c:
        fs = s3(c)
        fs.mkdir(BUCKET)
        fs.put(str(shared_datasets / "ad_click" / "online_shoppers_dev.csv"), f"{BUCKET}/data/")
        yield c


def s3(c: NamespaceCluster) -> Any:
    import s3fs

    return s3fs.S3FileSystem(
        key="testing", secret="testing", client_kwargs={"endpoint_url": c.s3_endpoint}
    )


def tabular_args(workdir: str) -> list[str]:
    args = ["--card", CARD, "--workdir", workdir]
    for o in (
        f"data.sources.0.uri=s3://{BUCKET}/data/online_shoppers_dev.csv",
        CANDIDATES,
        "evaluation.gate.min_value=0.5",
        "evaluation.slices=[]",
    ):
        args += ["--set", o]
    return args


def job_failed(c: NamespaceCluster, proc: Any) -> str:
    logs = "\n".join(f"{n.name}: {n.log.read_text(errors='replace')[-800:]}" for n in c.nodes)
    return f"{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}\n{logs}"


@pytest.fixture(scope="module")
def pipeline_job(cluster: NamespaceCluster) -> dict[str, Any]:
    """``ray job submit`` of jobs/pipeline.py through the head's dashboard, workdir on S3."""
    workdir = f"s3://{BUCKET}/event_registration"
    proc = cluster.submit(["python", "jobs/pipeline.py", *tabular_args(workdir)], REPO)
    assert proc.returncode == 0, job_failed(cluster, proc)
    assert "succeeded" in proc.stdout
    return {"workdir": workdir}


def test_submitted_pipeline_puts_every_artifact_on_s3(
    cluster: NamespaceCluster, pipeline_job: dict[str, Any]
) -> None:
    fs = s3(cluster)
    prefix = pipeline_job["workdir"][len("s3://") :]
    summary = json.loads(fs.cat(f"{prefix}/pipeline_summary.json"))
    assert set(summary["seconds"]) == {"etl", "train", "evaluate", "register"}
    assert summary["register"]["registered_version"] == "1"
    keys = fs.find(prefix)
    for part in ("data/manifest.json", "mlflow.db", "_mlsd_index.json"):
        assert f"{prefix}/{part}" in keys, f"{part} not in S3: {keys[:40]}"
    for folder in ("models/xgboost/", "models/mlp/", "ray_results/", "mlartifacts/"):
        assert any(k.startswith(f"{prefix}/{folder}") for k in keys), f"no {folder} in S3"
    # The registry in the bucket answers from this host, which shares no disk with the nodes.
    out = cluster_cli(cluster, ["registry", CARD, "--workdir", pipeline_job["workdir"]])
    assert "champion" in out, out[-2000:]


def cluster_cli(c: NamespaceCluster, args: list[str]) -> str:
    import subprocess
    import sys

    env = {**c.env(), "PYTHONPATH": str(REPO), "MLSD_CACHE_DIR": f"/tmp/{uuid.uuid4().hex}"}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "mlsd_ray.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO,
        )
    finally:
        shutil.rmtree(env["MLSD_CACHE_DIR"], ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_train_workers_ran_on_two_different_nodes(
    cluster: NamespaceCluster, pipeline_job: dict[str, Any]
) -> None:
    # One placement group per Ray Train run: xgboost (2 workers), the mlp's DDP (2 workers).
    runs: dict[str, list[str]] = {}
    for a in cluster.actors("RayTrainWorker"):
        runs.setdefault(a["placement_group_id"], []).append(cluster.node_ip_of(a["node_id"]))
    assert len(runs) >= 2, runs
    for ips in runs.values():
        assert sorted(ips) == [cluster.nodes[1].ip, cluster.nodes[2].ip], runs


def test_replica_on_a_worker_node_answers_through_the_head(
    cluster: NamespaceCluster, pipeline_job: dict[str, Any], tmp_path: Path, monkeypatch
) -> None:
    workdir = pipeline_job["workdir"]
    sets = ["deployment.host=0.0.0.0", f"deployment.port={SERVE_PORT}", "deployment.proxy=auto"]
    args = ["-m", "mlsd_ray.cli", "serve", CARD, "--workdir", workdir]
    for o in sets:
        args += ["--set", o]
    job = f"mn-serve-{uuid.uuid4().hex[:8]}"
    submit = cluster.submit_argv(["python", *args], REPO)
    submit[3:3] = ["--no-wait", "--submission-id", job]
    import subprocess

    subprocess.run(submit, env=cluster.env(), check=True, capture_output=True, timeout=300)
    try:
        rows = _rows(3)
        url = f"http://{cluster.head.ip}:{SERVE_PORT}/predict"
        body = _wait_answer(cluster, job, url, rows)
        replicas = [
            a
            for a in cluster.actors()
            if a["class_name"].startswith("ServeReplica") and a["state"] == "ALIVE"
        ]
        assert replicas, "no live Serve replica"
        worker_ips = {n.ip for n in cluster.nodes[1:]}
        assert {cluster.node_ip_of(r["node_id"]) for r in replicas} <= worker_ips
        # The same champion, fetched from the S3 registry on this host, predicts the same.
        for k, v in cluster.env().items():
            if k.startswith("AWS_"):
                monkeypatch.setenv(k, v)
        monkeypatch.setenv("MLSD_CACHE_DIR", str(tmp_path / "cache"))
        from mlsd_ray.predict import Predictor
        from mlsd_ray.registry import fetch_model
        from mlsd_ray.spec import load_card
        from mlsd_ray.workspace import Workdir

        card = load_card(REPO / CARD)
        _, package = fetch_model(card, Workdir.for_card(card, workdir))
        expected = Predictor(package).predict(rows)
        assert body["predictions"] == pytest.approx(expected, abs=1e-9)
    finally:
        _stop_serving(cluster, job)


def _rows(n: int) -> list[dict[str, Any]]:
    import pandas as pd

    frame = pd.read_csv(REPO.parent / "shared/datasets/ad_click/online_shoppers_dev.csv", nrows=n)
    return json.loads(frame.drop(columns=["Revenue"]).to_json(orient="records"))


def _wait_answer(c: NamespaceCluster, job: str, url: str, rows: list[Any]) -> dict[str, Any]:
    data = json.dumps({"instances": rows}).encode()
    deadline = time.time() + 300
    last = ""
    while time.time() < deadline:
        status = c.api(f"/api/jobs/{job}")["status"]
        if status in ("FAILED", "STOPPED", "SUCCEEDED"):
            pytest.fail(
                f"serve job ended {status}: {c.api(f'/api/jobs/{job}/logs')['logs'][-3000:]}"
            )
        try:
            req = urllib.request.Request(
                url, data=data, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(req, timeout=30) as resp:
                return dict(json.loads(resp.read()))
        except OSError as err:
            last = str(err)
        time.sleep(3)
    pytest.fail(f"no answer at {url}: {last}")


def _stop_serving(c: NamespaceCluster, job: str) -> None:
    """Stop the job and the app: its replica holds a worker node's only CPU."""
    import subprocess

    bin_dir = Path(c.env()["PATH"].split(":")[0])
    for argv in (
        [str(bin_dir / "ray"), "job", "stop", "--address", c.dashboard, job],
        [str(bin_dir / "serve"), "shutdown", "-y", "-a", c.dashboard],
    ):
        subprocess.run(argv, env=c.env(), capture_output=True, timeout=180)


def test_lost_node_mid_training_resumes_from_checkpoint(cluster: NamespaceCluster) -> None:
    """SIGKILL the node of the only Train worker once a checkpoint is in S3; Ray Train restarts
    the worker on the other node from that checkpoint and the pipeline finishes."""
    import subprocess

    workdir = f"s3://{BUCKET}/harmful_content"
    overrides = [o for o in fast_overrides(port=SERVE_PORT) if "max_steps" not in o] + [
        "models.candidates.0.trainer.epochs=20",
        "models.candidates.0.trainer.max_steps=200",
        "models.candidates.0.trainer.checkpoint_every_steps=20",
        "models.candidates.0.trainer.num_workers=1",
        "models.candidates.0.trainer.max_failures=2",
    ]
    entry = [
        "python",
        "jobs/pipeline.py",
        "--card",
        "systems/harmful_content.yaml",
        "--workdir",
        workdir,
    ]
    for o in overrides:
        entry += ["--set", o]
    job = f"mn-kill-{uuid.uuid4().hex[:8]}"
    submit = cluster.submit_argv(entry, REPO)
    submit[3:3] = ["--no-wait", "--submission-id", job]
    subprocess.run(submit, env=cluster.env(), check=True, capture_output=True, timeout=300)
    fs = s3(cluster)
    prefix = workdir[len("s3://") :]
    deadline = time.time() + 600
    victim = None
    while victim is None and time.time() < deadline:
        status = cluster.api(f"/api/jobs/{job}")["status"]
        assert status in ("PENDING", "RUNNING"), _job_logs(cluster, job)
        checkpoints = [k for k in _find(fs, f"{prefix}/ray_results") if "/checkpoint_" in k]
        live = [a for a in cluster.actors("RayTrainWorker") if a["state"] == "ALIVE"]
        if checkpoints and live:
            ip = cluster.node_ip_of(live[0]["node_id"])
            victim = next(n for n in cluster.nodes if n.ip == ip)
        time.sleep(1)
    assert victim is not None and victim is not cluster.head, "no checkpoint before the deadline"
    victim.kill()
    # Where Train workers run after the kill, seen while they live (the GCS forgets the actors
    # of a finished job).
    resumed_on: set[str] = set()
    while time.time() < deadline:
        status = cluster.api(f"/api/jobs/{job}")["status"]
        if status not in ("PENDING", "RUNNING"):
            break
        live = [a for a in cluster.actors("RayTrainWorker") if a["state"] == "ALIVE"]
        resumed_on |= {cluster.node_ip_of(a["node_id"]) for a in live}
        time.sleep(1)
    assert status == "SUCCEEDED", _job_logs(cluster, job)
    # The transformer's package records the step its last (resumed) run started from.
    manifests = [
        json.loads(fs.cat(k))
        for k in _find(fs, f"{prefix}/models")
        if k.endswith("/mlsd_model.json")
    ]
    resumed = _values(manifests, "resumed_from_step")
    assert resumed and max(resumed) > 0, manifests
    assert resumed_on - {victim.ip}, f"no Train worker ran after the kill: {resumed_on}"


def _find(fs: Any, path: str) -> list[str]:
    try:
        return list(fs.find(path, refresh=True))
    except FileNotFoundError:
        return []


def _values(tree: Any, key: str) -> list[Any]:
    if isinstance(tree, dict):
        here = [tree[key]] if key in tree else []
        return here + [v for x in tree.values() for v in _values(x, key)]
    if isinstance(tree, list):
        return [v for x in tree for v in _values(x, key)]
    return []


def _job_logs(c: NamespaceCluster, job: str) -> str:
    try:
        return str(c.api(f"/api/jobs/{job}/logs")["logs"])[-4000:]
    except OSError as err:
        return f"(no logs: {err})"
