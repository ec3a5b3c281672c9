"""The prediction logger on the local filesystem (S3 is in tests/integration)."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlsd_ray.monitor.log import (
    PredictionLogger,
    log_schema,
    read_prediction_log,
    sampled,
    text_digest,
)

FIELDS = {"text": "text", "n": "int", "x": "float", "flag": "bool", "kind": "category"}


def _frame(n: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "text": [f"post {i}" for i in range(start, start + n)],
            "n": list(range(start, start + n)),
            "x": [i / 2 for i in range(start, start + n)],
            "flag": [i % 2 == 0 for i in range(start, start + n)],
            "kind": ["a"] * n,
        }
    )


def _files(path: Path) -> list[Path]:
    return sorted(path.rglob("*.parquet"))


def test_flush_every_n_records(tmp_path: Path):
    with PredictionLogger(str(tmp_path), flush_every_n=4, flush_every_s=600, fields=FIELDS) as log:
        log.log("r1", _frame(3), [0.1, 0.2, 0.3], "v1")
        time.sleep(0.2)
        assert _files(tmp_path) == [] and log.pending == 3  # under N: still buffered
        log.log("r2", _frame(2, start=3), [0.4, 0.5], "v1")
        for _ in range(50):
            if _files(tmp_path):
                break
            time.sleep(0.05)
        assert len(_files(tmp_path)) == 1 and log.pending == 0
    frame = read_prediction_log(str(tmp_path))
    assert frame["request_id"].tolist() == ["r1"] * 3 + ["r2"] * 2
    assert frame["probability"].tolist() == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert frame["n"].tolist() == [0, 1, 2, 3, 4]
    assert (frame["model_version"] == "v1").all()
    assert str(frame["ts"].dt.tz) == "UTC"


def test_flush_every_s_seconds(tmp_path: Path):
    log = PredictionLogger(str(tmp_path), flush_every_n=1000, flush_every_s=0.2, fields=FIELDS)
    log.log("r1", _frame(1), [0.9], "v1")
    deadline = time.monotonic() + 5
    while not _files(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_files(tmp_path)) == 1
    log.close()
    assert len(_files(tmp_path)) == 1  # nothing left to write


def test_close_writes_the_rest_and_later_records_are_dropped(tmp_path: Path):
    log = PredictionLogger(str(tmp_path / "log"), flush_every_n=1000, flush_every_s=600)
    log.log("r1", [{"text": "a"}, {"text": "b"}], [0.1, 0.2], "v1")
    assert read_prediction_log(str(tmp_path / "log")).empty
    log.close()
    log.close()  # idempotent
    log.log("r2", [{"text": "c"}], [0.3], "v1")
    frame = read_prediction_log(str(tmp_path / "log"))
    assert frame["text"].tolist() == ["a", "b"]
    assert log.records_written == 2 and log.files_written == 1


def test_files_have_unique_names_and_the_fixed_schema(tmp_path: Path):
    log = PredictionLogger(str(tmp_path), flush_every_n=1000, flush_every_s=600, fields=FIELDS)
    for i in range(5):
        log.log(f"r{i}", _frame(1, start=i), [0.5], "v1")
        log.flush()
    empty = _frame(1).astype(object)
    empty.loc[0, ["n", "x", "flag"]] = None  # a flush of nulls keeps the column types
    log.log("r5", empty, [0.5], "v1")
    log.close()
    files = _files(tmp_path)
    assert len(files) == 6 and len({f.name for f in files}) == 6
    assert not list(tmp_path.rglob("*.tmp"))
    for f in files:
        assert pq.read_schema(f).remove_metadata() == log_schema(FIELDS)
        assert f.parent.name.startswith("hour=") and f.parent.parent.name.startswith("date=")
    frame = read_prediction_log(str(tmp_path))
    assert len(frame) == 6 and frame["n"].isna().sum() == 1


def test_multiclass_scores_log_the_top_probability(tmp_path: Path):
    with PredictionLogger(str(tmp_path), 10, 600) as log:
        log.log("r", [{"text": "a"}], [[0.2, 0.7, 0.1]], "v1")
    assert read_prediction_log(str(tmp_path))["probability"].tolist() == [0.7]


def test_bad_arguments():
    with pytest.raises(ValueError, match="clash"):
        log_schema({"probability": "float"})
    with pytest.raises(ValueError):
        PredictionLogger("x", flush_every_n=0)
    with pytest.raises(ValueError, match="sample_rate"):
        PredictionLogger("x", sample_rate=1.5)
    with PredictionLogger("unused", 10, 600) as log:
        log.log("r", [{"a": 1}, {"a": 2}], [0.1], "v1")  # counted, never raised
        assert log.stats()["rejected_records"] == 2 and log.pending == 0


def test_reading_nothing(tmp_path: Path):
    assert read_prediction_log(str(tmp_path / "absent")).empty
    assert read_prediction_log(str(tmp_path)).empty
    pq.write_table(pa.table({"a": [1]}), tmp_path / "x.parquet.tmp")  # a half-written file
    assert read_prediction_log(str(tmp_path)).empty


def test_rows_carry_name_version_arm_label_and_sampling(tmp_path: Path):
    with PredictionLogger(str(tmp_path), 1000, 600, FIELDS, model_name="m", arm="canary") as log:
        log.log("r1", _frame(2), [0.1, 0.9], "3", labels=["no", "yes"])
        log.log("r2", _frame(1), [0.5], "4", arm="shadow", model_name="other")
    frame = read_prediction_log(str(tmp_path))
    assert frame["model_name"].tolist() == ["m", "m", "other"]
    assert frame["arm"].tolist() == ["canary", "canary", "shadow"]
    assert frame["model_version"].tolist() == ["3", "3", "4"]
    assert frame["label"].tolist()[:2] == ["no", "yes"] and frame["label"].isna().iloc[2]
    assert (frame["sample_rate"] == 1.0).all()


def test_sampling_is_decided_by_request_id(tmp_path: Path):
    ids = [f"req-{i}" for i in range(2000)]
    kept = [i for i in ids if sampled(i, 0.25)]
    assert 400 < len(kept) < 600  # about a quarter
    assert kept == [i for i in ids if sampled(i, 0.25)]  # the same ids every time
    with PredictionLogger(str(tmp_path), 10_000, 600, FIELDS, sample_rate=0.25) as log:
        for i in ids[:400]:
            log.log(i, _frame(1), [0.5], "1")
    frame = read_prediction_log(str(tmp_path))
    assert set(frame["request_id"]) == {i for i in ids[:400] if sampled(i, 0.25)}
    assert log.stats()["sampled_out_records"] == 400 - len(frame)
    assert (frame["sample_rate"] == 0.25).all()


def test_text_is_hashed_with_its_length(tmp_path: Path):
    with PredictionLogger(str(tmp_path), 10, 600, {"text": "text"}, log_text="hash") as log:
        log.log("r", [{"text": "hello world"}, {"text": None}], [0.2, 0.3], "1")
    frame = read_prediction_log(str(tmp_path))
    assert frame["text"].iloc[0] == text_digest("hello world") and len(frame["text"].iloc[0]) == 16
    assert "hello" not in frame.to_csv()
    assert frame["text__length"].iloc[0] == 11 and pd.isna(frame["text__length"].iloc[1])


def test_a_store_that_refuses_is_counted_and_never_fails_the_caller(tmp_path: Path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the log folder should be")
    log = PredictionLogger(
        str(blocker / "log"),
        flush_every_n=2,
        flush_every_s=0.05,
        fields=FIELDS,
        max_pending_rows=5,
    )
    for i in range(20):
        log.log(f"r{i}", _frame(1), [0.5], "1")  # never raises
        time.sleep(0.01)
    deadline = time.monotonic() + 5
    while log.stats().get("failed_flushes", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    log.close()
    stats = log.stats()
    assert stats["failed_flushes"] >= 2 and stats["records_written"] == 0
    lost = stats.get("dropped_full_records", 0) + stats.get("dropped_failed_records", 0)
    assert lost + stats["pending_records"] == 20 and stats["pending_records"] <= 5


def test_reading_a_time_range_skips_other_hours(tmp_path: Path):
    from datetime import datetime, timezone

    for hour in (1, 2, 3):
        part = tmp_path / f"date=2026-01-01/hour={hour:02d}"
        part.mkdir(parents=True)
        ts = datetime(2026, 1, 1, hour, 30, tzinfo=timezone.utc)
        pq.write_table(pa.table({"request_id": [f"r{hour}"], "ts": [ts]}), part / "p.parquet")
    (tmp_path / "date=2026-01-01/hour=03/p.parquet").write_text("not parquet: must not be read")
    frame = read_prediction_log(
        str(tmp_path),
        start=datetime(2026, 1, 1, 1, 45, tzinfo=timezone.utc),
        end=datetime(2026, 1, 1, 3, 0, tzinfo=timezone.utc),
    )
    assert frame["request_id"].tolist() == ["r2"]
