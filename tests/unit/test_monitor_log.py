"""The prediction logger on the local filesystem (S3 is in tests/integration)."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlsd_ray.monitor.log import PredictionLogger, log_schema, read_prediction_log

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
    return sorted(path.glob("*.parquet"))


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
    assert not list(tmp_path.glob("*.tmp"))
    for f in files:
        assert pq.read_schema(f).remove_metadata() == log_schema(FIELDS)
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
    with PredictionLogger("unused", 10, 600) as log, pytest.raises(ValueError, match="2 inputs"):
        log.log("r", [{"a": 1}, {"a": 2}], [0.1], "v1")


def test_reading_nothing(tmp_path: Path):
    assert read_prediction_log(str(tmp_path / "absent")).empty
    assert read_prediction_log(str(tmp_path)).empty
    pq.write_table(pa.table({"a": [1]}), tmp_path / "x.parquet.tmp")  # a half-written file
    assert read_prediction_log(str(tmp_path)).empty
