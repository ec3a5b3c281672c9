"""Ray Train fault tolerance for real: SIGKILL the training worker's process mid-run; Ray Train
(``FailureConfig(max_failures)`` from the card) restarts the worker group and the new worker
resumes from the latest checkpoint, with the same optimizer, schedule, RNG and data position."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mlsd_ray.train.transformer import train_transformer
from tests.integration.test_train import tiny_card
from tests.toy_data import toy_split as split

pytestmark = pytest.mark.integration

T = "models.candidates.0.trainer"
EVERY = 20  # checkpoint interval in steps
STEPS = 3 * EVERY


def _lines(progress: Path) -> list[dict[str, Any]]:
    if not progress.is_file():
        return []
    return [json.loads(line) for line in progress.read_text().splitlines() if line.endswith("}")]


def _registered_step(run_dir: Path) -> int:
    """The step of the latest checkpoint the Ray Train controller has registered (the one a
    restarted worker gets), from the checkpoint manager's snapshot in the run folder."""
    try:
        snap = json.loads((run_dir / "checkpoint_manager_snapshot.json").read_text())
        return int(snap["latest_checkpoint_result"]["metrics"]["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0  # not written yet, or caught mid-write


def _kill_after_first_checkpoint(progress: Path, run_dir: Path, out: dict[str, Any]) -> None:
    """Once a periodic checkpoint is registered and the worker is half an interval past it,
    SIGKILL the worker (so that some steps are lost and must be re-done)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        lines = _lines(progress)
        if lines and lines[-1]["step"] >= STEPS:
            out["error"] = "the run finished before a checkpoint was registered"
            return
        registered = _registered_step(run_dir)
        if registered >= EVERY and lines and lines[-1]["step"] - registered >= EVERY // 2:
            pid = lines[-1]["pid"]
            os.kill(pid, signal.SIGKILL)
            out.update(pid=pid, registered=registered, seen_step=lines[-1]["step"])
            return
        time.sleep(0.005)
    out["error"] = "no checkpoint was registered within 300 s"


@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_resumes_from_the_last_checkpoint(
    ray_cluster, tmp_path: Path, monkeypatch
) -> None:
    # The controller registers reported checkpoints when it polls the workers, every 2 s by
    # default; polling faster makes "the latest checkpoint" current within 0.1 s. Ray Train
    # hands this variable on from the driver to its controller.
    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
    progress = tmp_path / "progress.jsonl"
    card = tiny_card(
        f"{T}.max_steps={STEPS}",
        f"{T}.checkpoint_every_steps={EVERY}",
        f"{T}.max_failures=1",
        f"models.candidates.0.params={{progress_file: {progress}}}",
    )
    storage = tmp_path / "runs"
    killed: dict[str, Any] = {}
    watcher = threading.Thread(
        target=_kill_after_first_checkpoint,
        args=(progress, storage / "killed", killed),
        daemon=True,  # a failed fit must not leave pytest waiting for the watcher
    )
    watcher.start()
    spec = card.models.candidates[0]
    # 1000 rows in batches of 16: one epoch of 63 steps holds the whole run.
    model = train_transformer(
        spec, card, split(1000, 5), split(40, 6), tmp_path, str(storage), run_name="killed"
    )
    watcher.join(timeout=10)
    assert "error" not in killed, killed["error"]

    m = model.train_metrics_
    lines = _lines(progress)
    old = [x for x in lines if x["pid"] == killed["pid"]]
    new = [x for x in lines if x["pid"] != killed["pid"]]
    assert len({x["pid"] for x in new}) == 1  # one restart, one new worker process
    resumed = m["resumed_from_step"]
    # Resumed from the latest checkpoint the killed worker wrote and Ray registered ...
    assert resumed == killed["registered"] >= EVERY and resumed % EVERY == 0
    assert any(x["step"] == resumed and x["checkpoint"] for x in old)
    # ... and finished, training each remaining step once.
    assert m["step"] == STEPS and [x["step"] for x in new] == list(range(resumed + 1, STEPS + 1))
    # At most one checkpoint interval of work was lost (steps done twice).
    redone = max(x["step"] for x in old) - resumed
    assert EVERY // 2 <= redone <= EVERY, (redone, killed)
    # The re-done steps repeat the same trajectory: same batches, dropout masks, AdamW state.
    first = {x["step"]: x["loss"] for x in old}
    again = {x["step"]: x["loss"] for x in new if x["step"] in first}
    assert len(again) == redone
    assert again == pytest.approx({s: first[s] for s in again}, rel=1e-5)
    assert model.predict_proba(split(8, 7)).shape == (8, 2)
