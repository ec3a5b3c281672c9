"""Delayed labels from where they really arrive: a PostgreSQL table, an event log of JSON
lines / Parquet / CSV files (local or ``s3://``), or a NATS JetStream stream.

Every source is read into one shape: ``key`` (the request id or entity), ``label`` (a float),
``event_ts`` (UTC) and ``_source``. Rows that cannot be used (no key, a label that is not a
number, a time that does not parse, a message that is not JSON) are returned apart as
quarantine rows with a ``_reason``, as ETL does with broken rows; nothing is silently dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pandas as pd
import pyarrow.fs as pafs

from mlsd_ray import storage
from mlsd_ray.errors import DataError, SourceError
from mlsd_ray.monitor.card import Feedback, FeedbackSource

log = logging.getLogger(__name__)

KEY, LABEL, EVENT_TS, SOURCE, REASON = "key", "label", "event_ts", "_source", "_reason"
CONNECT_TIMEOUT_S = 5.0


def read_feedback_sources(feedback: Feedback) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(good rows, quarantined rows) of every source of ``feedback``."""
    good, bad = [], []
    for source in feedback.sources:
        raw = read_source(source)
        ok, rejected = normalise(raw, feedback, describe(source))
        good.append(ok)
        bad.append(rejected)
        log.info("feedback %s: %d rows, %d quarantined", describe(source), len(ok), len(rejected))
    if not good:
        return _empty_good(), pd.DataFrame(columns=[SOURCE, REASON, "raw"])
    return pd.concat(good, ignore_index=True), pd.concat(bad, ignore_index=True)


def describe(source: FeedbackSource) -> str:
    from mlsd_ray.data.database import redact

    where = redact(source.uri)
    if source.kind == "postgres":
        return f"{where}#table={source.table}"
    if source.kind == "nats":
        return f"{where}#stream={source.stream}&subject={source.subject}"
    return where


def read_source(source: FeedbackSource) -> pd.DataFrame:
    """The raw rows of one source; each has a ``raw`` column when it was not a table row."""
    if source.kind == "postgres":
        return read_postgres(source.uri, str(source.table))
    if source.kind == "nats":
        return asyncio.run(
            read_nats(source.uri, str(source.stream), str(source.subject), source.max_messages)
        )
    return read_files(source.uri)


# -- the three sources -------------------------------------------------------------------
def read_postgres(uri: str, table: str) -> pd.DataFrame:
    from psycopg import sql

    from mlsd_ray.data.database import connect, redact

    try:
        with connect(uri) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(*table.split("."))))
            columns = [d.name for d in cur.description or []]
            rows = cur.fetchall()
    except Exception as err:
        raise SourceError(
            f"Feedback table {table!r} at {redact(uri)} could not be read: {err}",
            fix="check monitoring.loop.feedback.sources (uri, table) and that the database "
            "is up; put a password in PGPASSWORD, not in the card",
        ) from None
    return pd.DataFrame(rows, columns=columns)


def read_files(uri: str) -> pd.DataFrame:
    """JSON lines (.jsonl/.json), Parquet or CSV files at a path, folder, glob or s3 prefix.

    A JSON line that does not parse becomes a row with only ``raw`` set (quarantined later).
    """
    fs, path = storage.filesystem(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.Directory:
        files = sorted(
            f.path
            for f in fs.get_file_info(pafs.FileSelector(path, recursive=True))
            if f.type == pafs.FileType.File and not f.base_name.startswith((".", "_"))
        )
    elif info.type == pafs.FileType.File:
        files = [path]
    else:
        raise DataError(
            f"No feedback at {uri!r}.",
            fix="point monitoring.loop.feedback.sources[].uri at a file or folder of "
            "JSON lines, Parquet or CSV",
        )
    frames = []
    for f in files:
        if f.endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq

            frame = pq.read_table(f, filesystem=fs).to_pandas()
        else:
            with fs.open_input_stream(f) as stream:
                text = stream.read().decode("utf-8", errors="replace")
            frame = _parse_json_lines(text) if not f.endswith((".csv", ".tsv")) else _csv(text, f)
        frames.append(frame.assign(_file=f))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _csv(text: str, name: str) -> pd.DataFrame:
    import io

    return pd.read_csv(io.StringIO(text), sep="\t" if name.endswith(".tsv") else ",", dtype=str)


def _parse_json_lines(text: str) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for line in text.splitlines():
        if line.strip():
            rows.append(_parse_json(line))
    return pd.DataFrame(rows)


def _parse_json(raw: str | bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        value = None
    if not isinstance(value, dict):
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        return {"raw": text[:500]}
    return value


async def read_nats(uri: str, stream: str, subject: str, max_messages: int) -> pd.DataFrame:
    """Every message of ``subject`` in JetStream ``stream``, oldest first (JSON objects).

    An ordered, ephemeral consumer from the start of the stream: reading acknowledges nothing,
    so every run of the monitor sees the whole stream (its retention bounds what is kept).
    """
    import nats
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js.api import DeliverPolicy
    from nats.js.errors import NotFoundError

    try:
        # nats-py can retry a refused connection forever: bound the whole attempt.
        nc = await asyncio.wait_for(
            nats.connect(
                uri,
                connect_timeout=CONNECT_TIMEOUT_S,
                max_reconnect_attempts=0,
                allow_reconnect=False,
                error_cb=_quiet,
            ),
            timeout=CONNECT_TIMEOUT_S,
        )
    except Exception as err:
        raise SourceError(
            f"NATS at {uri} is not reachable: {err!r}",
            fix="start nats-server with JetStream (-js) or fix the feedback source's uri",
        ) from None
    rows: list[dict[str, Any]] = []
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info(stream)
        except NotFoundError:
            raise SourceError(
                f"NATS JetStream has no stream {stream!r} at {uri}.",
                fix="create the stream, or fix monitoring.loop.feedback.sources[].stream",
            ) from None
        if info.state.messages == 0:
            return pd.DataFrame()
        sub = await js.subscribe(
            subject, stream=stream, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )
        try:
            while len(rows) < max_messages:
                try:
                    msg = await sub.next_msg(timeout=2.0)
                except NatsTimeout:
                    break  # nothing (more) on this subject
                row = _parse_json(msg.data)
                row["_nats_ts"] = msg.metadata.timestamp
                rows.append(row)
                if msg.metadata.num_pending == 0:
                    break
        finally:
            await sub.unsubscribe()
    finally:
        await nc.close()
    return pd.DataFrame(rows)


async def _quiet(err: Exception) -> None:
    log.debug("nats: %s", err)


# -- one shape -----------------------------------------------------------------------------
def _empty_good() -> pd.DataFrame:
    return pd.DataFrame(
        {
            KEY: pd.Series(dtype=str),
            LABEL: pd.Series(dtype=float),
            EVENT_TS: pd.Series(dtype="datetime64[ns, UTC]"),
            SOURCE: pd.Series(dtype=str),
        }
    )


def parse_times(values: pd.Series) -> pd.Series:
    """ISO 8601 strings, datetimes or epoch seconds -> UTC timestamps (NaT where not one)."""
    if pd.api.types.is_datetime64_any_dtype(values):  # a database's timestamp column
        return pd.to_datetime(values, utc=True)
    numeric = pd.to_numeric(values, errors="coerce")
    as_epoch = pd.to_datetime(numeric, unit="s", utc=True, errors="coerce")
    as_text = pd.to_datetime(
        values.where(numeric.isna()).astype(object), utc=True, errors="coerce", format="mixed"
    )
    return as_epoch.fillna(as_text)


def normalise(
    raw: pd.DataFrame, feedback: Feedback, source: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows with key/label/event_ts/_source, quarantined rows with _reason and raw)."""
    if raw.empty:
        return _empty_good(), pd.DataFrame(columns=[SOURCE, REASON, "raw"])
    n = len(raw)
    missing = pd.Series("", index=raw.index)
    get = lambda c: raw[c] if c in raw.columns else pd.Series([None] * n, index=raw.index)  # noqa: E731
    key = get(feedback.key)
    label = pd.to_numeric(get(feedback.label_column), errors="coerce")
    when = get(feedback.time_column)
    if "_nats_ts" in raw.columns:  # a message without its own time: when it was published
        when = when.where(when.notna(), raw["_nats_ts"])
    ts = parse_times(when)
    reason = missing.copy()
    unparsed = raw["raw"].notna() if "raw" in raw.columns else pd.Series(False, index=raw.index)
    reason[unparsed] = "not a JSON object"
    no_key = ~unparsed & (key.isna() | (key.astype(str).str.strip() == ""))
    reason[no_key] = f"no {feedback.key!r}"
    bad_label = ~unparsed & ~no_key & label.isna()
    reason[bad_label] = f"{feedback.label_column!r} is missing or not a number"
    bad_ts = ~unparsed & ~no_key & ~bad_label & ts.isna()
    reason[bad_ts] = f"{feedback.time_column!r} is missing or not a time"
    bad = reason != ""
    good = pd.DataFrame(
        {
            KEY: key[~bad].astype(str).to_numpy(),
            LABEL: label[~bad].astype(float).to_numpy(),
            EVENT_TS: ts[~bad].to_numpy(),
            SOURCE: source,
        }
    )
    good[EVENT_TS] = pd.to_datetime(good[EVENT_TS], utc=True)
    shown = raw.drop(columns=[c for c in ("_nats_ts",) if c in raw.columns])
    quarantine = pd.DataFrame(
        {
            SOURCE: source,
            REASON: reason[bad].to_numpy(),
            "raw": [
                r.get("raw") if isinstance(r.get("raw"), str) else json.dumps(r, default=str)
                for r in shown[bad].to_dict(orient="records")
            ],
        }
    )
    return good, quarantine
