"""Live training figures for the console: step, loss and samples/s of a running fit.

Ray Train's ``fit()`` blocks the driver while workers train in other processes, so the driver
follows the per-step JSON lines that the workers append to ``params["progress_file"]``
(``transformer.ProgressLog``; ``TRAIN/<model>/progress.jsonl``, kept for the HTML report's loss
curve) in a thread when a display watches (``progress.active()``). On a multi-node cluster a
remote worker's lines stay on its node and the bar stays a spinner.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlsd_ray import progress

POLL_S = 0.5


@contextmanager
def watch_steps(params: dict[str, Any], name: str, folder: Path) -> Iterator[None]:
    """Show a bar for ``name`` while the block trains; sets and then removes the file param."""
    if params.get("progress_file"):  # someone else asked for the file and reads it
        yield
        return
    path = Path(folder) / "progress.jsonl"  # also the HTML report's loss curve
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    params["progress_file"] = str(path)
    if not progress.active():
        try:
            yield
        finally:
            params.pop("progress_file", None)
        return
    stop = threading.Event()
    samples_per_step = int(params.get("batch_size", 1)) * max(1, int(params.get("num_workers", 1)))
    with progress.task(f"train {name}", total=params.get("total_steps"), unit="steps") as bar:
        thread = threading.Thread(
            target=_follow, args=(path, bar, samples_per_step, stop), daemon=True
        )
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)
            params.pop("progress_file", None)  # not a model parameter: keep it out of the package


def _follow(path: Path, bar: progress.Task, samples_per_step: int, stop: threading.Event) -> None:
    first: tuple[int, float] | None = None
    offset = 0
    while True:
        done = stop.is_set()
        with path.open() as f:
            f.seek(offset)
            chunk = f.read()
        complete = chunk[: chunk.rfind("\n") + 1]  # a line being written waits for next time
        offset += len(complete)
        for line in complete.splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if row.get("rank", 0) != 0:
                continue
            step, at = int(row["step"]), float(row["time"])
            if first is None or step < first[0]:  # a restart from a checkpoint starts afresh
                first = (step, at)
            rate = (step - first[0]) * samples_per_step / (at - first[1]) if at > first[1] else 0
            bar.update(completed=step, loss=float(row["loss"]), samples_s=round(rate, 1))
        if done:
            return
        time.sleep(POLL_S)
