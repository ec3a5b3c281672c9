"""ETL: card sources -> verified rows -> train / validation / test, plus a quarantine.

Steps (each timed in the summary):

1. read: every source becomes a Ray Dataset of string columns (``sources.read_source``);
2. verify: ``map_batches`` keeps rows that pass the card's checks, typed, and sets the others
   aside with a reason (``verify``); ``rows_in == rows_ok + rows_quarantined`` always;
3. split: each row gets a seeded hash of its lineage (file URI and row number); within each
   class the rows are ranked by that hash and cut at exact counts, so proportions hold per class
   as far as integers allow and the result does not depend on block order or parallelism;
4. write: Parquet per split (local or ``s3://``), replacing the previous run's output, and
   ``etl_summary.json`` in the workdir.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pydantic import BaseModel

from mlsd_ray import storage
from mlsd_ray.data.sources import read_source
from mlsd_ray.data.verify import (
    LABEL,
    META,
    REASON,
    ROW,
    SOURCE,
    good_rows,
    good_schema,
    quarantine_schema,
    quarantined_rows,
    reason_category,
)
from mlsd_ray.errors import DataError, SourceError
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard, Split

if TYPE_CHECKING:
    import ray.data

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
QUARANTINE = "quarantine"


class EtlSummary(BaseModel):
    """What one ETL run did; written to ``<workdir>/etl_summary.json``."""

    card: str
    sources: list[str]
    rows_in: int
    rows_ok: int
    rows_quarantined: int
    #: reason category (see verify.reason_category) -> rows
    quarantine_by_reason: dict[str, int]
    #: reason category -> one full message, to show what went wrong
    quarantine_examples: dict[str, str]
    rows_per_split: dict[str, int]
    #: split -> class name -> rows (empty for regression)
    label_counts: dict[str, dict[str, int]]
    stratified: bool
    seed: int
    #: train/validation/test/quarantine -> URI
    outputs: dict[str, str]
    #: step -> seconds (read, verify, split, write, total)
    seconds: dict[str, float]


# Splitting -------------------------------------------------------------------------------
def split_counts(n: int, split: Split) -> tuple[int, int, int]:
    """Largest-remainder rounding of n * (train, validation, test): sums to n exactly."""
    shares = [n * split.train, n * split.validation, n * split.test]
    counts = [math.floor(s + 1e-9) for s in shares]
    by_remainder = sorted(range(3), key=lambda i: (-(shares[i] - counts[i]), i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    return counts[0], counts[1], counts[2]


def row_hash(sources: list[str], rows: list[int], seed: int) -> np.ndarray:
    """Seeded 64-bit hash per row of (file URI, row number): stable across processes."""
    key = hashlib.blake2b(str(seed).encode(), digest_size=8).hexdigest()  # 16 chars
    ids = np.array([f"{s}\x1f{r}" for s, r in zip(sources, rows, strict=True)], dtype=object)
    return pd.util.hash_array(ids, hash_key=key, categorize=False)


@dataclass(frozen=True)
class SplitPlan:
    """Per group (class, or one group when not stratified): the last hash in train and in
    validation. A row goes to the first split whose cut its hash does not exceed."""

    seed: int
    stratified: bool
    cuts: dict[int, tuple[int | None, int | None]]

    def group(self, labels: np.ndarray) -> np.ndarray:
        return labels.astype(np.int64) if self.stratified else np.zeros(len(labels), np.int64)

    def assign(self, labels: np.ndarray, hashes: np.ndarray) -> np.ndarray:
        """Split name per row."""
        out = np.full(len(labels), "test", dtype=object)
        groups = self.group(labels)
        for group, (train_cut, val_cut) in self.cuts.items():
            mine = groups == group
            if val_cut is not None:
                out[mine & (hashes <= np.uint64(val_cut))] = "validation"
            if train_cut is not None:
                out[mine & (hashes <= np.uint64(train_cut))] = "train"
        return out


def plan_split(labels: np.ndarray, hashes: np.ndarray, split: Split, stratified: bool) -> SplitPlan:
    plan = SplitPlan(split.seed, stratified, {})
    groups = plan.group(labels)
    for group in np.unique(groups):
        ranked = np.sort(hashes[groups == group])
        n_train, n_val, _ = split_counts(len(ranked), split)
        train_cut = int(ranked[n_train - 1]) if n_train else None
        val_cut = int(ranked[n_train + n_val - 1]) if n_val else None
        plan.cuts[int(group)] = (train_cut, val_cut)
    return plan


def take_split(batch: pa.Table, plan: SplitPlan, split: str) -> pa.Table:
    """``map_batches`` step: the rows of ``batch`` that belong to ``split``."""
    hashes = row_hash(batch[SOURCE].to_pylist(), batch[ROW].to_pylist(), plan.seed)
    labels = batch[LABEL].to_numpy()
    return batch.filter(pa.array(plan.assign(labels, hashes) == split))


# Running ---------------------------------------------------------------------------------
@contextmanager
def _step(name: str, seconds: dict[str, float]) -> Iterator[None]:
    log.info("etl: %s ...", name)
    start = time.perf_counter()
    yield
    seconds[name] = round(time.perf_counter() - start, 3)
    log.info("etl: %s done in %.2f s", name, seconds[name])


def _check_output(uri: str) -> None:
    """Fail before the work, not after it, when the output bucket does not exist."""
    if not storage.is_remote(uri):
        return
    fs, path = storage.filesystem(uri)
    bucket = path.split("/", 1)[0]
    try:
        missing = fs.get_file_info(bucket).type == pafs.FileType.NotFound
    except OSError as err:
        missing, why = True, str(err)
    else:
        why = f"bucket {bucket!r} does not exist"
    if missing:
        raise SourceError(
            f"Cannot write ETL output to {uri!r}.",
            why,
            "create the bucket or change data.output_uri",
        )


def _write(ds: ray.data.Dataset, uri: str, schema: pa.Schema, rows: int) -> None:
    """Replace whatever is at ``uri`` with the dataset's Parquet files (an empty split is one
    empty file, so that readers still see its columns)."""
    fs, path = storage.filesystem(uri)
    try:
        storage.delete_dir(uri)
        fs.create_dir(path, recursive=True)
    except OSError as err:
        raise SourceError(
            f"Cannot write ETL output to {uri!r}.",
            str(err),
            "check data.output_uri, that its bucket exists and that you may write to it",
        ) from None
    if rows:
        ds.write_parquet(path, filesystem=fs)
    else:
        pq.write_table(schema.empty_table(), f"{path}/empty.parquet", filesystem=fs)


def _class_name(card: DesignCard, index: int) -> str:
    classes = card.framing.label.classes
    return classes[index] if 0 <= index < len(classes) else str(index)


def _read(card: DesignCard, workdir: Workdir) -> tuple[ray.data.Dataset, list[str]]:
    """All sources as one dataset, and the union of their columns (for the quarantine)."""
    parts = [read_source(s, card, workdir.root / "staging") for s in card.data.sources]
    columns = [c for p in parts for c in p.schema().names if c not in META]
    return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0], list(dict.fromkeys(columns))


def _count_reasons(bad: ray.data.Dataset) -> tuple[dict[str, int], dict[str, str]]:
    """(rows per reason category, first message per category)."""
    counts: dict[str, int] = {}
    examples: dict[str, str] = {}
    if bad.count():
        for reason in bad.select_columns([REASON]).to_pandas()[REASON]:
            category = reason_category(reason)
            counts[category] = counts.get(category, 0) + 1
            examples.setdefault(category, reason)
    return counts, examples


def _check_usable(
    card: DesignCard, labels: np.ndarray, rows_in: int, reasons: dict[str, str]
) -> None:
    if not len(labels):
        raise DataError(
            f"No usable rows: all {rows_in} rows of {card.name!r} were quarantined.",
            f"reasons: {reasons or 'the sources are empty'}",
            "fix the sources or the card (rename, framing.label.mapping, input types)",
        )
    if card.framing.category != "regression" and len(np.unique(labels)) < 2:
        raise DataError(
            f"Only one class ({_class_name(card, int(labels[0]))!r}) among the {len(labels)} "
            f"usable rows of {card.name!r}; a classifier needs at least two.",
            f"quarantined: {reasons}",
            "check framing.label.mapping against the label values in the data",
        )


def _label_counts(card: DesignCard, labels: np.ndarray, assigned: np.ndarray) -> dict[str, Any]:
    if card.framing.category == "regression":
        return {s: {} for s in SPLITS}
    out: dict[str, Any] = {}
    for s in SPLITS:
        counts = pd.Series(labels[assigned == s]).value_counts().sort_index()
        out[s] = {_class_name(card, int(k)): int(v) for k, v in counts.items()}
    return out


def run_etl(card: DesignCard, workdir: Workdir) -> EtlSummary:
    """Read, verify, split and write the card's data; see the module docstring."""
    from mlsd_ray.runtime import ensure_ray

    ensure_ray()
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    outputs = {s: workdir.split_uri(card, s) for s in (*SPLITS, QUARANTINE)}
    _check_output(workdir.data_uri(card))

    with _step("read", seconds):
        raw, columns = _read(card, workdir)
        rows_in = raw.count()

    with _step("verify", seconds):
        good = raw.map_batches(partial(good_rows, card=card), batch_format="pandas").materialize()
        check_bad = partial(quarantined_rows, card=card, columns=columns)
        bad = raw.map_batches(check_bad, batch_format="pandas").materialize()
        rows_ok, rows_quarantined = good.count(), bad.count()
        if rows_in != rows_ok + rows_quarantined:
            raise AssertionError(f"rows_in {rows_in} != {rows_ok} ok + {rows_quarantined} bad")
        by_reason, examples = _count_reasons(bad)
        log.info("etl: %d rows in, %d ok, quarantined %s", rows_in, rows_ok, by_reason)

    with _step("split", seconds):
        keys = good.select_columns([LABEL, SOURCE, ROW]).to_pandas() if rows_ok else None
        labels = keys[LABEL].to_numpy() if keys is not None else np.array([])
        _check_usable(card, labels, rows_in, examples)
        assert keys is not None
        hashes = row_hash(keys[SOURCE].tolist(), keys[ROW].tolist(), card.data.split.seed)
        stratified = card.data.split.stratify and card.framing.category != "regression"
        plan = plan_split(labels, hashes, card.data.split, stratified)
        assigned = plan.assign(labels, hashes)
        rows_per_split = {s: int((assigned == s).sum()) for s in SPLITS}

    with _step("write", seconds):
        for s in SPLITS:
            part = good.map_batches(partial(take_split, plan=plan, split=s), batch_format="pyarrow")
            _write(part, outputs[s], good_schema(card), rows_per_split[s])
        _write(bad, outputs[QUARANTINE], quarantine_schema(columns), rows_quarantined)
    seconds["total"] = round(time.perf_counter() - start, 3)

    summary = EtlSummary(
        card=card.name,
        sources=[s.uri for s in card.data.sources],
        rows_in=rows_in,
        rows_ok=rows_ok,
        rows_quarantined=rows_quarantined,
        quarantine_by_reason=by_reason,
        quarantine_examples=examples,
        rows_per_split=rows_per_split,
        label_counts=_label_counts(card, labels, assigned),
        stratified=stratified,
        seed=card.data.split.seed,
        outputs=outputs,
        seconds=seconds,
    )
    storage.write_json(str(workdir.summary_path("etl")), summary.model_dump())
    log.info("etl: wrote %s; splits %s", workdir.summary_path("etl"), rows_per_split)
    return summary


def read_split(card: DesignCard, workdir: Workdir, split: str) -> pd.DataFrame:
    """Load a split written by ``run_etl`` (local or ``s3://``), in file and row order."""
    if split not in (*SPLITS, QUARANTINE):
        raise DataError(f"Unknown split {split!r}.", fix=f"use one of {[*SPLITS, QUARANTINE]}")
    uri = workdir.split_uri(card, split)
    fs, path = storage.filesystem(uri)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        raise DataError(
            f"No {split} split at {uri!r}.", fix=f"run the ETL first: mlsd etl <card> ({card.name})"
        )
    table = pads.dataset(path, filesystem=fs, format="parquet").to_table()
    frame = table.to_pandas(ignore_metadata=True)  # plain dtypes, whatever wrote the files
    if {SOURCE, ROW} <= set(frame.columns):
        frame = frame.sort_values([SOURCE, ROW], kind="stable")
    return frame.reset_index(drop=True)
