"""Splitting verified rows: random (stratified), time-based and group-aware; leakage; balance.

Every strategy is a cut on a sort key, so that the plan is a handful of numbers computed once
in the driver and each Ray task can place its rows alone, whatever the block order:

* ``random``: the key is a seeded hash of the row's lineage (file URI, row number); within each
  class (when stratified) rows are ranked by it and cut at exact counts;
* ``time``: the key is (time, lineage hash): the oldest rows train, the newest test, so
  ``max(train time) <= min(test time)``; equal times are ordered by the hash;
* ``group``: the key is a seeded hash of the group value, so all rows of one group share it and
  land in one split; the cut falls after the group holding the n-th row, so the counts are as
  close to the shares as whole groups allow.

Leakage: rows whose normalised text (lower case, single spaces), or without a text input whose
inputs, appear in two splits. Balance: per class of the train split, a number of copies per row
(``down``: 0 or 1, ``up``: base + 0 or 1), chosen by another seeded hash.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlsd_ray.data.verify import LABEL, ROW, SOURCE
from mlsd_ray.spec import Split

SPLITS = ("train", "validation", "test")
Cut = tuple[Any, Any]  # (primary, secondary): the last key that belongs to the split


def split_counts(n: int, split: Split) -> tuple[int, int, int]:
    """Largest-remainder rounding of n * (train, validation, test): sums to n exactly."""
    shares = [n * split.train, n * split.validation, n * split.test]
    counts = [math.floor(s + 1e-9) for s in shares]
    by_remainder = sorted(range(3), key=lambda i: (-(shares[i] - counts[i]), i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    return counts[0], counts[1], counts[2]


def _key(seed: int, salt: str = "") -> str:
    return hashlib.blake2b(f"{seed}{salt}".encode(), digest_size=8).hexdigest()  # 16 chars


Strings: TypeAlias = "list[str] | pa.Array | pa.ChunkedArray"
Ints: TypeAlias = "list[int] | pa.Array | pa.ChunkedArray"


def row_hash(sources: Strings, rows: Ints, seed: int, salt: str = "") -> np.ndarray:
    """Seeded 64-bit hash per row of (file URI, row number): stable across processes.
    Arrow columns are joined by Arrow compute (the same text as the Python lists give)."""
    if isinstance(sources, pa.Array | pa.ChunkedArray):
        numbers = pc.cast(
            pa.chunked_array([rows]) if isinstance(rows, pa.Array) else rows, pa.string()
        )
        text = pc.binary_join_element_wise(
            pc.fill_null(sources.cast(pa.string()), "None"), pc.fill_null(numbers, "None"), "\x1f"
        )
        ids = np.asarray(text.to_numpy(zero_copy_only=False), dtype=object)
    else:
        ids = np.array([f"{s}\x1f{r}" for s, r in zip(sources, rows, strict=True)], dtype=object)
    return pd.util.hash_array(ids, hash_key=_key(seed, salt), categorize=False)


def value_hash(values: list[Any], seed: int) -> np.ndarray:
    """Seeded 64-bit hash per value (as text; None hashes like the empty string)."""
    ids = np.array(["" if v is None else str(v) for v in values], dtype=object)
    return pd.util.hash_array(ids, hash_key=_key(seed, "group"), categorize=False)


def time_key(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Sortable numbers for a time column: int64 for timestamps, float64 for numbers; nulls
    sort last."""
    if pa.types.is_timestamp(column.type):
        values = pc.fill_null(column.cast(pa.int64()), np.iinfo(np.int64).max)
        return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.int64)
    values = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
    return np.where(np.isnan(values), np.inf, values)


def _le(primary: np.ndarray, secondary: np.ndarray, cut: Cut) -> np.ndarray:
    p = np.asarray(cut[0], dtype=primary.dtype)
    s = np.asarray(cut[1], dtype=secondary.dtype)
    return np.asarray((primary < p) | ((primary == p) & (secondary <= s)))


@dataclass(frozen=True)
class SplitPlan:
    """Per group (class, or one group when not stratified): the last key in train and in
    validation. A row goes to the first split whose cut its key does not exceed."""

    seed: int
    stratified: bool
    cuts: dict[int, tuple[Cut | None, Cut | None]]
    strategy: str = "random"
    column: str | None = None  # the time or group column

    def group(self, labels: np.ndarray) -> np.ndarray:
        return labels.astype(np.int64) if self.stratified else np.zeros(len(labels), np.int64)

    def keys(self, batch: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """(primary, secondary) sort keys of a block's rows."""
        lineage = row_hash(batch[SOURCE], batch[ROW], self.seed)
        if self.strategy == "time":
            assert self.column is not None
            return time_key(batch[self.column]), lineage
        if self.strategy == "group":
            assert self.column is not None
            groups = value_hash(batch[self.column].to_pylist(), self.seed)
            return groups, groups
        return lineage, lineage

    def assign(
        self, labels: np.ndarray, hashes: np.ndarray, secondary: np.ndarray | None = None
    ) -> np.ndarray:
        """Split name per row; ``hashes`` is the primary key."""
        secondary = hashes if secondary is None else secondary
        out = np.full(len(labels), "test", dtype=object)
        groups = self.group(labels)
        for group, (train_cut, val_cut) in self.cuts.items():
            mine = groups == group
            if val_cut is not None:
                out[mine & _le(hashes, secondary, val_cut)] = "validation"
            if train_cut is not None:
                out[mine & _le(hashes, secondary, train_cut)] = "train"
        return out


def plan_split(
    labels: np.ndarray,
    hashes: np.ndarray,
    split: Split,
    stratified: bool,
    secondary: np.ndarray | None = None,
    strategy: str = "random",
    column: str | None = None,
) -> SplitPlan:
    """Cuts at exact counts per group of the rows ranked by (hashes, secondary)."""
    secondary = hashes if secondary is None else secondary
    plan = SplitPlan(split.seed, stratified, {}, strategy, column)
    groups = plan.group(labels)
    for group in np.unique(groups):
        mine = groups == group
        p, s = hashes[mine], secondary[mine]
        order = np.lexsort((s, p))
        n_train, n_val, _ = split_counts(len(order), split)

        def cut(n: int, p: np.ndarray = p, s: np.ndarray = s, order: np.ndarray = order) -> Cut:
            i = order[n - 1]
            return (p[i].item(), s[i].item())

        plan.cuts[int(group)] = (
            cut(n_train) if n_train else None,
            cut(n_train + n_val) if n_val else None,
        )
    return plan


# Balance ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BalancePlan:
    """Copies of each train row: ``base[class] + (hash <= cut[class])``."""

    seed: int
    per_class: dict[int, tuple[int, int | None]] = field(default_factory=dict)

    def copies(self, labels: np.ndarray, sources: Strings, rows: Ints) -> np.ndarray:
        hashes = row_hash(sources, rows, self.seed, "balance")
        out = np.ones(len(labels), dtype=np.int64)
        for label, (base, cut) in self.per_class.items():
            mine = labels == label
            extra = hashes <= np.uint64(cut) if cut is not None else np.zeros(len(labels), bool)
            out[mine] = base + extra[mine]
        return out


def plan_balance(
    mode: str, labels: np.ndarray, sources: list[str], rows: list[int], seed: int
) -> BalancePlan:
    """``down``: every class to the smallest class's count; ``up``: to the largest."""
    plan = BalancePlan(seed)
    if mode == "none" or not len(labels):
        return plan
    hashes = row_hash(sources, rows, seed, "balance")
    classes, counts = np.unique(labels, return_counts=True)
    target = int(counts.min() if mode == "down" else counts.max())
    for label, n in zip(classes, counts, strict=True):
        base, extra = divmod(target, int(n))
        ranked = np.sort(hashes[labels == label])
        plan.per_class[int(label)] = (base, int(ranked[extra - 1]) if extra else None)
    return plan


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """``n / (k * n_class)`` per class present (scikit-learn's "balanced")."""
    classes, counts = np.unique(labels, return_counts=True)
    n, k = len(labels), len(classes)
    return {int(c): round(n / (k * int(m)), 6) for c, m in zip(classes, counts, strict=True)}


def take_split(
    batch: pa.Table, plan: SplitPlan, split: str, balance: BalancePlan | None = None
) -> pa.Table:
    """``map_batches`` step: the rows of ``batch`` that belong to ``split`` (repeated or dropped
    by ``balance`` when given)."""
    primary, secondary = plan.keys(batch)
    labels = batch[LABEL].to_numpy()
    part = batch.filter(pa.array(plan.assign(labels, primary, secondary) == split))
    if balance is None or not balance.per_class or not part.num_rows:
        return part
    copies = balance.copies(part[LABEL].to_numpy(), part[SOURCE], part[ROW])
    return part.take(pa.array(np.repeat(np.arange(part.num_rows), copies)))


# Leakage ---------------------------------------------------------------------------------------
def normalise_text(values: list[Any]) -> list[str]:
    return [" ".join(str(v).lower().split()) if v is not None else "" for v in values]


def leakage(
    keys: pd.DataFrame, assigned: np.ndarray, what: str, examples: int = 3
) -> dict[str, Any]:
    """Rows whose leakage key (column ``_leak``) is in more than one split."""
    leak = keys["_leak"].to_numpy()
    uniques = {s: np.unique(leak[assigned == s]) for s in SPLITS}
    pairs: dict[str, int] = {}
    for a_i, a in enumerate(SPLITS):
        for b in SPLITS[a_i + 1 :]:
            pairs[f"{a}/{b}"] = len(np.intersect1d(uniques[a], uniques[b], assume_unique=True))
    values, counts = np.unique(np.concatenate(list(uniques.values())), return_counts=True)
    shared = values[counts > 1]
    involved = np.isin(leak, shared)
    shown = []
    if len(shared):
        # the first `examples` leaking values in lineage order, found by sorting integer
        # codes (sources sorted as text), not millions of strings
        where = np.flatnonzero(involved)
        sources = keys[SOURCE].iloc[where]
        if isinstance(sources.dtype, pd.CategoricalDtype) and sources.cat.ordered:
            codes = sources.cat.codes.to_numpy()  # categories sorted as text (see etl)
        else:
            codes = pd.factorize(sources.to_numpy(), sort=True)[0]
        order = where[np.lexsort((keys[ROW].to_numpy()[where], codes))]
        firsts = pd.unique(leak[order])[:examples]
        picked = order[np.isin(leak[order], firsts)]
        rows = pd.DataFrame(
            {
                "leak": leak[picked],
                "split": assigned[picked],
                SOURCE: np.asarray(keys[SOURCE].iloc[picked].tolist(), dtype=object),
                ROW: keys[ROW].to_numpy()[picked],
            }
        )
        for key in firsts:
            part = rows[rows["leak"] == key].drop_duplicates("split")
            shown.append(
                [
                    f"{s}:{r} ({p})"
                    for s, r, p in zip(part[SOURCE], part[ROW], part["split"], strict=True)
                ]
            )
    return {
        "compared": what,
        "values_in_several_splits": len(shared),
        "rows": int(involved.sum()),
        "pairs": pairs,
        "examples": shown,
    }
