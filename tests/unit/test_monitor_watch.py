"""The watch loop: guards, hold, canary verdicts, the decision log, and a loop killed with
SIGKILL mid-retrain that resumes without the champion ever pointing at an unevaluated model.

The stages are stand-ins (the pure loop is under test); aliases live in a JSON file that the
stand-in stages read and write like the registry.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlsd_ray.monitor import watch
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import load_card

REPO = Path(__file__).resolve().parents[2]
CARD = REPO / "systems" / "event_registration.yaml"
LOOP = [
    "monitoring.loop.watch.sustain_windows=2",
    "monitoring.loop.watch.min_interval_s=100",
    "monitoring.loop.watch.max_retrains_per_day=2",
    "monitoring.loop.watch.min_labels=50",
]


def _card(extra: list[str] | None = None):
    return load_card(CARD, overrides=LOOP + (extra or []))


class Fake:
    """Stand-in stages; ``bad`` is the verdict of each window observed, in order."""

    def __init__(self, root: Path, bad: list[bool | None], arms: dict[str, tuple[int, int]]):
        self.aliases = root / "aliases.json"
        self.aliases.write_text(json.dumps({"champion": "1"}))
        self.bad, self.arms, self.next_version = list(bad), arms, 2
        self.calls: list[str] = []

    def stages(self, retrain_s: float = 0.0) -> watch.Stages:
        def observe(card, workdir, state):
            return {"bad": self.bad.pop(0) if self.bad else None}

        def retrain(card, workdir):
            self.calls.append("retrain")
            time.sleep(retrain_s)
            version = str(self.next_version)
            self.next_version += 1
            self._set("challenger", version)  # registered after evaluation, as the pipeline does
            return {"registered_version": version, "gate_passed": True}

        return watch.Stages(
            observe=observe,
            retrain=retrain,
            canary_arms=lambda card, workdir: self.arms,
            start_canary=lambda card, workdir, v: self.calls.append(f"canary {v}"),
            promote=lambda card, workdir, v: (
                self.calls.append(f"promote {v}"),
                self._set("champion", v),
            ),
            rollback=lambda card, workdir, v: self.calls.append(f"rollback {v}"),
        )

    def _set(self, alias: str, version: str) -> None:
        data = json.loads(self.aliases.read_text())
        data[alias] = version
        self.aliases.write_text(json.dumps(data))


def test_sustained_drift_retrains_then_the_canary_is_promoted(tmp_path: Path):
    card, wd = _card(), Workdir.of(tmp_path)
    fake = Fake(tmp_path, [True, False, True, True], {"champion": (60, 100), "canary": (85, 100)})
    stages = fake.stages()
    actions = [watch.step(card, wd, stages, now=t)["action"] for t in (0, 10, 20, 30)]
    assert actions == ["watch", "watch", "watch", "canary"]  # two windows in a row, not one
    assert watch.step(card, wd, stages, now=40)["action"] == "promote"
    assert fake.calls == ["retrain", "canary 2", "promote 2"]
    assert json.loads(fake.aliases.read_text())["champion"] == "2"
    log = watch.read_decisions(card, wd)
    promoted = log[-1]
    assert promoted["test"]["pvalue"] < 0.05 and promoted["labelled"] == {
        "champion": 100,
        "canary": 100,
    }
    assert [d["action"] for d in log].count("retrain") == 1


def test_guards_hold_and_too_few_labels(tmp_path: Path):
    card, wd = _card(), Workdir.of(tmp_path)
    fake = Fake(tmp_path, [True] * 20, {"champion": (10, 20), "canary": (19, 20)})
    stages = fake.stages()
    watch.step(card, wd, stages, now=0)
    assert watch.step(card, wd, stages, now=1)["action"] == "canary"
    # Fewer than min_labels per arm: no promotion, however good the canary looks.
    waiting = watch.step(card, wd, stages, now=2)
    assert waiting["action"] == "wait" and "min_labels" in waiting["why"]
    fake.arms = {"champion": (60, 100), "canary": (40, 100)}  # significantly worse
    assert watch.step(card, wd, stages, now=3)["action"] == "rollback"
    assert json.loads(fake.aliases.read_text())["champion"] == "1"
    # Drift goes on: the minimum interval blocks a retrain, then the daily cap.
    watch.step(card, wd, stages, now=4)
    assert watch.step(card, wd, stages, now=50)["action"] == "guard_min_interval"
    assert watch.step(card, wd, stages, now=200)["action"] == "canary"  # second retrain today
    fake.arms = {"champion": (60, 100), "canary": (61, 100)}
    assert watch.step(card, wd, stages, now=201)["action"] == "wait"  # no significant gain
    # A manual hold stops everything, including the canary's verdict.
    watch.set_hold(card, wd, True, "incident 42")
    assert watch.step(card, wd, stages, now=202)["action"] == "held"
    watch.set_hold(card, wd, False)
    fake.arms = {"champion": (60, 100), "canary": (40, 100)}
    assert watch.step(card, wd, stages, now=203)["action"] == "rollback"
    assert watch.step(card, wd, stages, now=400)["action"] == "watch"  # consecutive reset
    assert watch.step(card, wd, stages, now=401)["action"] == "guard_daily_cap"
    assert watch.step(card, wd, stages, now=86_500)["action"] == "canary"  # a new day
    actions = [d["action"] for d in watch.read_decisions(card, wd)]
    assert "hold" in actions and "release" in actions


def test_compare_arms_is_a_two_proportion_test():
    out = watch.compare_arms(500, 1000, 550, 1000)
    assert out["difference"] == pytest.approx(0.05)
    assert out["pvalue"] == pytest.approx(0.0253, abs=0.001)  # z = 2.24
    assert watch.compare_arms(0, 0, 1, 1)["pvalue"] is None


KILLED = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
from tests.unit.test_monitor_watch import Fake, _card
from mlsd_ray.monitor import watch
from mlsd_ray.settings import Workdir
root = Path({root!r})
fake = Fake(root, [True, True], {{}})
card, wd = _card(), Workdir.of(root)
watch.step(card, wd, fake.stages(), now=0)
print("retraining", flush=True)
watch.step(card, wd, fake.stages(retrain_s=60), now=1)
"""


def test_a_loop_killed_mid_retrain_rolls_back_cleanly(tmp_path: Path):
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED.format(repo=str(REPO), root=str(tmp_path))],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "retraining"
    card, wd = _card(), Workdir.of(tmp_path)
    deadline = time.monotonic() + 60
    while watch.read_state(card, wd)["phase"] != "retraining" and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)  # mid-retrain
    proc.wait(timeout=10)
    state = watch.read_state(card, wd)
    assert state["phase"] == "retraining" and state["challenger"] is None
    assert json.loads((tmp_path / "aliases.json").read_text()) == {"champion": "1"}
    # The rerun rolls back the unfinished retrain and goes back to watching.
    fake = Fake.__new__(Fake)
    fake.aliases, fake.bad, fake.arms, fake.calls, fake.next_version = (
        tmp_path / "aliases.json",
        [False],
        {},
        [],
        9,
    )
    decision = watch.step(card, wd, fake.stages(), now=2)
    assert decision["action"] == "rollback_unfinished_retrain"
    assert fake.calls == ["rollback None"]  # serving back to the champion alone
    assert watch.read_state(card, wd)["phase"] == "watching"
    assert json.loads((tmp_path / "aliases.json").read_text()) == {"champion": "1"}
    assert watch.step(card, wd, fake.stages(), now=3)["action"] == "watch"
