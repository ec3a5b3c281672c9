"""Progress of long work, for whoever watches: the library reports, the CLI displays.

Library code marks stages and long loops here; the ``mlsd`` command installs a display (rich
bars on a terminal, plain lines in a pipe, see ``console.py``). With no display installed,
every call is a no-op apart from a debug log line, so jobs, tests and notebooks see nothing new.

    with progress.stage("train") as figures:
        figures.update(models=2)
    with progress.task("scoring minilm", total=600, unit="rows") as bar:
        bar.advance(256)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Task(Protocol):
    def advance(self, n: float = 1, **fields: Any) -> None: ...

    def update(
        self, *, completed: float | None = None, total: float | None = None, **fields: Any
    ) -> None: ...


class Display(Protocol):
    """What a display offers: stage lines, bars, and notices that matter to the user."""

    def stage_started(self, name: str) -> None: ...

    def stage_finished(self, name: str, seconds: float, result: Any, failed: bool) -> None: ...

    def start_task(self, description: str, total: float | None, unit: str) -> Task: ...

    def stop_task(self, task: Task) -> None: ...


class _NoTask:
    def advance(self, n: float = 1, **fields: Any) -> None:
        pass

    def update(
        self, *, completed: float | None = None, total: float | None = None, **fields: Any
    ) -> None:
        pass


_display: Display | None = None


def install(display: Display | None) -> None:
    """Set (or, with None, remove) the process's display. Only the CLI calls this."""
    global _display
    _display = display


def active() -> bool:
    """True when someone watches: worth extra work such as counting rows for a bar."""
    return _display is not None


@contextmanager
def task(description: str, total: float | None = None, unit: str = "") -> Iterator[Task]:
    """A bar (``total`` known) or a spinner (``total=None``) for the duration of the block."""
    if _display is None:
        yield _NoTask()
        return
    handle = _display.start_task(description, total, unit)
    try:
        yield handle
    finally:
        _display.stop_task(handle)


class StageResult:
    """What a stage hands its display when it ends (the CLI turns it into key figures)."""

    def __init__(self) -> None:
        self.result: Any = None

    def set(self, result: Any) -> None:
        self.result = result


@contextmanager
def stage(name: str) -> Iterator[StageResult]:
    """One line when a stage starts, one when it ends (with the figures of ``set(result)``)."""
    started = time.perf_counter()
    out = StageResult()
    log.info("stage %s: started", name)
    if _display is not None:
        _display.stage_started(name)
    failed = True
    try:
        yield out
        failed = False
    finally:
        seconds = time.perf_counter() - started
        log.info("stage %s: %s in %.1f s", name, "failed" if failed else "done", seconds)
        if _display is not None:
            _display.stage_finished(name, seconds, out.result, failed)
