"""Hive layout round trips without Ray: odd values, nulls and types come back as written."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from mlsd_ray.data import layout as lay


def test_hive_round_trip_keeps_types_nulls_and_odd_values(tmp_path: Path) -> None:
    schema = pa.schema(
        [
            ("x", pa.float64()),
            ("kind", pa.string()),
            ("n", pa.int64()),
            ("flag", pa.bool_()),
            ("t", pa.timestamp("us", tz="UTC")),
        ]
    )
    table = pa.table(
        {
            "x": [1.0, 2.0, 3.0, 4.0],
            "kind": ["a/b c", None, "", "plain"],
            "n": [1, 2, None, 1],
            "flag": [True, False, True, None],
            "t": pa.array([0, 86_400_000_000, None, 1_700_000_000_000_000]).cast(schema[4].type),
        },
        schema=schema,
    )
    layout = lay.plan_layout(["kind", "n", "flag", "date(t)"], schema)
    assert layout is not None and layout.keys == ["kind", "n", "flag", "t_date"]
    fs = pafs.LocalFileSystem()
    written = lay.written_schema(schema, layout)
    assert lay.write_block(lay.add_derived(table, layout), fs, str(tmp_path), "p", layout) == 4
    lay.write_metadata(fs, str(tmp_path), written, layout)
    back = lay.read_table(str(tmp_path)).sort_by("x")
    assert back.schema.equals(written)
    assert back.drop_columns(["t_date"]).equals(table)
    assert [str(d) if d else None for d in back["t_date"].to_pylist()] == [
        "1970-01-01",
        "1970-01-02",
        None,
        "2023-11-14",
    ]


def test_ray_style_partition_strings_are_cast_back() -> None:
    """Ray's read_parquet hands partition keys over as folder text, the null marker included."""
    schema = pa.schema([("x", pa.float64()), ("n", pa.int64()), ("flag", pa.bool_())])
    batch = pa.table(
        {
            "flag": ["true", "__HIVE_DEFAULT_PARTITION__"],
            "x": [1.0, 2.0],
            "n": ["7", "__HIVE_DEFAULT_PARTITION__"],
        }
    )
    out = lay._restore(batch, schema, ["n", "flag"])
    assert out.schema.equals(schema)
    assert out.to_pylist() == [
        {"x": 1.0, "n": 7, "flag": True},
        {"x": 2.0, "n": None, "flag": None},
    ]


def test_a_folder_without_layout_reads_as_before(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / "part-0.parquet")
    assert lay.read_table(str(tmp_path)).to_pylist() == [{"a": 1}, {"a": 2}]
    assert lay.read_layout(pafs.LocalFileSystem(), str(tmp_path)) == (None, None)
