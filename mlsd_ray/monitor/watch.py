"""The loop that acts: drift or decay held long enough -> retrain -> gate -> canary -> promote
or roll back, with guards, a manual hold and a decision log.

``step`` is one pass (``mlsd watch CARD --once``, for a scheduler); ``run`` repeats it every
``watch.poll_s`` (``mlsd watch CARD``, or ``jobs/watch.py`` as a long-lived Ray job). The state
lives in ``<workdir>/<monitoring.loop.state_uri>/state.json``, written before and after each
action, so a loop killed at any point resumes from it:

* killed while retraining (``phase: retraining``): the champion alias was never moved (the
  retrain registers the new version as ``challenger`` only), so the rerun records a rollback of
  the unfinished retrain and goes back to watching;
* killed while a canary runs: the rerun keeps evaluating the canary.

Every decision, with the figures behind it, is appended to ``decisions.jsonl`` there.
The stages (``Stages``) are injected; ``mlsd_ray/watch_loop.py`` wires the pipeline's: ETL
with the fresh labelled window added as a source, training (warm start where the kind supports
it), evaluation against the champion on the new test split, registration as challenger, and
the serve rollout helpers.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scipy import stats

from mlsd_ray import storage
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard

log = logging.getLogger(__name__)

DAY_S = 86_400.0


# -- state, hold and the decision log --------------------------------------------------
def state_dir(card: DesignCard, workdir: Workdir) -> str:
    return workdir.resolve(card.monitoring.loop.state_uri)


def read_state(card: DesignCard, workdir: Workdir) -> dict[str, Any]:
    uri = storage.join(state_dir(card, workdir), "state.json")
    if not storage.exists(uri):
        return {"phase": "watching", "consecutive": 0, "retrains": [], "challenger": None}
    return dict(storage.read_json(uri))


def write_state(card: DesignCard, workdir: Workdir, state: dict[str, Any]) -> None:
    # Written whole to a temporary name and renamed (locally): a kill never leaves half a file.
    uri = storage.join(state_dir(card, workdir), "state.json")
    if storage.is_remote(uri):
        storage.write_json(uri, state)
        return
    storage.write_json(uri + ".tmp", state)
    fs, path = storage.filesystem(uri)
    fs.move(path + ".tmp", path)


def set_hold(card: DesignCard, workdir: Workdir, on: bool, reason: str = "") -> dict[str, Any]:
    """``mlsd hold CARD`` (on) / ``--release`` (off): the loop decides nothing while held."""
    uri = storage.join(state_dir(card, workdir), "hold.json")
    entry = {"hold": on, "reason": reason, "at": time.time()}
    storage.write_json(uri, entry)
    decide(card, workdir, "hold" if on else "release", {"reason": reason})
    return entry


def is_held(card: DesignCard, workdir: Workdir) -> bool:
    uri = storage.join(state_dir(card, workdir), "hold.json")
    return storage.exists(uri) and bool(storage.read_json(uri).get("hold"))


def decide(
    card: DesignCard,
    workdir: Workdir,
    action: str,
    figures: dict[str, Any],
    now: float | None = None,
) -> dict[str, Any]:
    """Append one decision to the decision log and return it."""
    entry = {"at": now if now is not None else time.time(), "action": action, **figures}
    uri = storage.join(state_dir(card, workdir), "decisions.jsonl")
    old = storage.read_text(uri) if storage.exists(uri) else ""
    storage.write_text(uri, old + json.dumps(entry, default=str) + "\n")
    log.info("watch %s: %s %s", card.name, action, figures)
    return entry


def read_decisions(card: DesignCard, workdir: Workdir) -> list[dict[str, Any]]:
    uri = storage.join(state_dir(card, workdir), "decisions.jsonl")
    if not storage.exists(uri):
        return []
    return [json.loads(line) for line in storage.read_text(uri).splitlines() if line.strip()]


# -- the pure parts: when to retrain, whether to promote -------------------------------
def should_retrain(
    card: DesignCard, state: dict[str, Any], window_bad: bool | None, now: float
) -> tuple[str, dict[str, Any]]:
    """(decision, figures) for one new window: ``retrain``, ``watch`` or a guard's name.

    Updates ``state["consecutive"]`` (windows without a verdict leave it as it is)."""
    w = card.monitoring.loop.watch
    if window_bad is not None:
        state["consecutive"] = state.get("consecutive", 0) + 1 if window_bad else 0
    figures: dict[str, Any] = {"consecutive": state["consecutive"], "needed": w.sustain_windows}
    if state["consecutive"] < w.sustain_windows:
        return "watch", figures
    retrains = [t for t in state.get("retrains", []) if now - t < DAY_S]
    last = max(state.get("retrains", []), default=None)
    if last is not None and now - last < w.min_interval_s:
        return "guard_min_interval", {**figures, "since_last_s": now - last}
    if len(retrains) >= w.max_retrains_per_day:
        return "guard_daily_cap", {**figures, "retrains_today": len(retrains)}
    return "retrain", figures


def compare_arms(
    champion_correct: int, champion_n: int, canary_correct: int, canary_n: int
) -> dict[str, Any]:
    """Two-proportion z-test of the share of right decisions: canary minus champion."""
    if min(champion_n, canary_n) == 0:
        return {"difference": None, "pvalue": None}
    p1, p2 = champion_correct / champion_n, canary_correct / canary_n
    pooled = (champion_correct + canary_correct) / (champion_n + canary_n)
    se = math.sqrt(pooled * (1 - pooled) * (1 / champion_n + 1 / canary_n))
    z = (p2 - p1) / se if se > 0 else 0.0
    return {
        "champion": p1,
        "canary": p2,
        "difference": p2 - p1,
        "z": z,
        "pvalue": float(2 * stats.norm.sf(abs(z))),
    }


def canary_verdict(
    card: DesignCard, arms: dict[str, tuple[int, int]], started: float, now: float
) -> tuple[str, dict[str, Any]]:
    """``promote``, ``rollback`` or ``wait`` from {arm: (right decisions, labelled)}."""
    w = card.monitoring.loop.watch
    champ, can = arms.get("champion", (0, 0)), arms.get("canary", (0, 0))
    figures: dict[str, Any] = {"labelled": {"champion": champ[1], "canary": can[1]}}
    if min(champ[1], can[1]) < w.min_labels:
        if now - started > w.canary_timeout_s:
            return "rollback", {**figures, "why": "too few labels before canary_timeout_s"}
        return "wait", {**figures, "why": f"fewer than min_labels={w.min_labels} per arm"}
    test = compare_arms(champ[0], champ[1], can[0], can[1])
    figures["test"] = test
    significant = test["pvalue"] is not None and test["pvalue"] < w.alpha
    if significant and test["difference"] > w.min_improvement:
        return "promote", figures
    if significant and test["difference"] < 0:
        return "rollback", {**figures, "why": "canary significantly worse"}
    if now - started > w.canary_timeout_s:
        return "rollback", {**figures, "why": "no significant gain before canary_timeout_s"}
    return "wait", {**figures, "why": "no significant difference yet"}


# -- the stages, injectable so tests and the replay benchmark can run the same loop ---------
@dataclass
class Stages:
    """What a step calls. Defaults: the pipeline's stages and the serve rollout helpers."""

    observe: Callable[[DesignCard, Workdir, dict[str, Any]], dict[str, Any]]
    retrain: Callable[[DesignCard, Workdir], dict[str, Any]]
    canary_arms: Callable[[DesignCard, Workdir], dict[str, tuple[int, int]]]
    start_canary: Callable[[DesignCard, Workdir, str], None]
    promote: Callable[[DesignCard, Workdir, str], None]
    rollback: Callable[[DesignCard, Workdir, str | None], None]
    extra: dict[str, Any] = field(default_factory=dict)


def step(
    card: DesignCard, workdir: Workdir, stages: Stages, now: float | None = None
) -> dict[str, Any]:
    """One pass of the loop; returns the decision it logged."""
    now = now if now is not None else time.time()
    state = read_state(card, workdir)
    if is_held(card, workdir):
        return decide(card, workdir, "held", {"phase": state["phase"]}, now)
    if state["phase"] == "retraining":
        # Killed mid-retrain: champion untouched; drop the half-made challenger.
        stages.rollback(card, workdir, state.get("challenger"))
        state.update(phase="watching", challenger=None, consecutive=0)
        write_state(card, workdir, state)
        return decide(
            card, workdir, "rollback_unfinished_retrain", {"started": state.get("started")}, now
        )
    if state["phase"] == "canary":
        arms = stages.canary_arms(card, workdir)
        verdict, figures = canary_verdict(card, arms, float(state["started"]), now)
        version = str(state["challenger"])
        if verdict == "promote":
            stages.promote(card, workdir, version)
        elif verdict == "rollback":
            stages.rollback(card, workdir, version)
        if verdict != "wait":
            state.update(phase="watching", challenger=None, consecutive=0)
            write_state(card, workdir, state)
        return decide(card, workdir, verdict, {"version": version, **figures}, now)
    seen = stages.observe(card, workdir, state)
    action, figures = should_retrain(card, state, seen.get("bad"), now)
    figures["window"] = {k: v for k, v in seen.items() if k != "bad"}
    if action != "retrain":
        write_state(card, workdir, state)
        return decide(card, workdir, action, figures, now)
    state.update(phase="retraining", started=now, challenger=None)
    state["retrains"] = [*state.get("retrains", []), now]
    write_state(card, workdir, state)
    decide(card, workdir, "retrain", figures, now)
    result = stages.retrain(card, workdir)
    if not result.get("gate_passed"):
        state.update(phase="watching", consecutive=0)
        write_state(card, workdir, state)
        return decide(card, workdir, "gate_failed", {"retrain": result}, now)
    version = str(result["registered_version"])
    state.update(challenger=version)
    write_state(card, workdir, state)
    stages.start_canary(card, workdir, version)
    state.update(phase="canary", started=now)
    write_state(card, workdir, state)
    return decide(card, workdir, "canary", {"version": version, "retrain": result}, now)


def run(
    card: DesignCard,
    workdir: Workdir,
    stages: Stages,
    max_steps: int | None = None,
    on_decision: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
) -> None:
    """Step every ``watch.poll_s`` seconds (forever unless ``max_steps``); each decision and
    the state after it go to ``on_decision`` (the Prometheus exporter's ``observe_decision``)."""
    n = 0
    while max_steps is None or n < max_steps:
        try:
            decision = step(card, workdir, stages)
        except Exception as err:  # a failed step is logged; the loop goes on
            decision = decide(card, workdir, "step_failed", {"error": repr(err)})
        if on_decision is not None:
            on_decision(decision, read_state(card, workdir))
        n += 1
        time.sleep(card.monitoring.loop.watch.poll_s)
