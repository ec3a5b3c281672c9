"""The ETL's work on each block of rows, as ``map_batches`` steps over whole blocks.

Two passes touch every row (reading aside), because they are where the time goes at scale:

1. ``verify_block``: verification (``verify.verify_rows``: good rows typed, bad rows with a
   reason) plus, for the good rows, the small keys the driver decides with (label, lineage,
   split sort keys, leakage / duplicate / content hashes; ``row_keys``), side by side in one
   table: ``g:``, ``q:`` and ``k:`` columns and ``_part``;
2. ``write_block``: each block's good rows placed in their split (with the split keys
   computed in pass 1, so no hashing again), re-sampled for the train split, written as
   Parquet to every split folder at once, and its bad rows (plus duplicates of a
   ``data.unique_key``) to the quarantine; it returns the rows written per folder, which
   the driver checks against its plan.

``take_good``, ``take_bad`` and ``take_meta`` read pass 1's output for the profile, the
quarantine and the driver.

Pass 1's blocks stay in the object store until the write, so their layout is kept narrow
(``_narrow``): at 2M rows they were 650 MB, more than a small node's object store, and spilled
(issue 10). The quarantine's text cells are one list column (null, so 4 bytes, on a good row,
where 21 null text columns took 84), and the source URI and the part are dictionaries.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from mlsd_ray.data import layout as lay
from mlsd_ray.data import manifest as mf
from mlsd_ray.data.split import BalancePlan, SplitPlan, normalise_text, row_hash
from mlsd_ray.data.verify import (
    LABEL,
    PART,
    RAW,
    REASON,
    ROW,
    SOURCE,
    good_schema,
    split_part,
    verify_rows,
)
from mlsd_ray.spec import DesignCard

LEAK, DUP, H1, H2, PRIMARY, SECONDARY = "_leak", "_dup", "_h1", "_h2", "_p", "_s"
QUARANTINE = "quarantine"
CELLS = "q:_cells"  # a bad row's text cells, in ``quarantine_schema`` order (lineage aside)
LINEAGE = (SOURCE, ROW)  # one pair of columns for both parts: ``g:_source``, ``g:_row``
KEPT = (REASON, *LINEAGE)  # quarantine columns kept as columns: the driver reads them
Target = tuple[pafs.FileSystem, str]  # (filesystem, folder path in it)


def row_keys(batch: pa.Table, card: DesignCard, proto: SplitPlan) -> pa.Table:
    """Label, lineage, split keys, leakage / duplicate / content hashes of verified rows."""
    schema = good_schema(card)
    columns = mf.data_columns(schema)
    hashes = mf.column_hashes(batch, columns)
    n = batch.num_rows
    primary, secondary = proto.keys(batch)
    text = card.framing.text_input
    if text is not None:
        leak = pd.util.hash_array(
            np.array(normalise_text(batch[text].to_pylist()), dtype=object),
            hash_key="mlsd-leakage-001",
            categorize=False,
        )
    else:
        leak = mf.combine([hashes[f] for f in card.feature_names], 0, n)
    out: dict[str, Any] = {
        LABEL: batch[LABEL],
        SOURCE: batch[SOURCE],
        ROW: batch[ROW],
        PRIMARY: primary,
        SECONDARY: secondary,
        LEAK: leak,
        H1: mf.combine([hashes[c] for c in columns], 0, n),
        H2: mf.combine([hashes[c] for c in columns], 1, n),
    }
    if card.data.unique_key:
        out[DUP] = mf.combine([hashes[c] for c in card.data.unique_key], 0, n)
    return pa.table(out)


# Pass 1 ------------------------------------------------------------------------------------
def verify_block(
    batch: pa.Table, card: DesignCard, columns: list[str], proto: SplitPlan
) -> pa.Table:
    """``verify_rows`` output (good rows first) plus ``k:`` key columns for the good rows."""
    both = verify_rows(batch, card, columns)
    good = split_part(both, "good")
    keys = row_keys(good, card, proto)
    bad = both.num_rows - good.num_rows
    for name in keys.column_names:
        if name in (LABEL, SOURCE, ROW):  # the good rows carry them already
            continue
        column = keys[name].combine_chunks()
        both = both.append_column(
            f"k:{name}", pa.concat_arrays([column, pa.nulls(bad, column.type)])
        )
    return _narrow(both)


def _narrow(both: pa.Table) -> pa.Table:
    """The same rows in fewer bytes (see the module's docstring); ``take_bad`` unpacks."""
    cells = [n for n in both.column_names if n.startswith("q:") and n[2:] not in KEPT]
    bad = pc.equal(both[PART], "bad")
    out = both.drop_columns([*cells, *(f"q:{n}" for n in LINEAGE)])
    out = out.set_column(0, PART, _dictionary(both[PART], pa.int8()))
    for name in LINEAGE:  # a row is good or bad: its lineage in the good part's columns
        column = pc.coalesce(both[f"g:{name}"], both[f"q:{name}"])
        column = _dictionary(column) if name == SOURCE else column
        out = out.set_column(out.schema.get_field_index(f"g:{name}"), f"g:{name}", column)
    return out.append_column(CELLS, _pack(both.select(cells).filter(bad), len(both)))


def _dictionary(column: pa.ChunkedArray, index: pa.DataType = pa.int32()) -> pa.Array:
    encoded = pc.dictionary_encode(column.combine_chunks())
    return pa.DictionaryArray.from_arrays(encoded.indices.cast(index), encoded.dictionary)


def _pack(bad: pa.Table, n: int) -> pa.Array:
    """The bad rows (the last ``len(bad)`` of ``n``) as lists of their text cells; null on
    the good rows. Row-major values: row i's cells are ``values[i*k:(i+1)*k]``."""
    m, k = bad.num_rows, bad.num_columns
    columns = [bad[c].combine_chunks().cast(pa.string()) for c in bad.column_names]
    values = pa.concat_arrays(columns) if columns else pa.array([], pa.string())
    values = values.take(pa.array(np.arange(m * k).reshape(k, m).T.ravel()))  # column- to row-major
    offsets = np.concatenate([np.zeros(n - m, np.int32), np.arange(m + 1, dtype=np.int32) * k])
    good = np.arange(n) < n - m
    return pa.ListArray.from_arrays(pa.array(offsets), values, mask=pa.array(good))


def _good_mask(batch: pa.Table) -> pa.ChunkedArray:
    return pc.equal(batch[PART], "good")


def take_good(batch: pa.Table) -> pa.Table:
    """The verified rows of a pass-1 block, with their own names and types."""
    return split_part(batch, "good")


def take_bad(batch: pa.Table, schema: pa.Schema) -> pa.Table:
    """The quarantined rows of a pass-1 block in the quarantine ``schema``."""
    rows = batch.filter(pc.equal(batch[PART], "bad"))
    cells = [f for f in schema if f.name not in KEPT]
    values = pc.list_flatten(rows[CELLS]).combine_chunks()
    m, k = rows.num_rows, len(cells)
    data: dict[str, Any] = {}
    for f in schema:
        if f.name in KEPT:
            prefix = "g:" if f.name in LINEAGE else "q:"
            data[f.name] = rows[prefix + f.name].cast(f.type)
        else:  # cell j of every row
            j = cells.index(f)
            data[f.name] = values.take(pa.array(np.arange(m) * k + j)).cast(f.type)
    return pa.table(data, schema=schema)


def take_meta(batch: pa.Table) -> pa.Table:
    """What the driver needs of a pass-1 block: the keys of the good rows (label, lineage,
    ``k:`` columns) and the reasons of the bad ones, in one table keyed by ``_part``."""
    keys = [n for n in batch.column_names if n.startswith("k:")]
    data = {
        PART: batch[PART],
        LABEL: batch[f"g:{LABEL}"],
        SOURCE: batch[f"g:{SOURCE}"],
        ROW: batch[f"g:{ROW}"],
        REASON: batch[f"q:{REASON}"],
    }
    data.update({n[2:]: batch[n] for n in keys})
    return pa.table(data)


# Pass 2 ------------------------------------------------------------------------------------
def lineage_ids(batch: pa.Table) -> list[tuple[str, int]]:
    return list(zip(batch[SOURCE].to_pylist(), batch[ROW].to_pylist(), strict=True))


def drop_rows(batch: pa.Table, ids: frozenset[tuple[str, int]]) -> pa.Table:
    if not ids:
        return batch
    keep = [i not in ids for i in lineage_ids(batch)]
    return batch.filter(pa.array(keep, pa.bool_()))


def duplicate_rows(
    batch: pa.Table, reasons: dict[tuple[str, int], str], schema: pa.Schema
) -> pa.Table:
    """Verified rows that repeat a unique key, in the quarantine schema (values as text)."""
    ids = lineage_ids(batch)
    part = batch.filter(pa.array([i in reasons for i in ids], pa.bool_()))
    n = part.num_rows
    data: dict[str, Any] = {}
    for f in schema:
        if f.name == REASON:
            data[f.name] = pa.array([reasons[i] for i in lineage_ids(part)], pa.string())
        elif f.name == RAW:
            data[f.name] = pa.nulls(n, pa.string())
        elif f.name in part.column_names:
            data[f.name] = part[f.name].cast(f.type)
        else:
            data[f.name] = pa.nulls(n, f.type)
    return pa.table(data, schema=schema)


def block_name(batch: pa.Table) -> str:
    """A file name from the block's first row: the same on a retry, unique across blocks."""
    source = batch[f"g:{SOURCE}"][0].as_py()
    row = batch[f"g:{ROW}"][0].as_py()
    digest = row_hash([str(source)], [int(row or 0)], 0, "file")[0]
    return f"part-{int(digest):016x}"


def write_block(
    batch: pa.Table,
    *,
    plan: SplitPlan,
    balance: BalancePlan,
    schema: pa.Schema,
    quarantine_schema: pa.Schema,
    targets: dict[str, Target],
    duplicates: dict[tuple[str, int], str],
    layout: lay.Layout | None,
) -> pa.Table:
    """Write a pass-1 block to every split and the quarantine; rows written per folder."""
    written = dict.fromkeys(targets, 0)
    if batch.num_rows:
        name = block_name(batch)
        good_mask = _good_mask(batch)
        good = split_part(batch, "good")
        keys = batch.select([f"k:{PRIMARY}", f"k:{SECONDARY}"]).filter(good_mask)
        primary = keys[f"k:{PRIMARY}"].to_numpy()
        secondary = keys[f"k:{SECONDARY}"].to_numpy()
        bad = take_bad(batch, quarantine_schema)
        if duplicates:
            bad = pa.concat_tables([bad, duplicate_rows(good, duplicates, quarantine_schema)])
            keep = np.array([i not in duplicates for i in lineage_ids(good)], dtype=bool)
            good, primary, secondary = good.filter(pa.array(keep)), primary[keep], secondary[keep]
        assigned = plan.assign(good[LABEL].to_numpy(), primary, secondary)
        for split, (fs, path) in targets.items():
            if split == QUARANTINE:
                written[split] = lay.write_block(bad, fs, path, name, None)
                continue
            part = good.filter(pa.array(assigned == split)).cast(schema)
            if split == "train" and balance.per_class and part.num_rows:
                copies = balance.copies(part[LABEL].to_numpy(), part[SOURCE], part[ROW])
                part = part.take(pa.array(np.repeat(np.arange(part.num_rows), copies)))
            written[split] = lay.write_block(lay.add_derived(part, layout), fs, path, name, layout)
    return pa.table({"folder": list(written), "rows": list(written.values())})
