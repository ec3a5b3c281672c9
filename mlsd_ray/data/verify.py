"""Row checks against the card: which rows may be trained on, and why the others may not.

Pure pandas/pyarrow, no Ray: ETL applies these functions with ``Dataset.map_batches`` and unit
tests call them on hand-made frames. A row's input cells arrive as strings (sources read every
column as text), so one set of rules covers CSV, JSON and Parquet alike.

Each failing row gets one ``_reason`` (the first check it fails, in card order: parse error,
inputs, label). Messages are written for people; ``reason_category`` maps them to the stable
keys counted in the ETL summary.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import pandas as pd
import pyarrow as pa

from mlsd_ray.errors import CardError
from mlsd_ray.spec import DesignCard, InputField

#: Lineage columns that sources add to every row.
SOURCE, ROW, REASON, RAW = "_source", "_row", "_reason", "_raw"
META = (SOURCE, ROW, REASON, RAW)
#: Name of the verified label column in the output (class index, or the target in regression).
LABEL = "label"

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}
_INT64 = (-(2**63), 2**63 - 1)

# (test, category), first match wins; keep in step with the messages below.
_CATEGORIES: tuple[tuple[Callable[[str], bool], str], ...] = (
    (lambda r: r.startswith("unparseable row"), "unparseable_row"),
    (lambda r: r.startswith("missing label"), "missing_label"),
    (lambda r: r.startswith("label "), "bad_label"),
    (lambda r: r.startswith("missing value"), "missing_value"),
    (lambda r: r.startswith("empty text"), "empty_text"),
    (lambda r: r.startswith("text in "), "short_text"),
    (lambda r: ": cannot cast " in r, "cast_error"),
)


def reason_category(reason: str) -> str:
    """Stable summary key for a ``_reason`` message, e.g. ``label '7' not in ...`` -> bad_label."""
    for test, category in _CATEGORIES:
        if test(reason):
            return category
    return "other"


@dataclass(frozen=True)
class Verified:
    """One batch split in two: typed rows to train on, and string rows to quarantine."""

    good: pd.DataFrame
    quarantined: pd.DataFrame


def _cells(batch: pd.DataFrame, name: str) -> list[str | None]:
    """A column as Python strings with None for nulls, whatever pandas dtype it arrived in."""
    if name not in batch.columns:
        return [None] * len(batch)
    return [None if _is_null(v) else str(v) for v in batch[name].tolist()]


def _is_null(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _shown(cell: str) -> str:
    return repr(cell if len(cell) <= 40 else cell[:37] + "...")


def _to_int(cell: str) -> int:
    try:
        value = int(cell)
    except ValueError:
        number = float(cell)  # "3.0" and "1e3" are integers written as floats
        if not math.isfinite(number) or not number.is_integer():
            raise ValueError(cell) from None
        value = int(number)
    if not _INT64[0] <= value <= _INT64[1]:
        raise ValueError(cell)
    return value


def _to_float(cell: str) -> float:
    value = float(cell)
    if not math.isfinite(value):  # nan/inf would poison every model downstream
        raise ValueError(cell)
    return value


def _to_bool(cell: str) -> bool:
    low = cell.lower()
    if low in _TRUE or low in _FALSE:
        return low in _TRUE
    if _to_int(cell) in (0, 1):  # "1.0" / "0.0" from a float column
        return _to_int(cell) == 1
    raise ValueError(cell)


_CASTS: dict[str, Callable[[str], Any]] = {"int": _to_int, "float": _to_float, "bool": _to_bool}


def check_input(cell: str | None, field: InputField) -> tuple[Any, str | None]:
    """(typed value, None) or (None, reason) for one cell of an input column."""
    stripped = cell.strip() if cell is not None else None
    textual = field.type in ("text", "string")
    if stripped is None or (not textual and stripped == ""):
        return None, (f"missing value in '{field.name}'" if field.required else None)
    if field.type == "text" and len(stripped) < field.min_length:
        if not stripped:
            return None, f"empty text in '{field.name}'"
        return None, f"text in '{field.name}' shorter than {field.min_length} characters"
    if field.type in _CASTS:
        try:
            return _CASTS[field.type](stripped), None
        except ValueError:
            return None, f"'{field.name}': cannot cast {_shown(stripped)} to {field.type}"
    return (cell if textual else stripped), None


def check_label(cell: str | None, card: DesignCard) -> tuple[Any, str | None]:
    """(class index or target, None) or (None, reason) for one label cell."""
    label = card.framing.label
    key = cell.strip() if cell is not None else ""
    if not key:
        return None, f"missing label in '{label.column}'"
    if label.mapping:
        if key in label.mapping:
            return label.mapping[key], None
        try:  # "1.0" from a float column means the class written "1"
            as_int = str(_to_int(key))
        except ValueError:
            as_int = key
        if as_int in label.mapping:
            return label.mapping[as_int], None
        return None, f"label {_shown(key)} not in mapping {sorted(label.mapping)}"
    if card.framing.category == "regression":
        try:
            return _to_float(key), None
        except ValueError:
            return None, f"label {_shown(key)} is not a number"
    classes = len(label.classes)
    try:
        index = _to_int(key)
    except ValueError:
        index = -1
    if not 0 <= index < classes:
        return None, f"label {_shown(key)} is not a class index 0..{classes - 1}"
    return index, None


def good_schema(card: DesignCard) -> pa.Schema:
    """Arrow schema of verified rows: the inputs typed, ``label``, and lineage."""
    if LABEL in card.feature_names:
        raise CardError(
            f"framing.inputs: an input is named {LABEL!r}, the name of the verified label column.",
            fix="rename that input with data.sources[].rename",
        )
    arrow = {"text": pa.string(), "string": pa.string(), "category": pa.string()}
    arrow |= {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
    label_type = pa.float64() if card.framing.category == "regression" else pa.int64()
    fields = [pa.field(f.name, arrow[f.type]) for f in card.framing.inputs]
    fields += [
        pa.field(LABEL, label_type),
        pa.field(SOURCE, pa.string()),
        pa.field(ROW, pa.int64()),
    ]
    return pa.schema(fields)


Check = Callable[[str | None], tuple[Any, str | None]]  # cell -> (value, reason)


def _check_column(
    batch: pd.DataFrame, column: str, reasons: list[str | None], check: Check
) -> list[Any]:
    """Typed values of one column; the first problem of each row goes into ``reasons``."""
    values = []
    for i, cell in enumerate(_cells(batch, column)):
        value, problem = check(cell)
        values.append(value)
        if problem is not None and reasons[i] is None:
            reasons[i] = problem
    return values


def verify_batch(batch: pd.DataFrame, card: DesignCard) -> Verified:
    """Check every row of ``batch`` against the card; see the module docstring for the rules."""
    reasons = _cells(batch, REASON)
    typed: dict[str, list[Any]] = {}
    for field in card.framing.inputs:
        check = partial(check_input, field=field)
        typed[field.name] = _check_column(batch, field.name, reasons, check)
    label = card.framing.label.column
    typed[LABEL] = _check_column(batch, label, reasons, partial(check_label, card=card))
    typed[SOURCE] = _cells(batch, SOURCE)
    typed[ROW] = _row_numbers(batch)

    ok = [r is None for r in reasons]
    good = _frame(
        {name: [v for v, k in zip(values, ok, strict=True) if k] for name, values in typed.items()},
        good_schema(card),
    )
    columns = [c for c in batch.columns if c not in META]
    raw = {c: _cells(batch, c) for c in [*columns, SOURCE, RAW]}
    raw[REASON], raw[ROW] = reasons, typed[ROW]
    order = [*columns, REASON, SOURCE, ROW, RAW]
    bad = {c: [v for v, k in zip(raw[c], ok, strict=True) if not k] for c in order}
    quarantined = pd.DataFrame(bad, columns=order)
    if len(quarantined):
        quarantined[ROW] = quarantined[ROW].astype("Int64")
    return Verified(good=good, quarantined=quarantined)


def _frame(columns: dict[str, list[Any]], schema: pa.Schema) -> pd.DataFrame:
    """Typed frame: int64/bool stay plain numpy dtypes unless the column holds nulls."""
    out = {}
    for field in schema:
        values = columns[field.name]
        nulls = any(v is None for v in values)
        if pa.types.is_integer(field.type):
            out[field.name] = pd.array(values, dtype="Int64" if nulls else "int64")
        elif pa.types.is_boolean(field.type):
            out[field.name] = pd.array(values, dtype="boolean" if nulls else "bool")
        elif pa.types.is_floating(field.type):
            out[field.name] = pd.array([math.nan if v is None else v for v in values], "float64")
        else:
            out[field.name] = pd.array(values, dtype=object)
    return pd.DataFrame(out, columns=schema.names)


def _row_numbers(batch: pd.DataFrame) -> list[int | None]:
    if ROW not in batch.columns:
        return [None] * len(batch)
    return [None if _is_null(v) else int(v) for v in batch[ROW].tolist()]


def quarantine_schema(columns: list[str]) -> pa.Schema:
    """Arrow schema of quarantined rows: every source column as a string, then lineage."""
    fields = [pa.field(c, pa.string()) for c in columns if c not in META]
    fields += [pa.field(REASON, pa.string()), pa.field(SOURCE, pa.string())]
    return pa.schema([*fields, pa.field(ROW, pa.int64()), pa.field(RAW, pa.string())])


def _arrow(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """Without pandas metadata: readers then get plain dtypes, not this pandas' extension types."""
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    return table.replace_schema_metadata(None)


# Adapters for Dataset.map_batches: fixed Arrow schemas, so every block writes the same Parquet.
def good_rows(batch: pd.DataFrame, card: DesignCard) -> pa.Table:
    good = verify_batch(batch, card).good
    return _arrow(good, good_schema(card))


def quarantined_rows(batch: pd.DataFrame, card: DesignCard, columns: list[str]) -> pa.Table:
    """``columns``: the source columns of every source, so blocks from different files agree."""
    bad = verify_batch(batch, card).quarantined
    schema = quarantine_schema(columns)
    bad = bad.reindex(columns=schema.names).astype(object)
    return _arrow(bad.where(bad.notna(), None), schema)
