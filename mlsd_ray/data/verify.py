"""Row checks against the card: which rows may be trained on, and why the others may not.

Pure pandas/pyarrow, no Ray: ETL applies these functions with ``Dataset.map_batches`` and unit
tests call them on hand-made frames. A row's input cells arrive as strings (sources read every
column as text), so one set of rules covers CSV, JSON and Parquet alike.

Each failing row gets one ``_reason`` (the first check it fails, in card order: parse error,
inputs with their ``data.rules``, the split's time/group columns, label). Messages are written
for people; ``reason_category`` maps them to the stable keys counted in the ETL summary.

Verified rows carry the inputs typed, then the split's ``time_column`` (UTC timestamp) and
``group_column`` (string) when they are not inputs, then ``label`` and the lineage.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import ValidationError

from mlsd_ray.errors import CardError
from mlsd_ray.spec import Data, DesignCard, InputField

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
    (lambda r: r.startswith("event: "), "bad_event"),
    (lambda r: r.startswith("duplicate key"), "duplicate_key"),
    (lambda r: r.startswith("missing label"), "missing_label"),
    (lambda r: r.startswith("label "), "bad_label"),
    (lambda r: r.startswith("missing value"), "missing_value"),
    (lambda r: r.startswith("empty text"), "empty_text"),
    (lambda r: r.startswith("undecodable image"), "undecodable_image"),
    (lambda r: r.startswith("text in ") and " longer than " in r, "long_text"),
    (lambda r: r.startswith("text in "), "short_text"),
    (lambda r: ": cannot cast " in r, "cast_error"),
    (lambda r: ": cannot parse time " in r, "bad_time"),
    (lambda r: " below min " in r or " above max " in r, "out_of_range"),
    (lambda r: " not in allowed values" in r, "not_allowed"),
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


#: What verification takes: a pandas frame, or an Arrow table (``map_batches`` with
#: ``batch_format="pyarrow"``, which spares the conversion to pandas and back).
Batch: TypeAlias = "pd.DataFrame | pa.Table"


def _names(batch: Batch) -> list[str]:
    return list(batch.column_names if isinstance(batch, pa.Table) else batch.columns)


def _cells(batch: Batch, name: str) -> list[str | None]:
    """A column as Python strings with None for nulls, whatever pandas dtype it arrived in."""
    if name not in _names(batch):
        return [None] * len(batch)
    strings = _string_array(batch, name)
    if strings is not None:
        return list(strings.to_pylist())
    values = batch[name].to_pylist() if isinstance(batch, pa.Table) else batch[name].tolist()
    return [None if _is_null(v) else str(v) for v in values]


def _string_array(batch: Batch, name: str) -> pa.Array | None:
    """The column as an Arrow string array when it holds only strings and nulls (as every
    source column does), else None."""
    if name not in _names(batch):
        return None
    if isinstance(batch, pa.Table):
        kind = batch.schema.field(name).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            return None
        return batch[name].combine_chunks().cast(pa.string())
    column = batch[name]
    dtype = column.dtype
    if isinstance(dtype, pd.ArrowDtype):  # what Ray Data's pandas batches hold
        if not (
            pa.types.is_string(dtype.pyarrow_dtype) or pa.types.is_large_string(dtype.pyarrow_dtype)
        ):
            return None
    elif not pd.api.types.is_object_dtype(dtype) and not isinstance(dtype, pd.StringDtype):
        return None
    try:
        strings = pa.array(column, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if isinstance(strings, pa.ChunkedArray):  # pandas' Arrow-backed strings
        strings = strings.combine_chunks()
    return strings


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


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def check_rule(value: Any, name: str, rule: Data.Rule) -> str | None:
    """The reason a typed, non-null input value breaks its ``data.rules`` entry, or None."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if rule.min is not None and value < rule.min:
            return f"'{name}': value {_shown(str(value))} below min {_number(rule.min)}"
        if rule.max is not None and value > rule.max:
            return f"'{name}': value {_shown(str(value))} above max {_number(rule.max)}"
    elif isinstance(value, str):
        stripped = value.strip()
        if rule.allowed is not None and stripped not in rule.allowed:
            return f"'{name}': {_shown(stripped)} not in allowed values"
        if rule.max_length is not None and len(stripped) > rule.max_length:
            return f"text in '{name}' longer than {rule.max_length} characters"
    return None


def check_input(
    cell: str | None, field: InputField, rule: Data.Rule | None = None
) -> tuple[Any, str | None]:
    """(typed value, None) or (None, reason) for one cell of an input column."""
    value, reason = _check_input(cell, field)
    if rule is not None and reason is None and value is not None:
        reason = check_rule(value, field.name, rule)
        if reason is not None:
            value = None
    return value, reason


def _check_input(cell: str | None, field: InputField) -> tuple[Any, str | None]:
    stripped = cell.strip() if cell is not None else None
    textual = field.type in ("text", "string")
    if stripped is None or (not textual and stripped == ""):
        return None, (f"missing value in '{field.name}'" if field.required else None)
    if field.type == "image":
        return _check_image(stripped, field)
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


def _check_image(text: str, field: InputField) -> tuple[Any, str | None]:
    """Base64 text that Pillow decodes (kept as text: the model decodes and resizes it)."""
    from mlsd_ray.images import ImageError, decode

    opts = field.image
    assert opts is not None  # the card fills the defaults for type: image
    try:
        decode(text, opts.width, opts.height, opts.mode)
    except ImageError as err:
        return None, f"undecodable image in '{field.name}': {err}"
    return text, None


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


TIME_TYPE = pa.timestamp("us", tz="UTC")


def parse_times(cells: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(UTC nanoseconds since the epoch as int64, parsed?) per cell.

    A cell is ISO 8601 (``2019-11-24 00:00:17.004101+00:00``, ``2019-11-24T00:00:17Z``,
    ``2019-11-24``; no offset means UTC) or a number of seconds since the epoch.
    """
    series = pd.Series([None if _is_null(c) else str(c).strip() for c in cells], dtype=object)
    numbers = pd.to_numeric(series, errors="coerce")
    numeric = numbers.notna().to_numpy() & np.isfinite(numbers.to_numpy(dtype=float))
    out = np.zeros(len(series), dtype=np.int64)
    ok = numeric.copy()
    with np.errstate(invalid="ignore", over="ignore"):
        out[numeric] = np.round(numbers.to_numpy(dtype=float)[numeric] * 1e9).astype(np.int64)
    rest = ~numeric & series.notna().to_numpy()
    if rest.any():
        parsed = pd.to_datetime(series[rest], utc=True, format="ISO8601", errors="coerce")
        good = parsed.notna().to_numpy()
        values = parsed.dt.as_unit("ns").to_numpy(dtype="datetime64[ns]").astype(np.int64)
        idx = np.flatnonzero(rest)
        out[idx[good]] = values[good]
        ok[idx[good]] = True
    return out, ok


def carried_columns(card: DesignCard) -> dict[str, str]:
    """Columns verified rows carry besides the inputs: name -> ``time`` or ``group``."""
    split = card.data.split
    inputs = set(card.feature_names)
    out: dict[str, str] = {}
    if split.time_column and split.time_column not in inputs:
        out[split.time_column] = "time"
    if split.group_column and split.group_column not in inputs:
        out.setdefault(split.group_column, "group")
    return out


def check_rules(card: DesignCard) -> None:
    """``data.rules`` and ``data.unique_key`` are checked when the card loads
    (``DesignCard._rules_fit_inputs``); a card that was changed after loading is checked again."""
    from mlsd_ray.spec import DesignCard as Card

    try:
        Card.model_validate(card.model_dump(mode="json"))
    except ValidationError as err:
        raise CardError(f"Invalid design card: {err.errors()[0]['msg']}") from None


def good_schema(card: DesignCard) -> pa.Schema:
    """Arrow schema of verified rows: the inputs typed, carried split columns, ``label``, and
    lineage."""
    if LABEL in card.feature_names:
        raise CardError(
            f"framing.inputs: an input is named {LABEL!r}, the name of the verified label column.",
            fix="rename that input with data.sources[].rename",
        )
    arrow = {"text": pa.string(), "string": pa.string(), "category": pa.string()}
    arrow["image"] = pa.string()  # base64 text
    arrow |= {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
    label_type = pa.float64() if card.framing.category == "regression" else pa.int64()
    fields = [pa.field(f.name, arrow[f.type]) for f in card.framing.inputs]
    for name, kind in carried_columns(card).items():
        if name == LABEL:
            raise CardError(
                f"data.split: the {kind} column is named {LABEL!r}, the verified label column.",
                fix="rename it with data.sources[].rename",
            )
        fields.append(pa.field(name, TIME_TYPE if kind == "time" else pa.string()))
    fields += [
        pa.field(LABEL, label_type),
        pa.field(SOURCE, pa.string()),
        pa.field(ROW, pa.int64()),
    ]
    return pa.schema(fields)


Check = Callable[[str | None], tuple[Any, str | None]]  # cell -> (value, reason)


def _check_column(batch: Batch, column: str, reasons: list[str | None], check: Check) -> list[Any]:
    """Typed values of one column; the first problem of each row goes into ``reasons``."""
    values = []
    for i, cell in enumerate(_cells(batch, column)):
        value, problem = check(cell)
        values.append(value)
        if problem is not None and reasons[i] is None:
            reasons[i] = problem
    return values


#: Vectorised checks (Arrow compute) for string columns; any column they are unsure of takes the
#: per-cell path above, which defines the rules. Tests compare the two.
FAST = True


def _fast_column(
    strings: pa.Array, field: InputField, rule: Data.Rule | None
) -> tuple[pa.Array, dict[int, str]] | None:
    """(typed values as Arrow, row -> reason) for a whole column, or None when a cell needs the
    per-cell checks (a value Arrow cannot cast, a non-finite number, a bool column)."""
    import pyarrow.compute as pc

    if field.type in ("bool", "image"):  # images are decoded one by one (Pillow)
        return None
    trimmed = pc.utf8_trim_whitespace(strings)
    nulls = np.asarray(strings.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    textual = field.type in ("text", "string")
    if textual:
        missing = nulls
    else:
        empty = pc.fill_null(pc.equal(trimmed, ""), True)
        missing = np.asarray(empty.to_numpy(zero_copy_only=False), dtype=bool) | nulls
    reasons: dict[int, str] = {}
    drop = missing.copy()  # rows whose value becomes null
    if field.type in ("int", "float"):
        present = pc.if_else(pa.array(missing), pa.scalar(None, pa.string()), trimmed)
        try:
            values = pc.cast(present, pa.float64() if field.type == "float" else pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        if field.type == "float" and pc.any(pc.invert(pc.is_finite(values))).as_py():
            return None
    elif field.type == "category":
        values = trimmed
    else:
        values = strings
        if field.type == "text":
            lengths = np.asarray(
                pc.fill_null(pc.utf8_length(trimmed), 0).to_numpy(zero_copy_only=False)
            )
            for i in np.flatnonzero(~nulls & (lengths < field.min_length)).tolist():
                reasons[i] = (
                    f"empty text in '{field.name}'"
                    if lengths[i] == 0
                    else f"text in '{field.name}' shorter than {field.min_length} characters"
                )
                drop[i] = True
    if missing.any() and field.required:
        reason = f"missing value in '{field.name}'"
        reasons.update(dict.fromkeys(np.flatnonzero(missing).tolist(), reason))
    if rule is not None:
        flagged = _rule_candidates(values, trimmed, rule) & ~drop
        for i in np.flatnonzero(flagged).tolist():
            problem = check_rule(values[i].as_py(), field.name, rule)
            if problem is not None:
                reasons[i], drop[i] = problem, True
    if drop.any():
        values = pc.if_else(pa.array(drop), pa.scalar(None, values.type), values)
    return values, reasons


def _rule_candidates(values: pa.Array, trimmed: pa.Array, rule: Data.Rule) -> np.ndarray:
    """Rows that may break ``rule`` (check_rule then words the reason)."""
    import pyarrow.compute as pc

    out = np.zeros(len(values), dtype=bool)
    masks = []
    if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
        if rule.min is not None:
            masks.append(pc.less(values, rule.min))
        if rule.max is not None:
            masks.append(pc.greater(values, rule.max))
    else:
        if rule.allowed is not None:
            allowed = pa.array(rule.allowed, pa.string())
            masks.append(pc.invert(pc.is_in(trimmed, value_set=allowed)))
        if rule.max_length is not None:
            masks.append(pc.greater(pc.utf8_length(trimmed), rule.max_length))
    for mask in masks:
        out |= np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)
    return out


Column: TypeAlias = list[Any] | pa.Array  # typed values: Python list or Arrow array


def _check_input_column(
    batch: Batch, field: InputField, rule: Data.Rule | None, reasons: list[str | None]
) -> Column:
    strings = _string_array(batch, field.name) if FAST else None
    fast = _fast_column(strings, field, rule) if strings is not None else None
    if fast is None:
        check = partial(check_input, field=field, rule=rule)
        return _check_column(batch, field.name, reasons, check)
    values, problems = fast
    for i, problem in problems.items():
        if reasons[i] is None:
            reasons[i] = problem
    return values


def _verify(batch: Batch, card: DesignCard) -> tuple[dict[str, Column], list[str | None]]:
    """(typed columns by name, reason per row) for ``batch``; see the module docstring."""
    reasons = _cells(batch, REASON)
    typed: dict[str, Column] = {}
    for field in card.framing.inputs:
        rule = card.data.rules.get(field.name)
        typed[field.name] = _check_input_column(batch, field, rule, reasons)
    for name, kind in carried_columns(card).items():
        typed[name] = _carried(batch, name, kind, reasons)
    typed[LABEL] = _check_label_column(batch, card, reasons)
    source = _string_array(batch, SOURCE) if isinstance(batch, pa.Table) else None
    typed[SOURCE] = source if source is not None else _cells(batch, SOURCE)
    typed[ROW] = _row_numbers(batch)
    return typed, reasons


def _check_label_column(batch: Batch, card: DesignCard, reasons: list[str | None]) -> Column:
    """Labels of every row: Arrow look-ups for the cells that match the mapping (or cast as
    numbers), the per-cell ``check_label`` for the rest, which words the reasons."""
    column = card.framing.label.column
    check = partial(check_label, card=card)
    strings = _string_array(batch, column) if FAST else None
    if strings is None:
        return _check_column(batch, column, reasons, check)
    fast = _fast_label(strings, card)
    if fast is None:
        return _check_column(batch, column, reasons, check)
    values, unsure = fast
    if not len(unsure):
        return values
    out = values.to_pylist()  # rare: labels the fast path could not place
    cells = strings.take(pa.array(unsure, pa.int64())).to_pylist()
    for i, cell in zip(unsure.tolist(), cells, strict=True):
        out[i], problem = check(cell)
        if problem is not None and reasons[i] is None:
            reasons[i] = problem
    return out


def _fast_label(strings: pa.Array, card: DesignCard) -> tuple[pa.Array, np.ndarray] | None:
    """(labels, rows left to ``check_label``) by Arrow compute, or None when the whole column
    should take the per-cell path. A row is left over unless its stripped cell is a key of the
    mapping (or, without one, a number Arrow casts); those rows get nulls here."""
    import pyarrow.compute as pc

    label = card.framing.label
    trimmed = pc.utf8_trim_whitespace(strings)
    blank = pc.fill_null(pc.equal(trimmed, ""), True)
    present = pc.if_else(blank, pa.scalar(None, pa.string()), trimmed)
    if label.mapping:
        keys = pa.array(list(label.mapping), pa.string())
        index = pc.index_in(present, value_set=keys)
        values = pa.array(list(label.mapping.values()), pa.int64()).take(index)
    else:
        regression = card.framing.category == "regression"
        try:
            values = pc.cast(present, pa.float64() if regression else pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        if regression:
            if pc.any(pc.invert(pc.is_finite(values))).as_py():
                return None
        else:
            inside = pc.and_(pc.greater_equal(values, 0), pc.less(values, len(label.classes)))
            values = pc.if_else(inside, values, pa.scalar(None, pa.int64()))
    unsure = np.flatnonzero(np.asarray(values.is_null().to_numpy(zero_copy_only=False)))
    return values, unsure


def _as_list(values: Column) -> list[Any]:
    return values.to_pylist() if isinstance(values, pa.Array) else values


def _pick(values: Column, rows: list[int]) -> list[Any]:
    if isinstance(values, pa.Array):
        return list(values.take(pa.array(rows, pa.int64())).to_pylist())
    return [values[i] for i in rows]


def _quarantined_frame(batch: Batch, reasons: list[str | None], rows: Column) -> pd.DataFrame:
    columns = [c for c in _names(batch) if c not in META]
    order = [*columns, REASON, SOURCE, ROW, RAW]
    rejected = np.flatnonzero(~_ok_mask(reasons)).tolist()
    # only the rejected rows are turned back into text
    if isinstance(batch, pa.Table):
        part: Batch = batch.take(pa.array(rejected, pa.int64()))
    else:
        part = batch.iloc[rejected]
    bad: dict[str, list[Any]] = {c: _cells(part, c) for c in [*columns, SOURCE, RAW]}
    bad[REASON] = [reasons[i] for i in rejected]
    bad[ROW] = _pick(rows, rejected)
    quarantined = pd.DataFrame(bad, columns=order)
    if len(quarantined):
        quarantined[ROW] = quarantined[ROW].astype("Int64")
    return quarantined


def verify_batch(batch: Batch, card: DesignCard) -> Verified:
    """Check every row of ``batch`` against the card; see the module docstring for the rules."""
    typed, reasons = _verify(batch, card)
    ok = [r is None for r in reasons]
    good = _frame(
        {
            name: [v for v, k in zip(_as_list(values), ok, strict=True) if k]
            for name, values in typed.items()
        },
        good_schema(card),
    )
    return Verified(good=good, quarantined=_quarantined_frame(batch, reasons, typed[ROW]))


def _ok_mask(reasons: list[str | None]) -> np.ndarray:
    """True where a row has no reason: one C loop (pandas' isna) rather than a Python one."""
    return np.asarray(pd.isna(np.asarray(reasons, dtype=object)), dtype=bool)


def _good_table(
    typed: dict[str, Column], ok: list[bool] | np.ndarray, schema: pa.Schema
) -> pa.Table:
    """The verified rows as Arrow in ``schema``, straight from the typed columns."""
    mask = pa.array(ok, pa.bool_())
    arrays = []
    for field in schema:
        values = typed[field.name]
        if isinstance(values, pa.Array):
            arrays.append(values.filter(mask).cast(field.type))
            continue
        kept = [v for v, k in zip(values, ok, strict=True) if k]
        if pa.types.is_timestamp(field.type):
            nanos = pa.array(kept, pa.int64()).cast(pa.timestamp("ns", tz="UTC"))
            arrays.append(nanos.cast(field.type, safe=False))  # whole microseconds
        else:
            arrays.append(pa.array(kept, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _carried(batch: Batch, name: str, kind: str, reasons: list[str | None]) -> list[Any]:
    """Values of a split time/group column that is not an input; problems into ``reasons``."""
    cells = _cells(batch, name)
    if kind == "time":
        nanos, ok = parse_times(cells)
        values: list[Any] = []
        for i, cell in enumerate(cells):
            if ok[i]:
                values.append(int(nanos[i]))
                continue
            values.append(None)
            if reasons[i] is None:
                if cell is None or not cell.strip():
                    reasons[i] = f"missing value in '{name}'"
                else:
                    reasons[i] = f"'{name}': cannot parse time {_shown(cell.strip())}"
        return values
    for i, cell in enumerate(cells):
        if (cell is None or not cell.strip()) and reasons[i] is None:
            reasons[i] = f"missing value in '{name}'"
    return [None if c is None or not c.strip() else c.strip() for c in cells]


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
        elif pa.types.is_timestamp(field.type):
            nanos = [0 if v is None else v for v in values]
            stamps = pd.to_datetime(np.array(nanos, dtype="int64"), unit="ns", utc=True)
            out[field.name] = pd.Series(stamps).where([v is not None for v in values])
        else:
            out[field.name] = pd.array(values, dtype=object)
    return pd.DataFrame(out, columns=schema.names)


def _row_numbers(batch: Batch) -> Column:
    if ROW not in _names(batch):
        return [None] * len(batch)
    if isinstance(batch, pa.Table) and pa.types.is_integer(batch.schema.field(ROW).type):
        return batch[ROW].combine_chunks().cast(pa.int64())
    values = batch[ROW].to_pylist() if isinstance(batch, pa.Table) else batch[ROW].tolist()
    return [None if _is_null(v) else int(v) for v in values]


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
def good_rows(batch: Batch, card: DesignCard) -> pa.Table:
    typed, reasons = _verify(batch, card)
    return _good_table(typed, _ok_mask(reasons), good_schema(card))


def quarantined_rows(batch: Batch, card: DesignCard, columns: list[str]) -> pa.Table:
    """``columns``: the source columns of every source, so blocks from different files agree."""
    typed, reasons = _verify(batch, card)
    return _quarantine_table(batch, reasons, typed[ROW], columns)


def _quarantine_table(
    batch: Batch, reasons: list[str | None], rows: Column, columns: list[str]
) -> pa.Table:
    bad = _quarantined_frame(batch, reasons, rows)
    schema = quarantine_schema(columns)
    bad = bad.reindex(columns=schema.names).astype(object)
    return _arrow(bad.where(bad.notna(), None), schema)


#: ``verify_rows`` output: which part a row belongs to.
PART = "_part"


def verify_rows(batch: Batch, card: DesignCard, columns: list[str]) -> pa.Table:
    """One verification pass for ``map_batches``: the good rows (``good_schema``) then the
    quarantined ones (``quarantine_schema(columns)``), side by side in one table with a
    ``_part`` column (``good`` / ``bad``); ``split_part`` takes either back out."""
    typed, reasons = _verify(batch, card)
    ok = _ok_mask(reasons)
    good = _good_table(typed, ok, good_schema(card))
    bad = _quarantine_table(batch, reasons, typed[ROW], columns)
    n_good, n_bad = good.num_rows, bad.num_rows
    parts = [pa.repeat(pa.scalar("good"), n_good), pa.repeat(pa.scalar("bad"), n_bad)]
    data: dict[str, pa.Array] = {PART: pa.concat_arrays(parts)}
    for f in good.schema:
        data[f"g:{f.name}"] = pa.concat_arrays(
            [good[f.name].combine_chunks(), pa.nulls(n_bad, f.type)]
        )
    for f in bad.schema:
        data[f"q:{f.name}"] = pa.concat_arrays(
            [pa.nulls(n_good, f.type), bad[f.name].combine_chunks()]
        )
    return pa.table(data)


def split_part(batch: pa.Table, part: str) -> pa.Table:
    """``map_batches`` step: the ``good`` or ``bad`` rows of ``verify_rows`` output, with their
    own column names and types."""
    import pyarrow.compute as pc

    prefix = "g:" if part == "good" else "q:"
    names = [n for n in batch.column_names if n.startswith(prefix)]
    rows = batch.select(names).filter(pc.equal(batch[PART], part))  # only the columns kept
    return rows.rename_columns([n[2:] for n in names])
