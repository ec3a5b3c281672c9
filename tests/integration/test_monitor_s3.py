"""The prediction log on the S3 API (moto on loopback), read back by the monitor stage."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import pytest

from mlsd_ray import storage
from mlsd_ray.monitor.log import PredictionLogger, read_prediction_log
from mlsd_ray.monitor.stage import run_monitor
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import load_card
from tests.conftest import REPO

pytestmark = pytest.mark.integration


def test_log_to_s3_and_monitor(s3_bucket, tmp_path: Path):
    prefix = f"s3://{s3_bucket}/predictions-{uuid.uuid4().hex[:8]}"
    card = load_card(
        REPO / "systems" / "harmful_content.yaml",
        overrides=[f"monitoring.prediction_log_uri={prefix}"],
    )
    workdir = Workdir.of(tmp_path / "work")
    assert workdir.prediction_log_uri(card) == prefix

    rng = np.random.default_rng(0)
    words = np.array(["nice", "day", "photo", "idiot", "trash", "game"])
    ref = pd.DataFrame({"text": [" ".join(rng.choice(words, 5)) for _ in range(300)]})
    split = Path(workdir.split_uri(card, "train"))
    split.mkdir(parents=True)
    ref.assign(label=0).to_parquet(split / "part-0.parquet")

    with PredictionLogger(
        prefix, flush_every_n=50, flush_every_s=600, fields={"text": "text"}
    ) as log:
        for i in range(4):
            texts = [" ".join(rng.choice(words, 30)) + " http://x.example" for _ in range(40)]
            log.log(f"r{i}", [{"text": t} for t in texts], rng.uniform(size=40), "7")
    assert log.records_written == 160
    fs, path = storage.filesystem(prefix)
    found = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    names = [f.path for f in found if f.type == pafs.FileType.File]
    assert len(names) == log.files_written and all(n.endswith(".parquet") for n in names)
    assert all("/date=" in n and "/hour=" in n for n in names)  # partitioned by date and hour

    frame = read_prediction_log(prefix)
    assert len(frame) == 160 and set(frame["request_id"]) == {"r0", "r1", "r2", "r3"}
    summary = run_monitor(card, workdir, score_reference=False)
    assert summary["features"]["text.char_length"]["status"] == "alert"
