"""Partitioned load targets: Hive folders on local disk and on the S3 server, read back by every
reader of the splits with the partition columns typed, and covered by the manifest's hash."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from mlsd_ray.data import layout as lay
from mlsd_ray.data import manifest as mf
from mlsd_ray.data.etl import SPLITS, read_split, run_etl
from mlsd_ray.errors import CardError
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import load_card

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SHOPPERS_CARD = ROOT / "systems" / "event_registration.yaml"
TEXT_CARD = ROOT / "systems" / "harmful_content.yaml"


@pytest.fixture(scope="module")
def shoppers_csv(shared_datasets: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    frame = pd.read_csv(shared_datasets / "ad_click" / "online_shoppers_dev.csv")
    path = tmp_path_factory.mktemp("shoppers") / "shoppers.csv"
    frame.sample(1200, random_state=1).to_csv(path, index=False)
    return path


def _etl(source: Path | str, out: str, workdir: Path, *extra: str):  # type: ignore[no-untyped-def]
    card = load_card(
        SHOPPERS_CARD,
        overrides=[
            f"data.sources.0.uri={source}",
            f"data.output_uri={out}",
            "data.report=false",
            "data.checks.reference=none",
            *extra,
        ],
    )
    return card, run_etl(card, Workdir(workdir))


def test_partitioned_splits_read_back_typed_by_every_reader(
    ray_cluster, shoppers_csv: Path, tmp_path: Path
) -> None:
    from mlsd_ray.data.layout import read_split as train_read_split
    from mlsd_ray.evaluate.stage import batch_predict  # noqa: F401  (reads via read_dataset)
    from mlsd_ray.monitor.stage import read_reference

    plain_card, plain = _etl(shoppers_csv, str(tmp_path / "plain"), tmp_path / "w1")
    card, part = _etl(
        shoppers_csv,
        str(tmp_path / "part"),
        tmp_path / "w2",
        "data.partition_by=[Month, label]",
    )
    # the layout does not change the data: same rows, same version
    assert part.dataset_version == plain.dataset_version
    assert part.rows_written == plain.rows_written
    train_dir = Path(part.outputs["train"])  # part/versions/<dataset version>/train
    assert train_dir == tmp_path / "part" / "versions" / part.dataset_version / "train"
    folders = {p.parent.relative_to(train_dir) for p in train_dir.rglob("*.parquet")}
    assert folders and all(str(f).startswith("Month=") and "/label=" in str(f) for f in folders)
    for s in SPLITS:
        want = read_split(plain_card, Workdir(tmp_path / "w1"), s)
        got = read_split(card, Workdir(tmp_path / "w2"), s)
        pd.testing.assert_frame_equal(got, want)  # values, column order and dtypes
    train_uri = Workdir(tmp_path / "w2").split_uri(card, "train")
    plain_uri = Workdir(tmp_path / "w1").split_uri(plain_card, "train")

    def ordered(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.sort_values(["_source", "_row"]).reset_index(drop=True)

    frame = ordered(train_read_split(train_uri))
    assert frame["label"].dtype == "int64" and len(frame) == part.rows_written["train"]
    pd.testing.assert_frame_equal(frame, ordered(train_read_split(plain_uri)))
    reference = read_reference(card, Workdir(tmp_path / "w2"))
    assert list(reference.columns) == [*card.feature_names, "label"]
    ds = lay.read_dataset(train_uri)  # what batch evaluation scores
    schema = ds.schema()
    assert schema is not None
    types = dict(zip(schema.names, schema.types, strict=True))
    assert types["label"] == pa.int64() and types["Month"] == pa.string()
    lineage = [("_source", "ascending"), ("_row", "ascending")]
    from_ray = pa.concat_tables(ray_cluster.get(ds.to_arrow_refs())).sort_by(lineage)
    assert from_ray.equals(lay.read_table(train_uri).sort_by(lineage))
    assert from_ray.num_rows == len(frame)
    check = mf.check_splits(str(tmp_path / "part"))
    assert check["ok"], check
    manifest = mf.read_manifest(str(tmp_path / "part"))
    assert manifest is not None and manifest["layout"]["partitioning"] == "hive"
    assert [k["name"] for k in manifest["layout"]["keys"]] == ["Month", "label"]


def test_manifest_check_catches_a_lost_partition(ray_cluster, shoppers_csv: Path, tmp_path):
    _, summary = _etl(shoppers_csv, str(tmp_path / "part"), tmp_path, "data.partition_by=[Month]")
    assert mf.check_splits(str(tmp_path / "part"))["ok"]
    lost = sorted(Path(summary.outputs["test"]).glob("Month=*"))[0]
    for f in lost.iterdir():
        f.unlink()
    result = mf.check_splits(str(tmp_path / "part"))
    assert (
        not result["ok"]
        and result["splits"]["test"]["hash"] != result["splits"]["test"]["expected"]
    )


def test_partition_by_a_date_of_the_time_column_on_s3(
    ray_cluster, s3_server: str, s3_bucket: str, tmp_path: Path
) -> None:
    """``date(day)`` adds ``day_date`` (a date) and Hive folders on the S3 server; readers get
    the date back as a date, nulls included, and the split still trains on the past."""
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server})
    days = ["2024-03-01T10:00:00Z", "2024-03-02T23:30:00+00:00", "2024-03-03", "2024-03-04"]
    lines = [
        f"post {d}-{i} about {'trains' if i % 3 else 'idiots'},{'ok' if i % 3 else 'harmful'},{day}"
        for d, day in enumerate(days)
        for i in range(30)
    ]
    body = "text,label,day\n" + "\n".join(lines) + "\n"
    fs.pipe(f"{s3_bucket}/layout/posts.csv", body.encode())
    out = f"s3://{s3_bucket}/layout/out"
    card = load_card(
        TEXT_CARD,
        overrides=[
            f"data.sources.0.uri=s3://{s3_bucket}/layout/posts.csv",
            "data.split={train: 0.5, validation: 0.25, test: 0.25, strategy: time, "
            "time_column: day}",
            f"data.output_uri={out}",
            "data.report=false",
            "data.checks.reference=none",
            "data.partition_by=['date(day)']",
        ],
    )
    workdir = Workdir(tmp_path)
    summary = run_etl(card, workdir)
    assert summary.rows_ok == 120
    listed = fs.find(summary.outputs["train"].removeprefix("s3://"))
    assert any("/day_date=2024-03-01/" in p for p in listed), listed
    assert any(p.endswith("/_common_metadata") for p in listed)
    got = {s: read_split(card, workdir, s) for s in SPLITS}
    dates = {s: sorted({d.isoformat() for d in f["day_date"]}) for s, f in got.items()}
    assert dates == {
        "train": ["2024-03-01", "2024-03-02"],
        "validation": ["2024-03-03"],
        "test": ["2024-03-04"],
    }
    train = got["train"]
    assert (train["day"].dt.date == train["day_date"]).all()  # UTC dates of the time column
    table = lay.read_table(workdir.split_uri(card, "test"))
    assert table.schema.field("day_date").type == pa.date32()
    assert mf.check_splits(out)["ok"]


def test_bad_partition_keys_name_the_card_key(tmp_path: Path) -> None:
    card = load_card(SHOPPERS_CARD, overrides=[f"data.output_uri={tmp_path}"])
    from mlsd_ray.data.verify import good_schema

    schema = good_schema(card)
    with pytest.raises(CardError, match=r"data\.partition_by\[0\]: 'Nope' is not a column"):
        lay.plan_layout(["Nope"], schema)
    with pytest.raises(CardError, match=r"data\.partition_by\[1\]: 'PageValues' is double"):
        lay.plan_layout(["Month", "PageValues"], schema)
    with pytest.raises(
        CardError, match=r"data\.partition_by\[0\]: 'date\(Month\)': 'Month' is string"
    ):
        lay.plan_layout(["date(Month)"], schema)
    layout = lay.plan_layout(["month(PageValues)", "label"], schema)
    assert layout is not None and layout.keys == ["PageValues_month", "label"]
