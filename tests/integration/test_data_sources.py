"""Connectors for real: PostgreSQL through Ray Data's SQL reader, partitioned folders on the S3
server, text encodings; and the errors that name the source.

PostgreSQL runs on 127.0.0.1:5432 (trust auth, database ``test``, user ``postgres``); the tests
skip with the reason when it is not there. Every table they create has a unique name and is
dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from mlsd_ray.data.etl import SPLITS, read_split, run_etl
from mlsd_ray.errors import SourceError
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard, load_card
from tests.conftest import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SHOPPERS_CARD = ROOT / "systems" / "event_registration.yaml"
TEXT_CARD = ROOT / "systems" / "harmful_content.yaml"
PG = os.environ.get("MLSD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="module")
def pg() -> Iterator[object]:
    psycopg = pytest.importorskip("psycopg")
    try:
        conn = psycopg.connect(PG, autocommit=True, connect_timeout=3)
    except psycopg.Error as err:
        pytest.skip(f"PostgreSQL not reachable at {PG}: {err}")
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def shoppers(shared_datasets: Path) -> pd.DataFrame:
    frame = pd.read_csv(shared_datasets / "ad_click" / "online_shoppers_dev.csv")
    frame = frame.sample(1500, random_state=0)
    return frame.reset_index(drop=True)


@pytest.fixture(scope="module")
def shoppers_table(pg, shoppers: pd.DataFrame) -> Iterator[str]:
    """1,500 random shoppers in a typed table (numeric, integer, boolean, text columns)."""
    name = f"mlsd_shoppers_{uuid.uuid4().hex[:8]}"
    types = {"int64": "integer", "float64": "double precision", "bool": "boolean"}
    cols = ", ".join(f'"{c}" {types.get(str(t), "text")}' for c, t in shoppers.dtypes.items())
    pg.execute(f"CREATE TABLE {name} (id integer PRIMARY KEY, {cols})")
    quoted = ", ".join(f'"{c}"' for c in shoppers.columns)
    with pg.cursor() as cur, cur.copy(f"COPY {name} (id, {quoted}) FROM STDIN") as copy:
        for i, row in enumerate(shoppers.itertuples(index=False), start=1):
            copy.write_row([i, *row])
    yield name
    pg.execute(f"DROP TABLE IF EXISTS {name}")


def pg_card(tmp_path: Path, source: str) -> DesignCard:
    return load_card(
        SHOPPERS_CARD,
        overrides=[f"data.sources=[{source}]", f"data.output_uri={tmp_path / 'out'}"],
    )


def test_postgres_table_through_read_sql(
    ray_cluster, shoppers_table: str, shoppers: pd.DataFrame, tmp_path: Path
) -> None:
    card = pg_card(tmp_path, f"{{uri: '{PG}', table: {shoppers_table}, order_by: [id]}}")
    workdir = Workdir(tmp_path)
    summary = run_etl(card, workdir)
    assert (summary.rows_in, summary.rows_ok, summary.rows_quarantined) == (1500, 1500, 0)
    assert summary.sources == [f"{PG}#table={shoppers_table}"]
    frame = pd.concat([read_split(card, workdir, s) for s in SPLITS])
    assert set(frame["_source"]) == {f"{PG}#table={shoppers_table}"}
    # _row follows ORDER BY id, so it points at the CSV row; every value arrived as typed
    frame = frame.sort_values("_row").reset_index(drop=True)
    assert frame["_row"].tolist() == list(range(1, 1501))
    for column in ("ProductRelated_Duration", "PageValues", "Administrative"):
        assert frame[column].tolist() == pytest.approx(shoppers[column].astype(float).tolist())
    assert frame["label"].tolist() == shoppers["Revenue"].astype(int).tolist()
    assert frame["Weekend"].tolist() == shoppers["Weekend"].map(str).str.lower().tolist()
    assert frame["Month"].tolist() == shoppers["Month"].tolist()


def test_postgres_query(ray_cluster, shoppers_table: str, shoppers: pd.DataFrame, tmp_path) -> None:
    query = f"SELECT * FROM {shoppers_table} WHERE \\\"Month\\\" = 'May' ORDER BY id"
    card = pg_card(tmp_path, f'{{uri: "{PG}", query: "{query}"}}')
    summary = run_etl(card, Workdir(tmp_path))
    assert summary.rows_ok == int((shoppers["Month"] == "May").sum())
    assert summary.sources[0].startswith(f"{PG}#query=")


@pytest.mark.parametrize(
    ("source", "match"),
    [
        (
            "{{uri: '{pg}', table: no_such_table_mlsd}}",
            r"test#table=no_such_table_mlsd'.*table 'no_such_table_mlsd' does not exist",
        ),
        ("{{uri: '{pg}', query: 'SELEC 1'}}", r"#query=.*the query failed.*syntax error"),
        (
            "{{uri: '{pg}', query: 'SELECT 1 AS x'}}",
            r"#query=.*required columns \['Administrative'.*are missing",
        ),
        (
            "{{uri: 'postgresql://postgres:s3cret@127.0.0.1:{port}/test', table: t}}",
            r"postgres:\*\*\*@127\.0\.0\.1:\d+/test#table=t'.*cannot connect.*Fix: check that "
            r"PostgreSQL runs at 127\.0\.0\.1:\d+",
        ),
        (
            "{{uri: 'postgresql://postgres@127.0.0.1:5432/no_such_db_mlsd', table: t}}",
            r"no_such_db_mlsd#table=t'.*cannot connect.*database 'no_such_db_mlsd'",
        ),
    ],
)
def test_database_errors_name_the_source(
    ray_cluster, pg, tmp_path: Path, source: str, match: str
) -> None:
    card = pg_card(tmp_path, source.format(pg=PG, port=free_port()))
    with pytest.raises(SourceError, match=match) as err:
        run_etl(card, Workdir(tmp_path))
    assert "s3cret" not in str(err.value)


def test_partitioned_folder_on_s3_with_a_time_split(
    ray_cluster, s3_server: str, s3_bucket: str, tmp_path: Path
) -> None:
    """Hive folders ``day=...`` become a column; the split trains on the early days."""
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server})
    days = ["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04", "2024-03-05"]
    for d, day in enumerate(days):
        rows = [f"post {d}-{i} about {'trains' if i % 3 else 'idiots'}" for i in range(40)]
        body = "text,label\n" + "".join(
            f"{t},{'harmful' if i % 3 == 0 else 'ok'}\n" for i, t in enumerate(rows)
        )
        fs.pipe(f"{s3_bucket}/posts/day={day}/part-0.csv", body.encode())
    fs.pipe(f"{s3_bucket}/posts/_SUCCESS", b"")
    card = load_card(
        TEXT_CARD,
        overrides=[
            f"data.sources.0.uri=s3://{s3_bucket}/posts",
            "data.sources.0.format=csv",
            "data.split={train: 0.6, validation: 0.2, test: 0.2, strategy: time, time_column: day}",
            f"data.output_uri=s3://{s3_bucket}/etl/partitioned",
        ],
    )
    workdir = Workdir(tmp_path)
    summary = run_etl(card, workdir)
    assert summary.rows_ok == 200 and summary.split_strategy == "time"
    got = {s: read_split(card, workdir, s) for s in SPLITS}
    day_of = {s: sorted({t.date().isoformat() for t in f["day"]}) for s, f in got.items()}
    assert day_of == {"train": days[:3], "validation": [days[3]], "test": [days[4]]}
    assert fs.exists(f"{s3_bucket}/etl/partitioned/manifest.json")


def test_encoding_is_configurable(ray_cluster, tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\ncafé crème,ok\nnaïve idiot,harmful\n".encode("latin-1"))
    base = [f"data.sources.0.uri={path}", f"data.output_uri={tmp_path / 'out'}"]
    with pytest.raises(SourceError, match=r"latin1\.csv.*not valid UTF-8.*encoding: latin-1"):
        run_etl(load_card(TEXT_CARD, overrides=base), Workdir(tmp_path))
    card = load_card(TEXT_CARD, overrides=[*base, "data.sources.0.encoding=latin-1"])
    workdir = Workdir(tmp_path)
    assert run_etl(card, workdir).rows_ok == 2
    texts = pd.concat([read_split(card, workdir, s) for s in SPLITS])["text"]
    assert sorted(texts) == ["café crème", "naïve idiot"]


def _raw(source: str, card_path: Path, tmp_path: Path) -> tuple[pd.DataFrame, int]:
    """(rows of one source as read, in lineage order; blocks) via read_source."""
    from mlsd_ray.data.sources import read_source

    card = load_card(card_path, overrides=[f"data.sources=[{source}]"])
    ds = read_source(card.data.sources[0], card, tmp_path)
    frame = ds.to_pandas().sort_values("_row").reset_index(drop=True)
    return frame, ds.num_blocks()


@pytest.mark.parametrize("order_by", ["[id]", '["Month", id]'])
def test_sharded_table_read_equals_one_read(
    ray_cluster, shoppers_table: str, tmp_path: Path, order_by: str
) -> None:
    """Four range shards read in parallel give exactly the rows and row numbers (lineage) of
    one ORDER BY read, also when the first key has ties (Month)."""
    from mlsd_ray.data import database

    one = f"{{uri: '{PG}', table: {shoppers_table}, order_by: {order_by}}}"
    four = f"{{uri: '{PG}', table: {shoppers_table}, order_by: {order_by}, shards: 4}}"
    whole, _ = _raw(one, SHOPPERS_CARD, tmp_path)
    sharded, blocks = _raw(four, SHOPPERS_CARD, tmp_path)
    assert len(whole) == 1500 and blocks >= 4
    pd.testing.assert_frame_equal(sharded, whole)
    card = load_card(SHOPPERS_CARD, overrides=[f"data.sources=[{four}]"])
    assert len(database.plan_shards(card.data.sources[0])) == 4


def test_sharded_read_keeps_null_keys_and_skew(ray_cluster, pg, tmp_path: Path) -> None:
    """Nulls in the shard key land in the last shard (ORDER BY puts them last); a key with
    one value for most rows gives fewer shards, never lost or repeated rows."""
    from mlsd_ray.data import database

    name = f"mlsd_shard_{uuid.uuid4().hex[:8]}"
    pg.execute(f"CREATE TABLE {name} (id integer PRIMARY KEY, k text, text text, label text)")
    try:
        rows = [
            (i, None if i % 7 == 0 else ("a" if i < 150 else f"k{i % 5}"), f"post {i}", "ok")
            for i in range(1, 201)
        ]
        with pg.cursor() as cur:
            cur.executemany(f"INSERT INTO {name} VALUES (%s, %s, %s, %s)", rows)
        one = f"{{uri: '{PG}', table: {name}, order_by: [k, id]}}"
        many = f"{{uri: '{PG}', table: {name}, order_by: [k, id], shards: 8}}"
        whole, _ = _raw(one, TEXT_CARD, tmp_path)
        sharded, _ = _raw(many, TEXT_CARD, tmp_path)
        pd.testing.assert_frame_equal(sharded, whole)
        assert whole["k"].isna().sum() == 28 and whole["k"].tail(28).isna().all()
        card = load_card(TEXT_CARD, overrides=[f"data.sources=[{many}]"])
        assert 2 <= len(database.plan_shards(card.data.sources[0])) < 8
    finally:
        pg.execute(f"DROP TABLE IF EXISTS {name}")


def test_shards_need_a_table_and_order_by() -> None:
    from mlsd_ray.errors import CardError

    with pytest.raises(CardError, match=r"shards > 1 needs `table` and `order_by`"):
        load_card(SHOPPERS_CARD, overrides=[f"data.sources=[{{uri: '{PG}', table: t, shards: 2}}]"])
    with pytest.raises(CardError, match=r"table/query/order_by/shards apply to database"):
        load_card(SHOPPERS_CARD, overrides=["data.sources=[{uri: x.csv, shards: 2}]"])
