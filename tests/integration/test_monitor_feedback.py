"""Delayed labels from the real sources on this machine: PostgreSQL, NATS JetStream and an
event log on the loopback S3 server, joined to a prediction log written by the logger.

Names are unique per run (table, stream, subject, prefix) and removed afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from mlsd_ray import storage
from mlsd_ray.errors import SourceError
from mlsd_ray.monitor.card import Feedback, FeedbackSource
from mlsd_ray.monitor.delayed import run_delayed
from mlsd_ray.monitor.feedback import read_feedback_sources
from mlsd_ray.monitor.log import PredictionLogger
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import load_card

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PG = os.environ.get("MLSD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
NATS = os.environ.get("MLSD_TEST_NATS", "nats://127.0.0.1:4222")
RUN = uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def pg_table() -> Iterator[str]:
    import psycopg

    name = f"i12_verdicts_{RUN}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} (request_id text, label text, ts timestamptz)")
        conn.execute(
            f"INSERT INTO {name} VALUES ('pg-0', '1', '2026-01-01T00:30:00Z'),"
            "('pg-1', '0', '2026-01-01T00:31:00Z'), ('pg-1', '1', '2026-01-01T00:40:00Z'),"
            "('ghost', '1', '2026-01-01T00:31:00Z'), ('pg-2', 'maybe', '2026-01-01T00:31:00Z')"
        )
    yield name
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")


@pytest.fixture(scope="module")
def nats_stream() -> Iterator[tuple[str, str]]:
    import nats

    stream, subject = f"I12_FEEDBACK_{RUN}", f"i12.{RUN}.feedback"

    async def setup() -> None:
        nc = await nats.connect(NATS, connect_timeout=3)
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[f"i12.{RUN}.>"])
        messages = [
            {"request_id": "nats-0", "label": 1, "ts": "2026-01-01T00:20:00Z"},
            {"request_id": "nats-1", "label": 0},  # no ts: the publish time (late by far)
            {"label": 1, "ts": "2026-01-01T00:20:00Z"},  # no key: quarantined
        ]
        for m in messages:
            await js.publish(subject, json.dumps(m).encode())
        await js.publish(subject, b"not json at all")
        await nc.close()

    async def teardown() -> None:
        nc = await nats.connect(NATS, connect_timeout=3)
        await nc.jetstream().delete_stream(stream)
        await nc.close()

    asyncio.run(setup())
    yield stream, subject
    asyncio.run(teardown())


@pytest.fixture()
def s3_events(s3_bucket: str) -> Iterator[str]:
    prefix = f"s3://{s3_bucket}/i12-feedback-{RUN}"
    lines = [
        {"request_id": "s3-0", "label": 0, "ts": "2026-01-01T00:05:00Z"},
        {"request_id": "s3-1", "label": 1, "ts": 1767226500},  # epoch: 00:15
    ]
    storage.write_text(
        storage.join(prefix, "day=1/events.jsonl"), "\n".join(json.dumps(x) for x in lines) + "\n"
    )
    yield prefix
    storage.delete_dir(prefix)


def test_three_real_sources_join_to_a_real_log(
    tmp_path: Path, pg_table: str, nats_stream: tuple[str, str], s3_events: str
) -> None:
    stream, subject = nats_stream
    card = load_card(
        REPO / "systems" / "event_registration.yaml",
        overrides=[
            "monitoring.loop.feedback.window_s=3600",
            "monitoring.loop.feedback.sources="
            + json.dumps(
                [
                    {"kind": "postgres", "uri": PG, "table": pg_table},
                    {"kind": "nats", "uri": NATS, "stream": stream, "subject": subject},
                    {"kind": "file", "uri": s3_events},
                ]
            ),
        ],
    )
    workdir = Workdir.of(tmp_path)
    ids = [f"{s}-{i}" for s in ("pg", "nats", "s3") for i in range(3)]
    with PredictionLogger(workdir.prediction_log_uri(card), 1000, 600) as logger:
        for i, rid in enumerate(ids):
            logger.log(rid, [{"PageValues": float(i)}], [0.9 if i % 2 else 0.1], "1")
    # Pretend the predictions were made at midnight: the log's time is the serving time.
    from mlsd_ray.monitor.log import read_prediction_log

    frame = read_prediction_log(workdir.prediction_log_uri(card))
    frame["ts"] = pd.Timestamp("2026-01-01T00:00:00Z")
    from mlsd_ray.monitor.delayed import collect

    joined, report = collect(
        card, workdir, now=pd.Timestamp("2026-01-02T00:00:00Z"), threshold=0.5, log_frame=frame
    )
    state = dict(zip(joined["request_id"], joined["label_state"], strict=True))
    assert state == {
        "pg-0": "labelled",
        "pg-1": "labelled",  # its first verdict; the second is a duplicate
        "pg-2": "never",  # its verdict 'maybe' was quarantined
        "nats-0": "labelled",
        "nats-1": "late",  # published now, a year after midnight
        "nats-2": "never",
        "s3-0": "labelled",
        "s3-1": "labelled",
        "s3-2": "never",
    }
    c = report["counts"]
    assert (c["unknown_key"], c["duplicate"], c["quarantined"]) == (1, 1, 3)
    assert report["quarantine_reasons"] == {
        "'label' is missing or not a number": 1,
        "no 'request_id'": 1,
        "not a JSON object": 1,
    }
    assert report["overall"]["labelled"] == 5
    assert set(report["by_version_arm"]) == {"1/champion"}


def test_stage_writes_report_and_quarantine(tmp_path: Path, pg_table: str) -> None:
    card = load_card(
        REPO / "systems" / "event_registration.yaml",
        overrides=[
            "monitoring.loop.feedback.sources="
            + json.dumps([{"kind": "postgres", "uri": PG, "table": pg_table}])
        ],
    )
    workdir = Workdir.of(tmp_path)
    with PredictionLogger(workdir.prediction_log_uri(card), 1000, 600) as logger:
        logger.log("pg-0", [{"PageValues": 1.0}], [0.8], "1", arm="canary")
    report = run_delayed(card, workdir)
    on_disk = json.loads((workdir.reports / "online" / "delayed_metrics.json").read_text())
    assert on_disk["counts"] == report["counts"] and report["counts"]["quarantined"] == 1
    q = pd.read_parquet(workdir.reports / "online" / "quarantine.parquet")
    assert q["_reason"].tolist() == ["'label' is missing or not a number"]
    # The label came 30 min after midnight, the prediction now: a label before its prediction
    # has a negative delay and still joins by request id.
    assert report["by_version_arm"]["1/canary"]["served"] == 1


def test_unreachable_sources_name_the_fix() -> None:
    bad_nats = Feedback(
        sources=[FeedbackSource(kind="nats", uri="nats://127.0.0.1:1", stream="S", subject="s")]
    )
    with pytest.raises(SourceError, match="not reachable"):
        read_feedback_sources(bad_nats)
    bad_pg = Feedback(sources=[FeedbackSource(kind="postgres", uri=PG, table=f"absent_{RUN}")])
    with pytest.raises(SourceError, match="PGPASSWORD"):
        read_feedback_sources(bad_pg)
