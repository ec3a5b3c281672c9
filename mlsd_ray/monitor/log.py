"""The prediction log: one row per served prediction, Parquet partitioned by date and hour.

Serving must never wait on, or fail because of, the log. ``log()`` only appends a reference to
the request's inputs and scores to a bounded in-memory queue (a few microseconds); a background
thread turns queued requests into rows, batches them and writes one Parquet file per
``date=YYYY-MM-DD/hour=HH`` partition every ``flush_every_n`` rows or ``flush_every_s``
seconds. Anything that goes wrong in ``log()`` is caught and counted; a write that fails is
retried on the next flush, and rows beyond ``max_pending_rows`` are dropped and counted, so a
dead store costs memory up to a bound, never a request. ``stats()`` reports every counter.

Every flush writes files with unique, time-ordered names, so several replicas can log to one
prefix without coordinating, and a reader sees only complete files. ``log_text="hash"`` keeps a
short SHA-256 and the length of text inputs instead of the text itself.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import os
import threading
import time
import uuid
import zlib
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mlsd_ray import storage

log = logging.getLogger(__name__)

REQUEST_ID, TS, MODEL_VERSION, PROBABILITY = "request_id", "ts", "model_version", "probability"
MODEL_NAME, ARM, LABEL, SAMPLE_RATE = "model_name", "arm", "label", "sample_rate"
RESERVED = (REQUEST_ID, TS, MODEL_NAME, MODEL_VERSION, ARM, PROBABILITY, LABEL, SAMPLE_RATE)
ARMS = ("champion", "canary", "shadow")
#: Suffix of the length column kept beside a hashed text input.
LENGTH_SUFFIX = "__length"

# Card field type -> Arrow type. A fixed schema keeps every file of the log readable as one
# table, even when a flush happens to hold only nulls for a column.
_ARROW_TYPES: dict[str, pa.DataType] = {
    "text": pa.string(),
    "string": pa.string(),
    "category": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
}


def log_schema(fields: Mapping[str, str], log_text: str = "full") -> pa.Schema:
    """The Arrow schema of the log for input ``fields`` (name -> card field type)."""
    clash = sorted(set(fields) & set(RESERVED))
    if clash:
        raise ValueError(f"input field(s) {clash} clash with the log's own columns {RESERVED}")
    inputs: list[tuple[str, pa.DataType]] = []
    for name, type_ in fields.items():
        inputs.append((name, _ARROW_TYPES.get(type_, pa.string())))
        if log_text == "hash" and type_ == "text":
            inputs.append((name + LENGTH_SUFFIX, pa.int64()))
    return pa.schema(
        [
            (REQUEST_ID, pa.string()),
            (TS, pa.timestamp("us", tz="UTC")),
            (MODEL_NAME, pa.string()),
            (MODEL_VERSION, pa.string()),
            (ARM, pa.string()),
            *inputs,
            (PROBABILITY, pa.float64()),
            (LABEL, pa.string()),
            (SAMPLE_RATE, pa.float64()),
        ]
    )


def sampled(request_id: str, rate: float) -> bool:
    """Whether a request is kept at sampling ``rate``: decided by its id, so that every arm
    and every replica keep or skip the same request (the feedback join needs that)."""
    if rate >= 1.0:
        return True
    return (zlib.crc32(request_id.encode()) & 0xFFFFFFFF) < rate * 2**32


def text_digest(text: Any) -> str | None:
    """A short, stable SHA-256 of a text input (None stays None)."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return None
    return hashlib.sha256(str(text).encode("utf-8")).hexdigest()[:16]


_Entry = tuple[str, datetime, str, str, str, Any, Any, Any]


class PredictionLogger:
    """Queue prediction records and flush them as partitioned Parquet files under ``uri``.

    ``fields`` (input name -> card field type) fixes the column types; without it they are
    inferred per file. Thread-safe: ``log`` may be called from any thread.
    """

    def __init__(
        self,
        uri: str,
        flush_every_n: int = 64,
        flush_every_s: float = 5.0,
        fields: Mapping[str, str] | None = None,
        *,
        sample_rate: float = 1.0,
        log_text: Literal["full", "hash"] = "full",
        max_pending_rows: int = 100_000,
        model_name: str = "",
        arm: str = "champion",
    ) -> None:
        if flush_every_n < 1 or flush_every_s <= 0:
            raise ValueError("flush_every_n must be >= 1 and flush_every_s > 0")
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in [0, 1]; got {sample_rate}")
        if log_text not in ("full", "hash"):
            raise ValueError(f"log_text must be 'full' or 'hash'; got {log_text!r}")
        self.uri = uri
        self.flush_every_n = flush_every_n
        self.flush_every_s = flush_every_s
        self.sample_rate = sample_rate
        self.log_text = log_text
        self.max_pending_rows = max_pending_rows
        self.model_name = model_name
        self.arm = arm
        self.fields = dict(fields) if fields is not None else None
        self.schema = log_schema(fields, log_text) if fields is not None else None
        self._text = {n for n, t in (fields or {}).items() if t == "text"}
        self.records_written = 0
        self.files_written = 0
        self.counters = collections.Counter[str]()
        self._queue: collections.deque[_Entry] = collections.deque()
        self._queued_rows = 0
        self._rows: list[dict[str, Any]] = []  # built, not yet written (kept on failure)
        self._lock = threading.Lock()  # guards _queue, _queued_rows, counters
        self._write_lock = threading.Lock()  # one flush at a time; guards _rows
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    # -- recording (the request path: cheap, never raises) ------------------------------
    def log(
        self,
        request_id: str,
        inputs: pd.DataFrame | Sequence[Mapping[str, Any]],
        probabilities: Sequence[Any] | np.ndarray,
        model_version: str,
        *,
        arm: str | None = None,
        model_name: str | None = None,
        labels: Sequence[Any] | None = None,
    ) -> None:
        """Queue one row per instance; ``inputs``, ``probabilities`` (and ``labels``) are
        index-aligned; ``arm`` and ``model_name`` default to the logger's. Never raises: a
        record that cannot be taken is counted."""
        try:
            n = len(inputs)
            if n != len(probabilities) or (labels is not None and len(labels) != n):
                self._count("rejected_records", n)
                log.error(
                    "prediction log: %d inputs but %d probabilities; request %s not logged",
                    n,
                    len(probabilities),
                    request_id,
                )
                return
            if not sampled(str(request_id), self.sample_rate):
                self._count("sampled_out_records", n)
                return
            entry = (
                str(request_id),
                datetime.now(timezone.utc),
                model_name or self.model_name,
                str(model_version),
                arm or self.arm,
                inputs,
                probabilities,
                labels,
            )
            with self._lock:
                if self._closed:
                    self.counters["dropped_closed_records"] += n
                    return
                if self._queued_rows + n > self.max_pending_rows:
                    self.counters["dropped_full_records"] += n
                    return
                self._queue.append(entry)
                self._queued_rows += n
                self.counters["logged_records"] += n
                full = self._queued_rows >= self.flush_every_n
            if full:
                self._wake.set()
        except Exception:  # the request must be answered whatever happens here
            self._count("rejected_records", 1)
            log.exception("prediction log: record of request %s not taken", request_id)

    def _count(self, name: str, n: int) -> None:
        with self._lock:
            self.counters[name] += n

    @property
    def pending(self) -> int:
        with self._lock:
            return self._queued_rows + len(self._rows)

    def stats(self) -> dict[str, Any]:
        """Counters for reports and metrics: logged, written, dropped, failed flushes..."""
        with self._lock:
            out: dict[str, Any] = dict(self.counters)
            out["pending_records"] = self._queued_rows + len(self._rows)
        out.update(records_written=self.records_written, files_written=self.files_written)
        return out

    # -- writing (the background thread) -------------------------------------------------
    def _drain(self) -> None:
        with self._lock:
            entries = list(self._queue)
            self._queue.clear()
            self._queued_rows = 0
        for entry in entries:
            try:
                self._rows.extend(self._expand(entry))
            except Exception:
                self._count("rejected_records", len(entry[5]))
                log.exception("prediction log: request %s could not be turned into rows", entry[0])

    def _expand(self, entry: _Entry) -> list[dict[str, Any]]:
        request_id, ts, name, version, arm, inputs, probs, labels = entry
        rows = inputs.to_dict(orient="records") if isinstance(inputs, pd.DataFrame) else inputs
        out = []
        for i, (row, p) in enumerate(zip(rows, probs, strict=True)):
            row = dict(row)
            if self.log_text == "hash":
                for t in self._text & row.keys():
                    raw = row[t]
                    row[t + LENGTH_SUFFIX] = None if raw is None else len(str(raw))
                    row[t] = text_digest(raw)
            out.append(
                {
                    REQUEST_ID: request_id,
                    TS: ts,
                    MODEL_NAME: name,
                    MODEL_VERSION: version,
                    ARM: arm,
                    **row,
                    PROBABILITY: _scalar_probability(p),
                    LABEL: None if labels is None else str(labels[i]),
                    SAMPLE_RATE: self.sample_rate,
                }
            )
        return out

    def flush(self) -> list[str]:
        """Write queued records now, one file per date/hour partition; returns the files.

        Raises when the store refuses; the rows stay for the next flush (up to the bound).
        """
        with self._write_lock:
            self._drain()
            if not self._rows:
                return []
            rows, self._rows = self._rows, []
            table = pa.Table.from_pylist(rows, schema=self.schema)
            ts = table.column(TS).to_pandas()
            keys = ts.dt.strftime("date=%Y-%m-%d/hour=%H").to_numpy()
            written: list[str] = []
            done: set[str] = set()
            try:
                for key in sorted(set(keys)):
                    written.append(self._write(key, table.take(np.flatnonzero(keys == key))))
                    done.add(key)
            except Exception:
                self._count("failed_flushes", 1)
                keep = [row for row, key in zip(rows, keys, strict=True) if key not in done]
                self.records_written += len(rows) - len(keep)
                self.files_written += len(written)
                excess = len(keep) + len(self._rows) - self.max_pending_rows
                if excess > 0:  # a dead store must not eat all memory: drop the oldest
                    self._count("dropped_failed_records", excess)
                    keep = keep[excess:]
                self._rows[:0] = keep
                raise
            self.records_written += len(rows)
            self.files_written += len(written)
            return written

    def _write(self, partition: str, table: pa.Table) -> str:
        name = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        folder = storage.join(self.uri, partition)
        target = storage.join(folder, f"part-{name}.parquet")
        storage.makedirs(folder)
        fs, path = storage.filesystem(target)
        # Readers must never see half a file: an S3 object appears only once complete; a
        # local file is written under a temporary name and renamed.
        tmp = path if storage.is_remote(target) else path + ".tmp"
        with fs.open_output_stream(tmp) as out:
            pq.write_table(table, out)
        if tmp != path:
            fs.move(tmp, path)
        log.debug("prediction log: wrote %d records to %s", table.num_rows, target)
        return target

    def _run(self) -> None:
        while True:
            self._wake.wait(timeout=self.flush_every_s)
            self._wake.clear()
            if self._closed:
                return
            try:
                self.flush()
            except Exception as err:
                log.warning("prediction log: flush to %s failed (%s); will retry", self.uri, err)
                time.sleep(min(self.flush_every_s, 1.0))

    def close(self) -> None:
        """Stop the background thread and write what is left (idempotent, never raises)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._wake.set()
        self._thread.join(timeout=10)
        try:
            self.flush()
        except Exception as err:
            log.error("prediction log %s: final flush failed (%s)", self.uri, err)
        stats = self.stats()
        lost = sum(v for k, v in stats.items() if k.startswith(("dropped", "rejected")))
        (log.warning if lost or stats.get("pending_records") else log.info)(
            "prediction log %s closed: %s", self.uri, stats
        )

    def __enter__(self) -> PredictionLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _scalar_probability(p: Any) -> float:
    """Binary models log P(positive); multiclass ones the probability of the top class."""
    return float(np.max(p)) if np.ndim(p) > 0 else float(p)


def log_files(uri: str) -> list[str]:
    """Every complete Parquet file under ``uri`` (any partition depth), name-sorted."""
    fs, path = storage.filesystem(uri)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return []
    selector = pafs.FileSelector(path, recursive=True)
    return sorted(
        f.path
        for f in fs.get_file_info(selector)
        if f.type == pafs.FileType.File and f.path.endswith(".parquet")
    )


def read_prediction_log(
    uri: str, start: datetime | None = None, end: datetime | None = None
) -> pd.DataFrame:
    """Every record under ``uri`` as one DataFrame, oldest first (empty if there is none).

    ``start``/``end`` (UTC) keep records with ``start <= ts < end``; whole hour partitions
    outside the range are not read.
    """
    fs, _ = storage.filesystem(uri)
    files = [f for f in log_files(uri) if _partition_in_range(f, start, end)]
    if not files:
        return pd.DataFrame()
    # File by file, so that files written with different inferred types still combine.
    tables = [pq.read_table(f, filesystem=fs) for f in files]
    frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    if TS in frame.columns:
        if start is not None:
            frame = frame[frame[TS] >= pd.Timestamp(start)]
        if end is not None:
            frame = frame[frame[TS] < pd.Timestamp(end)]
        frame = frame.sort_values(TS, kind="stable").reset_index(drop=True)
    return frame


def _partition_in_range(path: str, start: datetime | None, end: datetime | None) -> bool:
    parts = dict(p.split("=", 1) for p in path.split("/") if p.count("=") == 1)
    if "date" not in parts or "hour" not in parts or (start is None and end is None):
        return True
    try:
        hour = pd.Timestamp(f"{parts['date']} {parts['hour']}:00", tz="UTC")
    except ValueError:
        return True
    if start is not None and hour + pd.Timedelta(hours=1) <= pd.Timestamp(start):
        return False
    return not (end is not None and hour >= pd.Timestamp(end))
