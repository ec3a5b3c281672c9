"""What a person sees when running ``mlsd``: stage lines, bars, a summary, a log file.

By default (verbosity 0) the console shows one line per stage start and end with its key
figures, live bars for long work (rich, on a terminal only), warnings of mlsd_ray itself, and
the final summary. Everything else (Ray's and the libraries' logs, C++ lines included) goes to
``WORKDIR/logs/mlsd-<time>.log``, whose path is printed. ``-v`` shows INFO logs of every library
and Ray's worker logs again; ``-vv`` adds DEBUG and Ray Data's own progress bars.

How quiet is reached, Ray's knobs first: ``log_to_driver=False`` (runtime.ensure_ray reads
``MLSD_RAY_LOG_TO_DRIVER``), ``RAY_DATA_DISABLE_PROGRESS_BARS`` / ``DataContext``, MLflow's
artifact bar off. What still writes to the process's stderr (Ray's driver loggers, Serve's
driver logger, C++ core-worker lines, mlflow/alembic) is caught by pointing file descriptor 2 at
the log file; our own output keeps the real terminal (stdout, and a saved copy of stderr for
errors). Only the real ``mlsd`` entry point moves fd 2 (``capture_fds``); the test runner's
streams are left alone.

This module is the CLI's presentation layer (it prints); the library only logs and reports
through ``progress.py``.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from mlsd_ray import progress
from mlsd_ray.errors import MlsdError

#: libraries whose INFO lines are noise even with -v (DEBUG with -vv brings them back)
NOISY = ("urllib3", "httpx", "httpcore", "filelock", "alembic", "matplotlib", "PIL", "numba")
#: a task that ran at least this long leaves a line behind when it ends
TASK_LINE_S = 5.0
_TAG = "_mlsd_console"  # marks the handlers this module installed, so setup can be repeated


@dataclass
class Session:
    verbosity: int = 0
    out: Console = field(default_factory=lambda: Console(soft_wrap=True))
    err: Console = field(default_factory=lambda: Console(stderr=True, soft_wrap=True))
    log_path: Path | None = None
    display: RichDisplay | None = None
    started: float = field(default_factory=time.perf_counter)


_session = Session()
#: set by ``cli.main`` only: the real command may point fd 2 at the log file
capture_fds = False
_saved_stderr_fd: int | None = None


def session() -> Session:
    return _session


def setup(workdir: Path | None, verbosity: int = 0) -> Session:
    """Configure logging, Ray's knobs and the display for one command. Safe to call again."""
    global _session
    _quiet_knobs(verbosity)
    log_path = _log_file(workdir) if workdir is not None else None
    err_stream = (
        _capture_stderr(log_path) if (capture_fds and verbosity == 0 and log_path) else None
    )
    out = Console(soft_wrap=True, highlight=False)
    err = (
        Console(file=err_stream, soft_wrap=True, highlight=False)
        if err_stream is not None
        else Console(stderr=True, soft_wrap=True, highlight=False)
    )
    _session = Session(verbosity=verbosity, out=out, err=err, log_path=log_path)
    # Status (stage lines, bars, warnings, errors) on stderr; results and the summary on stdout,
    # so `mlsd etl CARD > summary.json` stays clean.
    _configure_logging(log_path, verbosity, err)
    display = RichDisplay(err)
    _session.display = display
    progress.install(display)
    if log_path is not None:
        logging.getLogger(__name__).info("mlsd %s", " ".join(sys.argv[1:]))
    return _session


def _quiet_knobs(verbosity: int) -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if verbosity >= 1:
        os.environ["MLSD_RAY_LOG_TO_DRIVER"] = "1"
        return
    os.environ["MLSD_RAY_LOG_TO_DRIVER"] = "0"  # worker logs stay in Ray's session folder
    os.environ["RAY_DATA_DISABLE_PROGRESS_BARS"] = "1"
    if "ray.data" in sys.modules:  # imported already (a test process): the env came too late
        from ray.data import DataContext

        DataContext.get_current().enable_progress_bars = False


def _log_file(workdir: Path) -> Path:
    folder = Path(workdir).resolve() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"mlsd-{datetime.now().strftime('%Y%m%d-%H%M%S')}.log"


def _capture_stderr(log_path: Path) -> IO[str]:
    """Point fd 2 at the log file; return a stream on the terminal's stderr for our errors."""
    global _saved_stderr_fd
    sys.stderr.flush()
    if _saved_stderr_fd is None:
        _saved_stderr_fd = os.dup(2)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    if not isinstance(sys.stdout, _RayThreadsToLog):
        sys.stdout = _RayThreadsToLog(sys.stdout, sys.stderr)
    return os.fdopen(os.dup(_saved_stderr_fd), "w", buffering=1)


class _RayThreadsToLog(io.TextIOBase):
    """stdout that sends what Ray's driver threads print to the log file.

    Ray prints errors the raylet pushes to the driver (e.g. "N PYTHON worker processes have
    been started") from its ``ray_listen_error_messages`` thread straight to ``sys.stdout``,
    whatever ``log_to_driver`` says, and has no knob for it. Routing by thread, not by content:
    everything the command itself prints still reaches the terminal."""

    def __init__(self, terminal: Any, log: Any) -> None:
        self.terminal, self.log = terminal, log

    def _sink(self) -> Any:
        return self.log if threading.current_thread().name.startswith("ray_") else self.terminal

    def write(self, s: str) -> int:
        return int(self._sink().write(s))

    def flush(self) -> None:
        self.terminal.flush()
        self.log.flush()

    def isatty(self) -> bool:
        return bool(self.terminal.isatty())

    def fileno(self) -> int:
        return int(self.terminal.fileno())

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self.terminal, "encoding", "utf-8"))


def _configure_logging(log_path: Path | None, verbosity: int, out: Console) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, _TAG, False):
            root.removeHandler(h)
            h.close()
    level = logging.DEBUG if verbosity >= 2 else logging.INFO
    root.setLevel(level)
    if log_path is not None:
        file_handler = logging.FileHandler(log_path, encoding="utf-8")
        file_handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        setattr(file_handler, _TAG, True)
        root.addHandler(file_handler)
    shown = _ConsoleHandler(out, verbosity)
    setattr(shown, _TAG, True)
    root.addHandler(shown)
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.DEBUG if verbosity >= 2 else logging.WARNING)
    logging.captureWarnings(True)  # library warnings go to the log file, not the console


class _ConsoleHandler(logging.Handler):
    """Quiet: warnings of mlsd_ray only (quarantine, leakage, anomalies). -v: every INFO."""

    def __init__(self, out: Console, verbosity: int) -> None:
        super().__init__(logging.DEBUG if verbosity >= 2 else logging.INFO)
        self.out, self.verbosity = out, verbosity

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self.verbosity == 0:
                if record.levelno < logging.WARNING or not record.name.startswith("mlsd_ray"):
                    return
                self.out.print(f"[yellow]! {record.getMessage()}[/]", markup=True)
                return
            line = f"{record.levelname[0]} {record.name}: {record.getMessage()}"
            self.out.print(line, markup=False, style="dim" if record.levelno < 30 else "yellow")
        except Exception:  # a display problem must never break the run
            self.handleError(record)


# Display ----------------------------------------------------------------------------------
class _BarTask:
    def __init__(self, display: RichDisplay, description: str, total: float | None, unit: str):
        self.display, self.description, self.unit = display, description, unit
        self.total, self.completed, self.fields = total, 0.0, {"info": ""}
        self.started = time.perf_counter()
        self.id: TaskID | None = None
        if display.bars is not None:
            self.id = display.bars.add_task(description, total=total, info="")

    def advance(self, n: float = 1, **fields: Any) -> None:
        self.update(completed=self.completed + n, **fields)

    def update(
        self, *, completed: float | None = None, total: float | None = None, **fields: Any
    ) -> None:
        if completed is not None:
            self.completed = completed
        if total is not None:
            self.total = total
        if fields:
            self.fields["info"] = _fields(fields)
        if self.display.bars is not None and self.id is not None:
            self.display.bars.update(
                self.id, completed=self.completed, total=self.total, info=self.fields["info"]
            )

    def line(self) -> str:
        seconds = time.perf_counter() - self.started
        done = f"{self.completed:g}" + (f"/{self.total:g}" if self.total else "")
        amount = f"{done} {self.unit}".strip() if self.completed else ""
        info = self.fields["info"]
        return (
            "  · "
            + ", ".join(x for x in (self.description, amount, info) if x)
            + (f" ({seconds:.0f} s)")
        )


def _fields(fields: dict[str, Any]) -> str:
    parts = []
    for k, v in fields.items():
        k = k[:-2] + "/s" if k.endswith("_s") else k.replace("_", " ")
        parts.append(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}")
    return ", ".join(parts)


class RichDisplay:
    """Stage lines always; live bars only on a terminal (plain lines in CI or a pipe)."""

    def __init__(self, out: Console) -> None:
        self.out = out
        self.bars: Progress | None = None
        self.live = out.is_terminal and not out.is_dumb_terminal

    def _ensure_bars(self) -> None:
        if self.live and self.bars is None:
            self.bars = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(bar_width=30),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                console=self.out,
                transient=True,
            )
            self.bars.start()

    def close(self) -> None:
        if self.bars is not None:
            self.bars.stop()
            self.bars = None

    def stage_started(self, name: str) -> None:
        self.out.print(f"[bold]▶ {name}[/]", markup=True)

    def stage_finished(self, name: str, seconds: float, result: Any, failed: bool) -> None:
        if failed:
            self.out.print(f"[red]✗ {name} failed after {seconds:.1f} s[/]", markup=True)
            return
        if isinstance(result, dict) and result.get("cached"):
            text = f"✓ {name} cached: inputs, card sections and code unchanged (--no-cache runs it)"
            self.out.print(f"[green]{_escape(text)}[/]", markup=True)
            return
        figures, warnings = stage_figures(name, result)
        text = f"✓ {name} {seconds:.1f} s" + (f": {figures}" if figures else "")
        self.out.print(f"[green]{_escape(text)}[/]", markup=True)
        for w in warnings:
            self.out.print(f"[yellow]! {_escape(w)}[/]", markup=True)

    def start_task(self, description: str, total: float | None, unit: str) -> _BarTask:
        self._ensure_bars()
        return _BarTask(self, description, total, unit)

    def stop_task(self, task: progress.Task) -> None:
        if not isinstance(task, _BarTask):
            return
        if self.bars is not None and task.id is not None:
            self.bars.remove_task(task.id)
        if time.perf_counter() - task.started >= TASK_LINE_S:
            self.out.print(task.line(), markup=False, style="dim")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


# Key figures per stage ---------------------------------------------------------------------
def _num(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def stage_figures(name: str, r: Any) -> tuple[str, list[str]]:
    """(one line of key figures, warnings worth the user's eye) from a stage's result."""
    if not isinstance(r, dict):
        return "", []
    warnings: list[str] = []
    if name == "etl":
        splits = " / ".join(f"{k} {v}" for k, v in (r.get("rows_per_split") or {}).items())
        line = (
            f"{r.get('rows_in')} rows in, {r.get('rows_ok')} ok, "
            f"{r.get('rows_quarantined')} quarantined; {splits}; "
            f"dataset {r.get('dataset_version')}"
        )
        if r.get("rows_quarantined"):
            warnings.append(
                f"{r['rows_quarantined']} rows quarantined ("
                + ", ".join(f"{k}: {v}" for k, v in (r.get("quarantine_by_reason") or {}).items())
                + f"), kept in {(r.get('outputs') or {}).get('quarantine', '')}"
            )
        return line, warnings
    if name == "train":
        parts = []
        for model, m in (r.get("models") or {}).items():
            val = m.get("validation") or {}
            score = m.get("validation_roc_auc")
            what = "roc_auc"
            if score is None and val:
                what = "rmse" if "rmse" in val else next(iter(val))
                score = val.get(what)
            seconds = f"({m.get('train_seconds', 0):.0f} s)"
            # A ranking system has no row-level validation score: its seconds alone.
            parts.append(f"{model} {what} {_num(score)} {seconds}" if score is not None or val
                         else f"{model} {seconds}")  # fmt: skip
        return "; ".join(parts), warnings
    if name == "evaluate":
        cand = r.get("candidate")
        gate = r.get("gate") or {}
        metric = (gate.get("config") or {}).get("metric", "roc_auc")
        value = (r.get("metrics") or {}).get(cand, {}).get(metric)
        ci = ((r.get("analysis") or {}).get(cand, {}).get("intervals") or {}).get(metric)
        interval = f" (CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else ""
        verdict = "gate passed" if gate.get("passed") else "gate FAILED"
        if not gate.get("passed"):
            warnings.append("gate failed: " + "; ".join(gate.get("failed") or []))
        return f"candidate {cand}: test {metric} {_num(value)}{interval}; {verdict}", warnings
    if name == "register":
        if not r.get("promoted"):
            warnings.append(str(r.get("summary", "")))
            return f"v{r.get('registered_version')} is challenger only", warnings
        return f"v{r.get('registered_version')} ({r.get('model_name')}) is champion", warnings
    if name == "serve":
        return f"{r.get('requests')} request(s) answered at {r.get('url')}", warnings
    if name == "monitor":
        drifting = [n for n, f in (r.get("features") or {}).items() if f.get("status") == "alert"]
        line = f"drift status {r.get('status')}" + (
            f"; alert on {', '.join(drifting)}" if drifting else ""
        )
        return line, warnings
    return "", warnings


# Results and errors ------------------------------------------------------------------------
def done(lines: list[tuple[str, str]]) -> None:
    """The final summary: a title line and ``label: value`` lines, then the log file."""
    s = _session
    if s.display is not None:
        s.display.close()
    seconds = time.perf_counter() - s.started
    s.out.print(f"[bold]Done in {seconds:.0f} s.[/]", markup=True)
    rows = [*lines, *([("Log", str(s.log_path))] if s.log_path else [])]
    width = max((len(k) for k, _ in rows), default=0)
    for key, value in rows:
        s.out.print(f"  {key + ':':<{width + 1}} {value}", markup=False, highlight=False)


def show_error(err: BaseException) -> int:
    """One block (what, why, fix) on stderr; the traceback only with -v. Returns the exit code."""
    s = _session
    if s.display is not None:
        s.display.close()
    log = logging.getLogger(__name__)
    # INFO: the file keeps it; the console shows the block below instead
    log.info("failed:\n%s", "".join(traceback.format_exception(err)).rstrip())
    if isinstance(err, MlsdError):
        code = int(getattr(err, "exit_code", 1))
        lines = [f"[bold red]error:[/] {_escape(err.what)}"]
        if err.why:
            lines.append(f"  [bold]why:[/] {_escape(err.why)}")
        if err.fix:
            lines.append(f"  [bold]fix:[/] {_escape(err.fix)}")
    else:
        code = 1
        lines = [f"[bold red]error:[/] {_escape(type(err).__name__ + ': ' + str(err))}"]
        lines.append("  [bold]why:[/] an unexpected failure inside mlsd-ray or a library")
    if s.verbosity >= 1:
        s.err.print("".join(traceback.format_exception(err)), markup=False, highlight=False)
    elif s.log_path:
        lines.append(f"  [dim]traceback in {s.log_path} (or run again with -v)[/]")
    else:
        lines.append("  [dim]run again with -v for the traceback[/]")
    for line in lines:
        s.err.print(line, markup=True, highlight=False)
    return code
