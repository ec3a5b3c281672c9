"""How ETL lays a split out as Parquet (local or ``s3://``), and how every reader reads it back.

A split is a folder of Parquet files plus ``_common_metadata`` (the Parquet convention: a
file with the full Arrow schema and no rows). With ``data.partition_by`` the folder is
Hive-partitioned, e.g. ``train/Month=Feb/part-....parquet``: the partition columns live only
in the folder names (as Spark, DuckDB and Arrow expect), so a reader has to put them back.
``_common_metadata`` says which columns those are and their types, and ``read_table`` /
``read_dataset`` restore them: an ``int`` input comes back as int64, not the text of a folder
name, a derived date as a date. Readers that ignore the layout (a plain ``pads.dataset``) would
see the other columns only; every reader in mlsd-ray goes through this module.

Partition keys (``data.partition_by``): a column of the verified rows whose values are few
(a ``category``, ``string``, ``int`` or ``bool`` input, the split's group column, ``label``
in classification), or a calendar unit of a time column: ``date(COL)``, ``month(COL)``,
``year(COL)`` add the column ``COL_date`` (date), ``COL_month`` (``YYYY-MM`` text) or
``COL_year`` (int), computed in UTC. A null value goes to ``KEY=__HIVE_DEFAULT_PARTITION__``
and reads back as null; other values are percent-encoded in folder names (``a/b`` ->
``a%2Fb``).

Names of the files are derived from the block's first row (lineage), so a write task that Ray
retries overwrites its own files instead of adding a second copy of its rows.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mlsd_ray import storage
from mlsd_ray.errors import CardError, DataError

if TYPE_CHECKING:
    import pandas as pd
    import ray.data

METADATA = "_common_metadata"
_KEY = b"mlsd.partition_by"
_NULL = "__HIVE_DEFAULT_PARTITION__"
_DERIVED = re.compile(r"^\s*(date|month|year)\(\s*([^()\s]+)\s*\)\s*$")
_UNIT_TYPES = {"date": pa.date32(), "month": pa.string(), "year": pa.int64()}
#: Folder keys ETL refuses: continuous values would make a folder per row.
_PARTITION_TYPES = ("string", "int64", "bool")


@dataclass(frozen=True)
class Layout:
    """Hive partitioning of a split: the keys in folder order and, for derived keys, what
    they are computed from: key -> (unit, time column)."""

    schema: pa.Schema  # the partition keys with their types
    derived: dict[str, tuple[str, str]]

    @property
    def keys(self) -> list[str]:
        return list(self.schema.names)

    def to_json(self) -> dict[str, Any]:
        return {
            "keys": [{"name": f.name, "type": str(f.type)} for f in self.schema],
            "derived": {k: {"unit": u, "from": c} for k, (u, c) in self.derived.items()},
        }


def plan_layout(partition_by: list[str], schema: pa.Schema) -> Layout | None:
    """The layout for ``data.partition_by`` over verified rows of ``schema``; CardError naming
    the key when an entry cannot be a partition key. None when the list is empty."""
    if not partition_by:
        return None
    fields: list[pa.Field] = []
    derived: dict[str, tuple[str, str]] = {}
    for i, entry in enumerate(partition_by):
        where = f"data.partition_by[{i}]"
        match = _DERIVED.match(entry)
        if match:
            unit, column = match.groups()
            if column not in schema.names:
                raise CardError(
                    f"{where}: {entry!r} names {column!r}, which is not a column of the "
                    "verified rows.",
                    fix=f"use a time column among {_time_columns(schema)} (the split's "
                    "time_column, or an int/float input holding seconds since the epoch)",
                )
            if column not in _time_columns(schema):
                raise CardError(
                    f"{where}: {entry!r}: {column!r} is {schema.field(column).type}, not a time.",
                    fix=f"derive dates from a time column among {_time_columns(schema)}",
                )
            name = f"{column}_{unit}"
            if name in schema.names:
                raise CardError(
                    f"{where}: {entry!r} would add column {name!r}, which exists already.",
                    fix="rename that column with data.sources[].rename",
                )
            fields.append(pa.field(name, _UNIT_TYPES[unit]))
            derived[name] = (unit, column)
            continue
        name = entry.strip()
        if name not in schema.names or name.startswith("_"):
            raise CardError(
                f"{where}: {entry!r} is not a column of the verified rows.",
                fix=f"use one of {[n for n in schema.names if not n.startswith('_')]}, or "
                "date(COL) / month(COL) / year(COL) of a time column",
            )
        kind = schema.field(name).type
        if str(kind) not in _PARTITION_TYPES:
            raise CardError(
                f"{where}: {name!r} is {kind}; a partition key must take few values.",
                fix="partition by a category, string, int or bool column, or by "
                f"date(COL) / month(COL) / year(COL) of a time column (found {kind})",
            )
        fields.append(schema.field(name))
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        raise CardError(f"data.partition_by: {partition_by} names a column twice.")
    return Layout(pa.schema(fields), derived)


def _time_columns(schema: pa.Schema) -> list[str]:
    def timely(kind: pa.DataType) -> bool:
        return bool(pa.types.is_timestamp(kind) or pa.types.is_integer(kind))

    numeric = (pa.types.is_floating(f.type) for f in schema)
    return [
        f.name
        for f, number in zip(schema, numeric, strict=True)
        if not f.name.startswith("_") and f.name != "label" and (timely(f.type) or number)
    ]


def written_schema(schema: pa.Schema, layout: Layout | None) -> pa.Schema:
    """The columns a reader gets back: the verified rows' plus derived partition keys."""
    if layout is None:
        return schema
    extra = [f for f in layout.schema if f.name not in schema.names]
    return pa.schema([*schema, *extra])


def _as_time(column: pa.ChunkedArray | pa.Array) -> pa.Array | pa.ChunkedArray:
    """A timestamp column, or numbers of seconds since the epoch, as UTC microseconds."""
    if pa.types.is_timestamp(column.type):
        return column.cast(pa.timestamp("us", tz="UTC"))
    micros = pc.round(pc.multiply(column.cast(pa.float64()), 1e6))
    return micros.cast(pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def add_derived(table: pa.Table, layout: Layout | None) -> pa.Table:
    """``table`` with the derived partition keys appended."""
    if layout is None:
        return table
    for name, (unit, column) in layout.derived.items():
        times = _as_time(table[column])
        if unit == "date":
            values = times.cast(pa.date32())
        elif unit == "month":
            values = pc.strftime(times, format="%Y-%m")
        else:
            values = pc.year(times).cast(pa.int64())
        table = table.append_column(pa.field(name, _UNIT_TYPES[unit]), values)
    return table


def write_block(
    table: pa.Table, fs: pafs.FileSystem, path: str, name: str, layout: Layout | None
) -> int:
    """Write ``table`` (already with derived keys) as ``name``.parquet under ``path``, in Hive
    folders when ``layout``; the number of rows written."""
    if not table.num_rows:
        return 0
    if layout is None:
        pq.write_table(table, f"{path}/{name}.parquet", filesystem=fs)
        return table.num_rows
    pads.write_dataset(
        table,
        base_dir=path,
        filesystem=fs,
        format="parquet",
        partitioning=pads.partitioning(layout.schema, flavor="hive"),
        basename_template=f"{name}-{{i}}.parquet",
        existing_data_behavior="overwrite_or_ignore",
        max_partitions=4096,
    )
    return table.num_rows


def write_metadata(
    fs: pafs.FileSystem, path: str, schema: pa.Schema, layout: Layout | None
) -> None:
    """``_common_metadata``: the full schema a reader gets, and the partition keys."""
    keys = json.dumps(layout.to_json() if layout else None).encode()
    meta = {**(schema.metadata or {}), _KEY: keys}
    pq.write_metadata(schema.with_metadata(meta), f"{path}/{METADATA}", filesystem=fs)


def read_layout(fs: pafs.FileSystem, path: str) -> tuple[pa.Schema | None, pa.Schema | None]:
    """(full schema, partition keys) from ``_common_metadata``; (None, None) for a folder
    without one (written before layouts existed, or by hand)."""
    try:
        schema = pq.read_schema(f"{path}/{METADATA}", filesystem=fs)
    except (FileNotFoundError, OSError, pa.ArrowInvalid):
        return None, None
    raw = (schema.metadata or {}).get(_KEY)
    info = json.loads(raw) if raw else None
    plain = schema.remove_metadata()
    if not info:
        return plain, None
    keys = pa.schema([plain.field(k["name"]) for k in info["keys"]])
    return plain, keys


def _dataset(uri: str) -> tuple[pads.Dataset, pa.Schema | None]:
    fs, path = storage.filesystem(uri)
    schema, keys = read_layout(fs, path)
    partitioning = pads.partitioning(keys, flavor="hive") if keys is not None else None
    try:
        dataset = pads.dataset(
            path, filesystem=fs, format="parquet", schema=schema, partitioning=partitioning
        )
    except (FileNotFoundError, OSError) as err:
        raise DataError(
            f"Cannot read the split at {uri!r}: {err}",
            fix="run the ETL stage first (`mlsd etl CARD`), or check the workdir",
        ) from None
    return dataset, schema


def read_table(uri: str, columns: list[str] | None = None) -> pa.Table:
    """A split folder as one Arrow table, partition keys restored with their types."""
    dataset, _ = _dataset(uri)
    if columns is not None:
        columns = [c for c in columns if c in dataset.schema.names]
    return dataset.to_table(columns=columns)


def read_split(uri: str) -> pd.DataFrame:
    """A split folder (local or s3://) as pandas. Plain pyarrow: about 10x faster than Ray Data
    for splits that fit in the driver (see the stack notes)."""
    return read_table(uri).to_pandas()


def _restore(batch: pa.Table, schema: pa.Schema, keys: list[str]) -> pa.Table:
    """``map_batches`` step: Ray Data gives partition keys as folder text; cast them back."""
    arrays = []
    for field in schema:
        if field.name not in batch.column_names:  # the empty file of an empty split
            arrays.append(pa.nulls(batch.num_rows, field.type))
            continue
        column = batch[field.name]
        if field.name in keys and not column.type.equals(field.type):
            text = column.cast(pa.string())
            text = pc.if_else(pc.equal(text, _NULL), pa.scalar(None, pa.string()), text)
            column = text.cast(field.type)
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=schema)


def read_dataset(uri: str, num_cpus: float = 1.0) -> ray.data.Dataset:
    """A split folder as a Ray Dataset (for batch inference over large splits), partition
    keys restored with their types. ``num_cpus`` is what each read and restore task asks for:
    a consumer holding part of a node's CPU (a scoring actor) leaves its read tasks the rest."""
    from functools import partial

    import ray.data

    fs, path = storage.filesystem(uri)
    schema, keys = read_layout(fs, path)
    ds = ray.data.read_parquet(path, filesystem=fs, ray_remote_args={"num_cpus": num_cpus})
    if schema is None or keys is None:
        return ds
    restore = partial(_restore, schema=schema, keys=keys.names)
    return ds.map_batches(restore, batch_format="pyarrow", batch_size=None, num_cpus=num_cpus)
