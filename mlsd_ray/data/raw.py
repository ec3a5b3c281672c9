"""The raw schema every source is read into: each column a string, then the lineage columns.

Shared by the file readers (`sources.py`) and the database reader (`database.py`), so neither
imports the other for it (they once formed an import cycle).
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from mlsd_ray.data.verify import RAW, REASON, ROW, SOURCE


def json_value(value: Any) -> str | None:
    """One cell as text: JSON for nested values, ``true``/``false`` for booleans."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def stringify(table: pa.Table) -> pa.Table:
    """Every column as a string; nested or binary values as JSON text."""
    columns = []
    for column in table.columns:
        try:
            columns.append(column.cast(pa.string()))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # nested types
            columns.append(pa.array([json_value(v) for v in column.to_pylist()], pa.string()))
    return pa.table(columns, names=table.column_names)


def raw_schema(columns: list[str]) -> pa.Schema:
    """Every source column as a string, then the lineage columns."""
    fields = [pa.field(c, pa.string()) for c in columns]
    fields += [pa.field(SOURCE, pa.string()), pa.field(ROW, pa.int64())]
    return pa.schema([*fields, pa.field(REASON, pa.string()), pa.field(RAW, pa.string())])
