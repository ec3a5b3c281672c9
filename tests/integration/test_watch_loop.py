"""The watch loop end to end on its real stages (``watch_loop.default_stages``).

A small tabular card (logreg on three inputs, 150 training rows) is trained and served over
real HTTP. Then the world changes: ``x2`` moves (feature drift) and the label flips sign on
``x1`` (concept drift). Traffic goes to the app; its labels arrive later as JSON-lines files
(a file feedback source). The loop sees drift in three windows in a row, retrains on the card's
data plus the fresh labelled window (ETL, train, evaluate, gate against the champion),
deploys the challenger as a canary with the card's weight, compares the arms' right decisions
with the two-proportion test and promotes. The decision log holds every step, the champion
alias ends on the new version, and the loop's Prometheus exporter shows each step.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from mlsd_ray import pipeline, registry
from mlsd_ray.monitor import watch
from mlsd_ray.monitor.metrics import MonitorMetrics
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard, card_from_dict
from mlsd_ray.watch_loop import default_stages
from tests.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WINDOW_S = 4.0


def _rows(rng: np.random.Generator, n: int, drifted: bool) -> pd.DataFrame:
    x1 = rng.normal(0, 1, n)
    x2 = rng.normal(3 if drifted else 0, 1, n)
    c = rng.choice(["a", "b", "c"], n)
    label = (x1 < 0) if drifted else (x1 > 0)
    return pd.DataFrame({"x1": x1, "x2": x2, "c": c, "label": label.astype(int)})


def _card(tmp: Path, feedback: Path) -> DesignCard:
    return card_from_dict(
        {
            "name": f"watch_e2e_{uuid.uuid4().hex[:6]}",
            "requirements": {"business_objective": "the watch loop, end to end"},
            "framing": {
                "ml_objective": "binary",
                "category": "binary",
                "inputs": [
                    {"name": "x1", "type": "float"},
                    {"name": "x2", "type": "float"},
                    {"name": "c", "type": "category"},
                ],
                "output": "p",
                "label": {"column": "label", "mapping": {"0": 0, "1": 1}},
            },
            "data": {"sources": [{"uri": str(tmp / "train.csv")}]},
            "models": {
                "baseline": {"name": "majority", "kind": "majority"},
                "candidates": [{"name": "logreg", "kind": "logreg"}],
            },
            "evaluation": {"gate": {"metric": "roc_auc", "min_value": 0.6}},
            "deployment": {
                "port": free_port(),
                "route_prefix": "/watch",
                "num_cpus_per_replica": 0.25,
                "autoscaling": {"min_replicas": 1, "max_replicas": 1},
                "rollout": {"canary_weight": 0.5},
            },
            "monitoring": {
                "flush_every_n": 1000,
                "flush_every_s": 0.5,
                "loop": {
                    "feedback": {"sources": [{"kind": "file", "uri": str(feedback)}]},
                    "drift": {"window_s": WINDOW_S, "min_rows": 30},
                    "watch": {
                        "sustain_windows": 3,
                        "min_interval_s": 0,
                        "min_labels": 40,
                        # the label flips: old rows would teach the old answer
                        "retrain_on": "fresh_window",
                        "poll_s": 1,
                    },
                },
            },
        }
    )


class Traffic:
    """Drifted requests over HTTP, one instance each, from a background thread; their labels
    are written afterwards (delayed) as JSON lines in the feedback folder."""

    def __init__(self, url: str, feedback: Path) -> None:
        self.url, self.feedback = url, feedback
        self.rng = np.random.default_rng(1)
        self.running = threading.Event()
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.retried = 0
        self.answers: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _post(self, client: httpx.Client, row: dict[str, Any], rid: str) -> httpx.Response:
        """The serving contract's client: a 5xx (a deployment swapped under a canary or a
        promotion) is retried with the same idempotent request id."""
        for attempt in range(6):
            r = client.post(
                "/predict",
                json={"instances": [{k: row[k] for k in ("x1", "x2", "c")}]},
                headers={"X-Request-Id": rid},
            )
            if r.status_code < 500:
                return r
            self.retried += 1
            time.sleep(0.2 * (attempt + 1))
        return r

    def _loop(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            part = 0
            while not self.stop.is_set():
                if not self.running.wait(0.2):
                    continue
                frame = _rows(self.rng, 20, drifted=True)
                labels = []
                for row in frame.to_dict(orient="records"):
                    rid = uuid.uuid4().hex
                    r = self._post(client, row, rid)
                    if r.status_code != 200:
                        self.errors.append(r.text)
                        continue
                    self.answers.append(r.json())
                    labels.append({"request_id": rid, "label": int(row["label"])})
                    time.sleep(0.02)
                at = pd.Timestamp.now(tz="UTC").isoformat()
                text = "".join(json.dumps({**x, "ts": at}) + "\n" for x in labels)
                (self.feedback / f"part-{part:05d}.jsonl").write_text(text)
                part += 1


@pytest.fixture()
def served(ray_cluster, tmp_path: Path) -> Iterator[tuple[DesignCard, Workdir, Traffic]]:
    from ray import serve

    from mlsd_ray.serve.app import run_server

    feedback = tmp_path / "feedback"
    feedback.mkdir()
    _rows(np.random.default_rng(0), 150, drifted=False).to_csv(tmp_path / "train.csv", index=False)
    card = _card(tmp_path, feedback)
    workdir = Workdir.of(tmp_path / "work")
    pipeline.etl(card, workdir)
    pipeline.train(card, workdir)
    first = pipeline.register(card, workdir, pipeline.evaluate(card, workdir))
    assert first["promoted"], first
    url = run_server(card, workdir)
    traffic = Traffic(url, feedback)
    traffic.thread.start()
    try:
        yield card, workdir, traffic
    finally:
        traffic.stop.set()
        traffic.thread.join(timeout=120)
        if card.name in serve.status().applications:
            serve.delete(card.name)


def _scrape(port: int) -> dict[str, float]:
    """``name{labels}`` -> value from the exporter's text format."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def _metric(scraped: dict[str, float], name: str, **labels: str) -> float | None:
    for key, value in scraped.items():
        if key.split("{")[0] == name and all(f'{k}="{v}"' in key for k, v in labels.items()):
            return value
    return None


@pytest.mark.timeout(900)  # a retrain starved of CPUs fails the test instead of hanging the suite
def test_drift_retrains_canaries_and_promotes_on_the_real_stages(served) -> None:
    card, workdir, traffic = served
    first = registry.get_alias(card, workdir, registry.CHAMPION)
    assert first is not None
    stages = default_stages()
    metrics = MonitorMetrics(card)
    port = free_port()
    server = metrics.start(port)

    def step() -> dict[str, Any]:
        decision = watch.step(card, workdir, stages)
        metrics.observe_decision(decision, watch.read_state(card, workdir))
        return decision

    try:
        # 1-2. Drifted traffic: three windows in a row drift; the third one retrains.
        traffic.running.set()
        verdicts = []
        deadline = time.monotonic() + 480
        while time.monotonic() < deadline:
            time.sleep(WINDOW_S)
            decision = step()
            verdicts.append(decision)
            if decision["action"] in ("canary", "gate_failed"):
                break
        traffic.running.clear()  # the retrain had the machine's two cores to itself
        actions = [d["action"] for d in verdicts]
        assert actions[-1] == "canary", verdicts
        retrain = [d for d in watch.read_decisions(card, workdir) if d["action"] == "retrain"]
        assert len(retrain) == 1 and retrain[0]["consecutive"] == 3, verdicts
        assert retrain[0]["window"]["drifted"] and "x2" in retrain[0]["window"]["alerting"]
        canary = verdicts[-1]
        version = canary["version"]
        assert version != first.version and canary["retrain"]["gate_passed"]
        assert registry.get_alias(card, workdir, registry.CHAMPION).version == first.version
        assert registry.get_alias(card, workdir, registry.CHALLENGER).version == version
        scraped = _scrape(port)
        assert _metric(scraped, "mlsd_watch_retrains_total", card=card.name) == 1
        assert (_metric(scraped, "mlsd_drift_psi", card=card.name, feature="x2") or 0) >= (
            card.monitoring.psi_alert
        )
        assert _metric(scraped, "mlsd_watch_phase", card=card.name, phase="canary") == 1

        # 3-5. The canary answers about half of the traffic; labels come back; promote.
        n_before = len(traffic.answers)
        traffic.running.set()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            time.sleep(2)
            decision = step()
            if decision["action"] != "wait":
                break
        traffic.running.clear()
        assert decision["action"] == "promote", decision
        test = decision["test"]
        assert test["pvalue"] < card.monitoring.loop.watch.alpha
        assert test["canary"] > test["champion"]
        routes = [a["route"] for a in traffic.answers[n_before:] if "route" in a]
        assert 0.2 < routes.count("challenger") / len(routes) < 0.8  # the card's weight, 0.5
        scraped = _scrape(port)
        assert _metric(scraped, "mlsd_watch_decisions_total", card=card.name, action="promote") == 1
        assert _metric(scraped, "mlsd_watch_phase", card=card.name, phase="watching") == 1
    finally:
        server.shutdown()

    assert registry.get_alias(card, workdir, registry.CHAMPION).version == version
    # The app now answers with the promoted version alone.
    with httpx.Client(base_url=traffic.url, timeout=60) as client:
        body = client.post("/predict", json={"instances": [{"x1": 0.1, "x2": 3, "c": "a"}]})
    assert body.json()["model_version"] == version
    # The decision log: every step, in order, with the figures behind it.
    log = watch.read_decisions(card, workdir)
    acted = [d for d in log if d["action"] not in ("watch", "wait")]
    assert [d["action"] for d in acted] == ["retrain", "canary", "promote"], log
    assert acted[0] == retrain[0]
    assert acted[1]["retrain"]["registered_version"] == version
    assert acted[2]["test"] == test and acted[2]["version"] == version
    assert not traffic.errors, traffic.errors[:3]
