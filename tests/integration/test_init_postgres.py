"""`mlsd init` reads a sample of a PostgreSQL table (a table unique to this test, dropped)."""

from __future__ import annotations

import os
import uuid

import pytest

from mlsd_ray.init_card import write_card

pytestmark = pytest.mark.integration
PG = os.environ.get("MLSD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def table():
    psycopg = pytest.importorskip("psycopg")
    try:
        conn = psycopg.connect(PG, connect_timeout=3, autocommit=True)
    except psycopg.OperationalError as err:
        pytest.skip(f"PostgreSQL not reachable at {PG}: {err}")
    name = f"mlsd_init_{uuid.uuid4().hex[:10]}"
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {name} (id serial, age int, plan text, note text, paid bool)")
        rows = [
            (
                20 + i % 40,
                ["free", "pro", "team"][i % 3],
                f"customer note number {i} says hi",
                i % 4 == 0,
            )
            for i in range(120)
        ]
        cur.executemany(f"INSERT INTO {name} (age, plan, note, paid) VALUES (%s, %s, %s, %s)", rows)
    yield name
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {name}")
    conn.close()


def test_init_from_a_postgresql_table(table: str, tmp_path) -> None:
    out = tmp_path / "pg.yaml"
    text, card = write_card(PG, "paid", table=table, out=out)
    source = card.data.sources[0]
    assert source.uri == PG and source.table == table
    assert card.framing.category == "binary"
    assert card.framing.label.mapping["True"] == 1
    assert {f.name: f.type for f in card.framing.inputs} == {"note": "text"}
    assert "# id: left out" in text and out.is_file()
