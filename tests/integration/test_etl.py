"""ETL end to end on the shared Ray cluster and the loopback S3 server, with real tweets.

A 2,000-row sample of the Davidson tweets (quoted fields spanning lines included) goes to S3 and
through ETL to S3; every row must arrive exactly once, stratified. A corrupted copy must
quarantine exactly the rows we broke, with the right reasons.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlsd_ray.data.etl import SPLITS, read_split, run_etl, split_counts
from mlsd_ray.errors import DataError, SourceError
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard, load_card
from mlsd_ray.storage import read_json

pytestmark = pytest.mark.integration

CARD = Path(__file__).resolve().parents[2] / "systems" / "harmful_content.yaml"
HARMFUL = {"0": 1, "1": 1, "2": 0}


def davidson_card(uri: str, output_uri: str) -> DesignCard:
    return load_card(
        CARD,
        overrides=[
            f"data.sources.0.uri={uri}",
            "data.sources.0.rename={tweet: text, class: label}",
            'framing.label.mapping={"0": 1, "1": 1, "2": 0}',
            f"data.output_uri={output_uri}",
        ],
    )


def to_csv(records: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(records)
    return out.getvalue().encode("utf-8")


@pytest.fixture(scope="module")
def sample(shared_datasets: Path) -> list[list[str]]:
    """Header + 2,000 random Davidson records (columns ..., class, tweet)."""
    path = shared_datasets / "harmful_content" / "davidson_dev.csv"
    with path.open(encoding="utf-8", newline="") as f:
        header, *records = list(csv.reader(f))
    picked = random.Random(0).sample(records, 2000)
    assert sum("\n" in r[6] for r in picked) > 10  # multi-line tweets are in the sample
    return [header, *picked]


@pytest.fixture(scope="module")
def s3(s3_server: str, s3_bucket: str):
    import s3fs

    return s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server})


def all_splits(card: DesignCard, workdir: Workdir) -> dict[str, pd.DataFrame]:
    return {s: read_split(card, workdir, s) for s in SPLITS}


def test_davidson_from_s3_to_s3_keeps_every_row_stratified(
    ray_cluster, s3, s3_bucket: str, sample: list[list[str]], tmp_path: Path
) -> None:
    s3.pipe(f"{s3_bucket}/davidson/sample.csv", to_csv(sample))
    card = davidson_card(f"s3://{s3_bucket}/davidson/sample.csv", f"s3://{s3_bucket}/etl/clean")
    workdir = Workdir(tmp_path)

    summary = run_etl(card, workdir)

    assert (summary.rows_in, summary.rows_ok, summary.rows_quarantined) == (2000, 2000, 0)
    version = f"etl/clean/versions/{summary.dataset_version}"
    assert summary.outputs["train"] == f"s3://{s3_bucket}/{version}/train"
    assert s3.ls(f"{s3_bucket}/{version}/train")
    assert (
        json.loads(s3.cat(f"{s3_bucket}/etl/clean/CURRENT"))["path"]
        == f"versions/{summary.dataset_version}"
    )
    splits = all_splits(card, workdir)
    arrived = Counter(t for frame in splits.values() for t in frame["text"])
    assert arrived == Counter(r[6] for r in sample[1:])

    # lineage: _row points at the record in the uploaded file, and the label follows the mapping
    for frame in splits.values():
        for text, label, row in zip(frame["text"], frame["label"], frame["_row"], strict=True):
            assert sample[row][6] == text and HARMFUL[sample[row][5]] == label
        assert set(frame["_source"]) == {card.data.sources[0].uri}

    per_class = Counter(HARMFUL[r[5]] for r in sample[1:])
    for label, n in per_class.items():
        got = tuple(int((splits[s]["label"] == label).sum()) for s in SPLITS)
        assert got == split_counts(n, card.data.split)
    assert summary.rows_per_split == {s: len(splits[s]) for s in SPLITS}
    assert summary.label_counts["train"] == {
        "ok": int((splits["train"]["label"] == 0).sum()),
        "harmful": int((splits["train"]["label"] == 1).sum()),
    }
    written = read_json(str(workdir.summary_path("etl")))
    assert written["rows_in"] == 2000 and set(written["seconds"]) >= {"read_verify", "total"}
    assert read_split(card, workdir, "quarantine").empty


def test_corrupted_copy_quarantines_exactly_what_was_broken(
    ray_cluster, s3, s3_bucket: str, sample: list[list[str]], tmp_path: Path
) -> None:
    header, *records = sample
    bad = [
        ["90001", "3", "0", "0", "3", "7", "a tweet with label seven"],
        ["90002", "3", "0", "0", "3", "9", "another bad label"],
        ["90003", "3", "0", "0", "3", "x", "label is a letter"],
        ["90004", "3", "0", "0", "3", "2", "   "],
        ["90005", "3", "0", "0", "3", "1", ""],
        ["1", "2", "3", "4", "5", "6", "7", "8", "9"],
    ]
    corrupted = [header, *records[:500], *bad[:3], *records[500:1500], *bad[3:], *records[1500:]]
    s3.pipe(f"{s3_bucket}/davidson/corrupted.csv", to_csv(corrupted))
    legacy = f"{s3_bucket}/etl/corrupted/train/from-an-old-run.parquet"
    s3.pipe(legacy, b"not parquet")  # output of the layout before versions: never read
    card = davidson_card(
        f"s3://{s3_bucket}/davidson/corrupted.csv", f"s3://{s3_bucket}/etl/corrupted"
    )
    workdir = Workdir(tmp_path)

    summary = run_etl(card, workdir)

    assert (summary.rows_in, summary.rows_ok, summary.rows_quarantined) == (2006, 2000, 6)
    assert summary.quarantine_by_reason == {"bad_label": 3, "empty_text": 2, "unparseable_row": 1}
    quarantine = read_split(card, workdir, "quarantine")
    reasons = dict(zip(quarantine["_row"], quarantine["_reason"], strict=True))
    assert reasons == {
        501: "label '7' not in mapping ['0', '1', '2']",
        502: "label '9' not in mapping ['0', '1', '2']",
        503: "label 'x' not in mapping ['0', '1', '2']",
        1504: "empty text in 'text'",
        1505: "empty text in 'text'",
        1506: "unparseable row: expected 7 fields, got 9",
    }
    broken = quarantine[quarantine["_row"] == 1506].iloc[0]
    assert broken["_raw"] == "1,2,3,4,5,6,7,8,9"
    assert quarantine["Unnamed: 0"].tolist()[:5] == ["90001", "90002", "90003", "90004", "90005"]
    arrived = Counter(t for frame in all_splits(card, workdir).values() for t in frame["text"])
    assert arrived == Counter(r[6] for r in records)
    assert s3.exists(legacy)  # a run deletes nothing outside its own version

    # A rerun on the same rows writes the same version again, replacing its files.
    stale = f"{s3_bucket}/etl/corrupted/versions/{summary.dataset_version}/train/old.parquet"
    s3.pipe(stale, b"not parquet")
    assert run_etl(card, workdir).dataset_version == summary.dataset_version
    assert not s3.exists(stale)
    again = Counter(t for frame in all_splits(card, workdir).values() for t in frame["text"])
    assert again == arrived


def test_synthetic_card_end_to_end_locally_and_rerun_overwrites(
    ray_cluster, tmp_path: Path
) -> None:
    card = load_card(CARD)
    workdir = Workdir(tmp_path)
    first = run_etl(card, workdir)
    assert (first.rows_in, first.rows_ok) == (3000, 3000)
    for name in ("ok", "harmful"):
        got = tuple(first.label_counts[s][name] for s in SPLITS)
        assert got == split_counts(sum(got), card.data.split)
    assert 0.17 < first.label_counts["train"]["harmful"] / first.rows_per_split["train"] < 0.23
    train = read_split(card, workdir, "train")
    assert list(train.columns) == ["text", "label", "_source", "_row"]
    assert str(train["label"].dtype) == "int64"
    assert set(train["_source"]) == {"synthetic://harmful_content?rows=3000&seed=7"}

    second = run_etl(card, workdir)
    assert second.rows_per_split == first.rows_per_split
    pd.testing.assert_frame_equal(read_split(card, workdir, "train"), train)


def test_sources_of_several_formats_are_unioned(ray_cluster, tmp_path: Path) -> None:
    pq.write_table(
        pa.table({"tweet": ["from parquet", "bad"], "class": [2, 5], "score": [0.5, 0.1]}),
        tmp_path / "a.parquet",
    )
    lines = [{"text": "from json", "label": 0, "lang": "en"}, {"text": "", "label": 1}]
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n{broken\n")
    card = load_card(
        CARD,
        overrides=[
            f"data.sources=[{{uri: {tmp_path}/a.parquet, rename: {{tweet: text, class: label}}}},"
            f" {{uri: {tmp_path}/b.jsonl}}]",
            'framing.label.mapping={"0": 1, "1": 1, "2": 0}',
        ],
    )
    workdir = Workdir(tmp_path / "work")
    summary = run_etl(card, workdir)
    assert (summary.rows_in, summary.rows_ok, summary.rows_quarantined) == (5, 2, 3)
    assert summary.quarantine_by_reason == {"bad_label": 1, "empty_text": 1, "unparseable_row": 1}
    good = pd.concat(all_splits(card, workdir).values())
    assert sorted(zip(good["text"], good["label"], strict=True)) == [
        ("from json", 1),
        ("from parquet", 0),
    ]
    quarantine = read_split(card, workdir, "quarantine")
    assert list(quarantine.columns) == [
        *("text", "label", "score", "lang"),
        *("_reason", "_source", "_row", "_raw"),
    ]
    assert set(quarantine["_source"]) == {f"{tmp_path}/a.parquet", f"{tmp_path}/b.jsonl"}


def test_no_usable_rows_is_a_data_error(ray_cluster, tmp_path: Path) -> None:
    (tmp_path / "all_bad.csv").write_text("text,label\nhello,7\nworld,8\n")
    card = load_card(CARD, overrides=[f"data.sources.0.uri={tmp_path}/all_bad.csv"])
    with pytest.raises(DataError, match="No usable rows: all 2 rows"):
        run_etl(card, Workdir(tmp_path))


def test_one_class_only_is_a_data_error(ray_cluster, tmp_path: Path) -> None:
    card = load_card(
        CARD,
        overrides=[
            "data.sources.0.uri=synthetic://harmful_content?rows=200&seed=1",
            "framing.label.mapping={ok: 0, harmful: 0}",
        ],
    )
    with pytest.raises(DataError, match="Only one class"):
        run_etl(card, Workdir(tmp_path))


@pytest.mark.parametrize(
    ("uri", "match"),
    [
        ("s3://{bucket}/davidson/nope.csv", r"s3://mlsd-test/davidson/nope\.csv.*no such file"),
        ("s3://no-such-bucket-mlsd/x.csv", r"no-such-bucket-mlsd/x\.csv.*bucket.*does not exist"),
        ("{tmp}/missing.csv", r"missing\.csv.*no such file"),
    ],
)
def test_missing_source_names_the_uri(
    ray_cluster, s3_bucket: str, tmp_path: Path, uri: str, match: str
) -> None:
    uri = uri.format(bucket=s3_bucket, tmp=tmp_path)
    card = davidson_card(uri, str(tmp_path / "out"))
    with pytest.raises(SourceError, match=match):
        run_etl(card, Workdir(tmp_path))


def test_missing_output_bucket_fails_before_any_work(
    ray_cluster, s3_server, tmp_path: Path
) -> None:
    card = load_card(
        CARD,
        overrides=[
            "data.sources.0.uri=synthetic://harmful_content?rows=50&seed=1",
            "data.output_uri=s3://no-such-output-bucket/etl",
        ],
    )
    with pytest.raises(SourceError, match=r"s3://no-such-output-bucket/etl.*does not exist"):
        run_etl(card, Workdir(tmp_path))
    assert not (tmp_path / "staging").exists()
