"""The prediction log: one row per served prediction, written as Parquet files.

Serving must not wait on storage, so records are buffered in memory and a background thread
writes them every ``flush_every_n`` records or ``flush_every_s`` seconds, whichever comes first;
``close()`` (called when a replica shuts down) writes what is left. Every flush writes a new
file with a unique, time-ordered name, so several replicas can log to one prefix without
coordinating, and a reader sees only complete files.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mlsd_ray import storage

log = logging.getLogger(__name__)

REQUEST_ID, TS, MODEL_VERSION, PROBABILITY = "request_id", "ts", "model_version", "probability"
RESERVED = (REQUEST_ID, TS, MODEL_VERSION, PROBABILITY)

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


def log_schema(fields: Mapping[str, str]) -> pa.Schema:
    """The Arrow schema of the log for input ``fields`` (name -> card field type)."""
    clash = sorted(set(fields) & set(RESERVED))
    if clash:
        raise ValueError(f"input field(s) {clash} clash with the log's own columns {RESERVED}")
    return pa.schema(
        [
            (REQUEST_ID, pa.string()),
            (TS, pa.timestamp("us", tz="UTC")),
            (MODEL_VERSION, pa.string()),
            *((name, _ARROW_TYPES.get(type_, pa.string())) for name, type_ in fields.items()),
            (PROBABILITY, pa.float64()),
        ]
    )


class PredictionLogger:
    """Buffer prediction records and flush them as Parquet files under ``uri``.

    ``fields`` (input name -> card field type) fixes the column types; without it they are
    inferred per file. Thread-safe: ``log`` may be called from any thread.
    """

    def __init__(
        self,
        uri: str,
        flush_every_n: int = 64,
        flush_every_s: float = 5.0,
        fields: Mapping[str, str] | None = None,
    ) -> None:
        if flush_every_n < 1 or flush_every_s <= 0:
            raise ValueError("flush_every_n must be >= 1 and flush_every_s > 0")
        self.uri = uri
        self.flush_every_n = flush_every_n
        self.flush_every_s = flush_every_s
        self.schema = log_schema(fields) if fields is not None else None
        self.records_written = 0
        self.files_written = 0
        self._buffer: list[dict[str, Any]] = []
        self._lock = threading.Lock()  # guards _buffer
        self._write_lock = threading.Lock()  # one flush at a time
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    # -- recording ---------------------------------------------------------------------
    def log(
        self,
        request_id: str,
        inputs: pd.DataFrame | Sequence[Mapping[str, Any]],
        probabilities: Sequence[Any] | np.ndarray,
        model_version: str,
    ) -> None:
        """Record one row per instance; ``inputs`` and ``probabilities`` are index-aligned."""
        rows = inputs.to_dict(orient="records") if isinstance(inputs, pd.DataFrame) else inputs
        if len(rows) != len(probabilities):
            raise ValueError(f"{len(rows)} inputs but {len(probabilities)} probabilities")
        now = datetime.now(timezone.utc)
        records = [
            {
                REQUEST_ID: request_id,
                TS: now,
                MODEL_VERSION: str(model_version),
                **row,
                PROBABILITY: _scalar_probability(p),
            }
            for row, p in zip(rows, probabilities, strict=True)
        ]
        with self._lock:
            if self._closed:
                log.warning("prediction log %s is closed; dropping %d records", self.uri, len(rows))
                return
            self._buffer.extend(records)
            full = len(self._buffer) >= self.flush_every_n
        if full:
            self._wake.set()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._buffer)

    # -- writing -----------------------------------------------------------------------
    def flush(self) -> str | None:
        """Write buffered records now; returns the file written, or None if there was none."""
        with self._write_lock:
            with self._lock:
                records, self._buffer = self._buffer, []
            if not records:
                return None
            table = pa.Table.from_pylist(records, schema=self.schema)
            name = (
                f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            )
            target = storage.join(self.uri, f"part-{name}.parquet")
            try:
                storage.makedirs(self.uri)
                fs, path = storage.filesystem(target)
                # Readers must never see half a file: an S3 object appears only once complete;
                # a local file is written under a temporary name and renamed.
                tmp = path if storage.is_remote(target) else path + ".tmp"
                with fs.open_output_stream(tmp) as out:
                    pq.write_table(table, out)
                if tmp != path:
                    fs.move(tmp, path)
            except Exception:
                # Keep the records for the next attempt rather than lose them.
                with self._lock:
                    self._buffer[:0] = records
                raise
            self.records_written += len(records)
            self.files_written += 1
            log.debug("prediction log: wrote %d records to %s", len(records), target)
            return target

    def _run(self) -> None:
        while True:
            self._wake.wait(timeout=self.flush_every_s)
            self._wake.clear()
            if self._closed:
                return
            try:
                self.flush()
            except Exception:
                log.exception("prediction log: flush to %s failed; will retry", self.uri)
                time.sleep(min(self.flush_every_s, 1.0))

    def close(self) -> None:
        """Stop the background thread and write what is left (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._wake.set()
        self._thread.join(timeout=10)
        self.flush()
        log.info(
            "prediction log %s closed: %d records in %d files",
            self.uri,
            self.records_written,
            self.files_written,
        )

    def __enter__(self) -> PredictionLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _scalar_probability(p: Any) -> float:
    """Binary models log P(positive); multiclass ones the probability of the top class."""
    return float(np.max(p)) if np.ndim(p) > 0 else float(p)


def read_prediction_log(uri: str) -> pd.DataFrame:
    """Every record under ``uri`` as one DataFrame, oldest first (empty if there is none)."""
    fs, path = storage.filesystem(uri)
    info = fs.get_file_info(path)
    if info.type != pafs.FileType.Directory:
        return pd.DataFrame()
    selector = pafs.FileSelector(path, recursive=True)
    files = sorted(
        f.path
        for f in fs.get_file_info(selector)
        if f.type == pafs.FileType.File and f.path.endswith(".parquet")
    )
    if not files:
        return pd.DataFrame()
    # File by file, so that files written with different inferred types still combine.
    tables = [pq.read_table(f, filesystem=fs) for f in files]
    frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    if TS in frame.columns:
        frame = frame.sort_values(TS, kind="stable").reset_index(drop=True)
    return frame
