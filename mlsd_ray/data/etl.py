"""ETL: card sources -> verified rows -> train / validation / test, plus a quarantine.

Steps (each timed in the summary):

1. read: every source becomes a Ray Dataset of string columns (``sources.read_source``): files
   (CSV, TSV, Parquet, JSON lines; local or ``s3://``; globs and partitioned folders), PostgreSQL
   tables or queries (``ray.data.read_sql``), event logs joined into labelled impressions;
2. verify: one ``map_batches`` pass over whole Arrow blocks (``blocks.verify_block``) keeps
   rows that pass the card's checks (types, nullability, text length, ``data.rules``), typed,
   sets the others aside with a reason (``verify``), and computes the keys the driver decides
   with (label, lineage, split sort keys, leakage / duplicate / content hashes). When every
   source is files (no database, no event join) the two are one step, ``read_verify``: each
   file's Ray task parses and verifies it, so its raw rows never pass through the object store;
3. keys and split: the driver gathers the keys (rows repeating a ``data.unique_key`` are
   quarantined too; ``rows_in == rows_ok + rows_quarantined`` always), computes cuts at exact
   counts (per class when stratified, ``split``), so the result does not depend on block order
   or parallelism; then the leakage check (same text in two splits) and the class weights /
   re-sampling plan of the train split;
4. profile: column statistics of the verified rows, one task per block (``profile``), checked
   against a reference profile (the previous run's by default): findings warn or fail per the card;
5. write: one pass (``blocks.write_block``) writes every block's rows to their split folders
   and the quarantine as Parquet (local or ``s3://``; Hive-partitioned by ``data.partition_by``,
   see ``layout``) under ``versions/<dataset_version>/`` (the content hash; older versions
   stay, see ``versions``); the rows written per folder must equal the plan. Then
   ``profile.json`` and ``manifest.json`` next to the splits and copied to the top, the
   ``CURRENT`` pointer last, ``etl_summary.json`` in the workdir and the data report under
   ``<workdir>/reports/data``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from mlsd_ray import progress, storage
from mlsd_ray.data import blocks as blk
from mlsd_ray.data import layout as lay
from mlsd_ray.data import manifest as mf
from mlsd_ray.data import profile as prof
from mlsd_ray.data import versions as dv
from mlsd_ray.data.blocks import DUP, H1, H2, PRIMARY, SECONDARY
from mlsd_ray.data.missing import missing_by_column
from mlsd_ray.data.sources import describe, plan_files, read_files, read_source_stats
from mlsd_ray.data.split import (
    SPLITS,
    BalancePlan,
    SplitPlan,
    class_weights,
    leakage,
    plan_balance,
    plan_split,
    row_hash,
    split_counts,
    take_split,
)
from mlsd_ray.data.verify import (
    LABEL,
    META,
    PART,
    REASON,
    ROW,
    SOURCE,
    check_rules,
    good_schema,
    quarantine_schema,
    reason_category,
)
from mlsd_ray.errors import DataError, SourceError
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard

if TYPE_CHECKING:
    import ray.data

log = logging.getLogger(__name__)

__all__ = [
    "QUARANTINE",
    "SPLITS",
    "EtlSummary",
    "SplitPlan",
    "dataset_version",
    "plan_split",
    "read_split",
    "row_hash",
    "run_etl",
    "split_counts",
    "take_split",
]

QUARANTINE = "quarantine"
PROFILE = "profile.json"


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
    #: split -> rows assigned (sums to rows_ok; see rows_written after re-sampling)
    rows_per_split: dict[str, int]
    #: split -> class name -> rows written (empty for regression)
    label_counts: dict[str, dict[str, int]]
    stratified: bool
    seed: int
    #: train/validation/test/quarantine -> URI
    outputs: dict[str, str]
    #: step -> seconds (read, verify, split, profile, write, total)
    seconds: dict[str, float]
    #: first 12 hex digits of the content hash; models record it as the data they saw
    dataset_version: str = ""
    #: SHA-256 over the schema and every split's rows (see mlsd_ray.data.manifest)
    content_hash: str = ""
    #: URI of manifest.json (next to the splits)
    manifest: str = ""
    #: URI of profile.json (column statistics of the verified rows)
    profile: str = ""
    #: random / time / group
    split_strategy: str = "random"
    #: split -> rows written (train differs from rows_per_split when data.balance re-samples)
    rows_written: dict[str, int] = Field(default_factory=dict)
    #: data.balance as applied to the train split
    balance: str = "none"
    #: class name -> weight n / (k * n_class) on the written train split
    class_weights: dict[str, float] = Field(default_factory=dict)
    #: the same text (or inputs) in several splits; see split.leakage
    leakage: dict[str, Any] = Field(default_factory=dict)
    #: findings against the reference profile: {rule, column, action, message, value, ...}
    anomalies: list[dict[str, Any]] = Field(default_factory=list)
    #: what the anomaly checks compared with (a URI, or why nothing)
    reference_profile: str = ""
    #: event-log sources: source -> counts of the impression/click join
    events: dict[str, dict[str, int]] = Field(default_factory=dict)
    #: input -> blank rows, rate, quarantined or imputed, suggestion (mlsd_ray.data.missing)
    missing_by_column: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: path of the Markdown data report (None when data.report is off)
    report: str | None = None


# Running ---------------------------------------------------------------------------------
@contextmanager
def _step(name: str, seconds: dict[str, float]) -> Iterator[None]:
    log.info("etl: %s ...", name)
    start = time.perf_counter()
    with progress.task(f"etl: {name}"):  # a spinner while the step runs, when someone watches
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


def _prepare(uri: str) -> tuple[pafs.FileSystem, str]:
    """Empty the folder at ``uri`` (the previous run's output) and create it."""
    fs, path = storage.filesystem(uri)
    try:
        storage.delete_dir(uri)
        if not storage.is_remote(uri):  # on S3 the folder is its objects; every folder gets some
            fs.create_dir(path, recursive=True)
    except OSError as err:
        raise SourceError(
            f"Cannot write ETL output to {uri!r}.",
            str(err),
            "check data.output_uri, that its bucket exists and that you may write to it",
        ) from None
    return fs, path


def _per_block(verified: ray.data.Dataset, card: DesignCard, fn: Any, **kwargs: Any) -> list[Any]:
    """``fn(block, **kwargs)`` for every block of the materialized ``verified``, as one plain
    Ray task per block ref. Why not ``map_batches``: the blocks are already in the object
    store, and Ray Data's streaming executor cost 0.6-0.8 s more per pass on 2 cores (the
    write pass over 2M rows: 1.7-2.0 s against 1.0-1.4 s; issue 10)."""
    import ray

    shared = ray.put(kwargs)  # serialised once, not once per task
    task = ray.remote(_call).options(**card.stages.etl.ray_options())
    return list(ray.get([task.remote(ref, fn, shared) for ref in verified.to_arrow_refs()]))


def _call(block: pa.Table, fn: Any, kwargs: dict[str, Any]) -> Any:
    return fn(block, **kwargs)


def _profile_block(
    block: pa.Table, kinds: dict[str, str], drop: frozenset[tuple[str, int]]
) -> dict[str, Any]:
    """The partial column profile of a block's verified rows (duplicates of a unique key out)."""
    return prof.block_state(blk.drop_rows(blk.take_good(block), drop), kinds)


def _write_all(
    verified: ray.data.Dataset,
    card: DesignCard,
    targets: dict[str, tuple[pafs.FileSystem, str]],
    schemas: dict[str, pa.Schema],
    layout: lay.Layout | None,
    **plans: Any,
) -> dict[str, int]:
    """One pass writes every split and the quarantine (``blocks.write_block``); then an empty
    file where a folder got no rows (so readers still see its columns) and each folder's
    ``_common_metadata``. Rows written per folder."""
    per_block = _per_block(
        verified,
        card,
        blk.write_block,
        schema=schemas["train"],
        quarantine_schema=schemas[QUARANTINE],
        targets=targets,
        layout=layout,
        **plans,
    )
    empty = pd.DataFrame({"folder": [], "rows": []})
    counts = pa.concat_tables(per_block).to_pandas() if per_block else empty
    written = {k: int(counts.loc[counts["folder"] == k, "rows"].sum()) for k in targets}
    for folder, (fs, path) in targets.items():
        mine = layout if folder != QUARANTINE else None
        schema = lay.written_schema(schemas[folder], mine)
        if not written[folder]:
            keys = mine.keys if mine else []
            files = pa.schema([f for f in schema if f.name not in keys])
            pq.write_table(files.empty_table(), f"{path}/empty.parquet", filesystem=fs)
        lay.write_metadata(fs, path, schema, mine)
    return written


def _class_name(card: DesignCard, index: int) -> str:
    classes = card.framing.label.classes
    return classes[index] if 0 <= index < len(classes) else str(index)


def _read(
    card: DesignCard, workdir: Workdir
) -> tuple[ray.data.Dataset, list[str], list[dict[str, Any]]]:
    """All sources as one dataset, the union of their columns (for the quarantine), and what
    the manifest records about each source."""
    parts, infos = [], []
    for source in card.data.sources:
        ds, info = read_source_stats(source, card, _staging(workdir))
        parts.append(ds)
        infos.append(info)
    columns = [c for p in parts for c in p.schema().names if c not in META]
    return _union(parts), list(dict.fromkeys(columns)), infos


def _staging(workdir: Workdir) -> str:
    # Beside the artifacts (the bucket for an s3:// workdir), read by every node
    return storage.join(workdir.uri, "staging")


def _union(parts: list[ray.data.Dataset]) -> ray.data.Dataset:
    return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]


def _fusable(card: DesignCard) -> bool:
    """Only files (no database read, no event join): each file's task then reads and verifies
    it in one go. Two steps cost one more task and object-store copy per file, which on 2 cores
    took a third of the ETL's time (issue 10)."""
    return all(not s.is_database and s.events is None for s in card.data.sources)


def _read_verified(
    card: DesignCard, workdir: Workdir, check: Any
) -> tuple[ray.data.Dataset, list[str], list[dict[str, Any]], int]:
    """``_read`` and the verify pass fused: (verified blocks, columns, infos, rows in)."""
    plans = [plan_files(s, card, _staging(workdir)) for s in card.data.sources]
    columns = list(dict.fromkeys(c for p in plans for c in p.columns if c not in META))
    parts, infos = [], []
    for plan in plans:
        ds, info = read_files(plan, card, then=partial(check, columns=columns))
        parts.append(ds)
        infos.append(info)
    rows_in = sum(f["rows"] for info in infos for f in info["files"])
    return _union(parts), columns, infos, rows_in


def _count_reasons(reasons: list[str]) -> tuple[dict[str, int], dict[str, str]]:
    """(rows per reason category, first message per category)."""
    counts: dict[str, int] = {}
    examples: dict[str, str] = {}
    for reason in reasons:
        category = reason_category(reason)
        counts[category] = counts.get(category, 0) + 1
        examples.setdefault(category, reason)
    return counts, examples


def _meta(verified: ray.data.Dataset, card: DesignCard) -> tuple[pd.DataFrame, list[str]]:
    """(keys of the verified rows, reasons of the quarantined ones) from ``blocks.take_meta``
    of every block. Arrow until the end: the 64-bit hashes of the good rows must not pass
    through pandas' float NaN for the bad rows' nulls."""
    tables = [t for t in _per_block(verified, card, blk.take_meta) if t.num_columns]
    if not tables:
        return pd.DataFrame(), []
    table = pa.concat_tables(tables)
    good = table.filter(pc.equal(table[PART], "good")).drop_columns([PART, REASON])
    bad = table.filter(pc.equal(table[PART], "bad"))[REASON].to_pylist()
    frame = good.drop_columns([SOURCE]).to_pandas()
    frame.insert(1, SOURCE, _categorical(good[SOURCE]))
    return frame, bad


def _categorical(column: pa.ChunkedArray) -> pd.Categorical:
    """Source URIs (a few distinct values over millions of rows) as a pandas categorical whose
    categories are sorted, so that sorting by it is sorting by the text."""
    if pa.types.is_dictionary(column.type):  # the blocks' own dictionaries differ: decode
        column = column.cast(pa.string())
    names = sorted(v for v in pc.unique(column).to_pylist() if v is not None)
    codes = pc.fill_null(pc.index_in(column, value_set=pa.array(names, pa.string())), -1)
    return pd.Categorical.from_codes(
        np.asarray(codes.to_numpy(), dtype=np.int64), categories=names, ordered=True
    )


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


def _label_counts(
    card: DesignCard, labels: np.ndarray, assigned: np.ndarray, copies: np.ndarray
) -> dict[str, Any]:
    if card.framing.category == "regression":
        return {s: {} for s in SPLITS}
    out: dict[str, Any] = {}
    classes = labels.astype(np.int64)
    for s in SPLITS:
        mine = assigned == s
        counts = np.bincount(classes[mine], weights=copies[mine], minlength=1)
        out[s] = {_class_name(card, k): int(v) for k, v in enumerate(counts.tolist()) if v}
    return out


# The driver's decisions ------------------------------------------------------------------
def _duplicates(keys: pd.DataFrame, card: DesignCard) -> dict[tuple[str, int], str]:
    """(source, row) -> reason, for rows whose unique key appeared earlier in lineage order."""
    if not card.data.unique_key or keys.empty:
        return {}
    ordered = keys.sort_values([SOURCE, ROW], kind="stable")
    repeated = ordered.duplicated(DUP, keep="first")
    if not repeated.any():
        return {}
    first = ordered[~repeated].set_index(DUP)
    out = {}
    for dup, src, row in zip(
        ordered.loc[repeated, DUP],
        ordered.loc[repeated, SOURCE],
        ordered.loc[repeated, ROW],
        strict=True,
    ):
        orig = first.loc[dup]
        out[(str(src), int(row))] = (
            f"duplicate key {card.data.unique_key}: same as {orig[SOURCE]} row {int(orig[ROW])}"
        )
    return out


def _split_sums(
    keys: pd.DataFrame, assigned: np.ndarray, copies: np.ndarray
) -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
    counts, sums = {}, {}
    h1, h2 = keys[H1].to_numpy(np.uint64), keys[H2].to_numpy(np.uint64)
    weights = copies.astype(np.uint64)
    with np.errstate(over="ignore"):
        for s in SPLITS:
            mine = assigned == s
            counts[s] = int(copies[mine].sum())
            sums[s] = (
                int(np.sum(h1[mine] * weights[mine], dtype=np.uint64)),
                int(np.sum(h2[mine] * weights[mine], dtype=np.uint64)),
            )
    return counts, sums


def _reference(card: DesignCard, output: str) -> tuple[dict[str, Any] | None, str]:
    """(reference profile or None, what it is)."""
    where = card.data.checks.reference
    if where == "none":
        return None, "none (data.checks.reference: none)"
    uri = storage.join(output, PROFILE) if where == "previous" else where
    if not storage.exists(uri):
        if where == "previous":
            return None, f"none yet (no previous profile at {uri})"
        raise DataError(
            f"Reference profile {uri!r} does not exist.",
            fix="point data.checks.reference at a profile.json an ETL run wrote, or use "
            "`previous` / `none`",
        )
    return dict(storage.read_json(uri)), uri


def _check_split_card(card: DesignCard) -> None:
    split = card.data.split
    fields = {f.name: f for f in card.framing.inputs}
    if split.strategy == "time" and split.time_column in fields:
        kind = fields[split.time_column].type
        if kind not in ("int", "float"):
            from mlsd_ray.errors import CardError

            raise CardError(
                f"data.split.time_column: {split.time_column!r} is an input of type {kind}; a "
                "time input must be int or float (seconds), or not an input at all.",
                fix="drop it from framing.inputs (it is then parsed as a time) or change its type",
            )


def _fail_on(findings: list[dict[str, Any]], what: str, fix: str) -> None:
    failing = [f["message"] for f in findings if f.get("action") == "fail"]
    if failing:
        raise DataError(f"{what}: " + "; ".join(failing), fix=fix)


def run_etl(card: DesignCard, workdir: Workdir) -> EtlSummary:
    """Read, verify, split, profile and write the card's data; see the module docstring."""
    from mlsd_ray.runtime import ensure_ray

    check_rules(card)
    _check_split_card(card)
    ensure_ray()
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    output = workdir.data_uri(card)
    _check_output(output)
    split = card.data.split
    schema = good_schema(card)
    layout = lay.plan_layout(card.data.partition_by, schema)

    stratified = split.stratify and split.strategy == "random"
    stratified = stratified and card.framing.category != "regression"
    column = split.time_column if split.strategy == "time" else split.group_column
    proto = SplitPlan(split.seed, stratified, {}, split.strategy, column)
    check = partial(blk.verify_block, card=card, proto=proto)
    if _fusable(card):
        with _step("read_verify", seconds):
            verified, columns, infos, rows_in = _read_verified(card, workdir, check)
    else:
        with _step("read", seconds):
            raw, columns, infos = _read(card, workdir)
            rows_in = raw.count()
        with _step("verify", seconds):
            # whole blocks (a file, or a database shard) per call: a few large Arrow batches
            # rather than Ray Data's default of 1,024-row pandas batches
            verified = raw.map_batches(
                partial(check, columns=columns),
                batch_format="pyarrow",
                batch_size=None,
                **card.stages.etl.ray_options(),
            ).materialize()
            del raw

    with _step("keys", seconds):
        keys_frame, bad_reasons = _meta(verified, card)
        dups = _duplicates(keys_frame, card)
        if dups:
            lineage = list(zip(keys_frame[SOURCE], keys_frame[ROW], strict=True))
            keys_frame = keys_frame[[i not in dups for i in lineage]].reset_index(drop=True)
            bad_reasons += list(dups.values())
        rows_ok, rows_quarantined = len(keys_frame), len(bad_reasons)
        if rows_in != rows_ok + rows_quarantined:
            raise AssertionError(f"rows_in {rows_in} != {rows_ok} ok + {rows_quarantined} bad")
        by_reason, examples = _count_reasons(bad_reasons)
        log.info("etl: %d rows in, %d ok, quarantined %s", rows_in, rows_ok, by_reason)

    with _step("split", seconds):
        labels = keys_frame[LABEL].to_numpy() if rows_ok else np.array([])
        _check_usable(card, labels, rows_in, examples)
        primary, secondary = keys_frame[PRIMARY].to_numpy(), keys_frame[SECONDARY].to_numpy()
        plan = plan_split(labels, primary, split, stratified, secondary, split.strategy, column)
        assigned = plan.assign(labels, primary, secondary)
        rows_per_split = {s: int((assigned == s).sum()) for s in SPLITS}
        leaks: dict[str, Any] = {}
        if split.leakage != "off":
            what = card.framing.text_input or "inputs"
            leaks = leakage(keys_frame, assigned, what)
            leaks["action"] = split.leakage
            if leaks["rows"]:
                pairs = ", ".join(f"{k} {v}" for k, v in leaks.get("pairs", {}).items() if v)
                log.warning(
                    "etl: %s %s values are in more than one split (%s rows: %s); "
                    "data.split.leakage is %s, examples in the data report",
                    leaks.get("values_in_several_splits"),
                    leaks.get("compared"),
                    leaks["rows"],
                    pairs,
                    split.leakage,
                )
        balance = BalancePlan(split.seed)
        train = assigned == "train"
        copies = np.ones(len(labels), dtype=np.int64)
        if card.data.balance != "none" and card.framing.category != "regression":
            sources = keys_frame[SOURCE].tolist()
            rows = keys_frame[ROW].tolist()
            balance = plan_balance(
                card.data.balance,
                labels[train],
                [s for s, t in zip(sources, train, strict=True) if t],
                [r for r, t in zip(rows, train, strict=True) if t],
                split.seed,
            )
            copies[train] = balance.copies(
                labels[train],
                [s for s, t in zip(sources, train, strict=True) if t],
                [r for r, t in zip(rows, train, strict=True) if t],
            )
        counts, sums = _split_sums(keys_frame, assigned, copies)
        digest = mf.content_hash(schema, counts, sums)
        # Each version in its own folder, named by the content hash: a later run never
        # deletes what a registered model was trained on (``versions``).
        version_dir = dv.version_uri(output, mf.version_of(digest))
        outputs = {s: storage.join(version_dir, s) for s in (*SPLITS, QUARANTINE)}
        weights: dict[str, float] = {}
        if card.framing.category != "regression":
            written_train = np.repeat(labels[train], copies[train])
            weights = {_class_name(card, k): w for k, w in class_weights(written_train).items()}

    with _step("profile", seconds):
        kinds = prof.column_kinds(card)
        parts = _per_block(verified, card, _profile_block, kinds=kinds, drop=frozenset(dups))
        states = prof.merge_blocks(parts, kinds)
        profile = prof.finalize(states, rows_ok)
        reference, reference_what = _reference(card, output)
        findings = prof.anomalies(states, reference, card.data.checks) if reference else []
        for f in findings:
            log.warning("etl: anomaly (%s): %s", f["action"], f["message"])

    summary = EtlSummary(
        card=card.name,
        sources=[describe(s) for s in card.data.sources],
        rows_in=rows_in,
        rows_ok=rows_ok,
        rows_quarantined=rows_quarantined,
        quarantine_by_reason=by_reason,
        quarantine_examples=examples,
        rows_per_split=rows_per_split,
        label_counts=_label_counts(card, labels, assigned, copies),
        stratified=stratified,
        seed=split.seed,
        outputs=outputs,
        seconds=seconds,
        dataset_version=mf.version_of(digest),
        content_hash=digest,
        manifest=storage.join(output, mf.MANIFEST),
        profile=storage.join(version_dir, PROFILE),
        split_strategy=split.strategy,
        rows_written=counts,
        balance=card.data.balance if balance.per_class else "none",
        class_weights=weights,
        leakage=leaks,
        anomalies=findings,
        reference_profile=reference_what,
        events={i["uri"]: i["events"] for i in infos if "events" in i},
        missing_by_column=missing_by_column(card, bad_reasons, profile, rows_in),
    )
    try:
        _fail_on(
            findings,
            "Data anomalies against the reference profile",
            "inspect the data report; if the change is expected, set data.checks.reference: "
            "none for one run (or relax the rule in data.checks)",
        )
        if split.leakage == "fail" and leaks.get("rows"):
            raise DataError(
                f"Leakage: {leaks['values_in_several_splits']} {leaks['compared']} values are "
                f"in more than one split ({leaks['rows']} rows; {leaks['pairs']}).",
                f"examples: {leaks['examples']}",
                "deduplicate the sources (data.unique_key), split by group (data.split.strategy:"
                " group), or set data.split.leakage: warn",
            )
    except DataError:
        if card.data.report:
            summary.report = str(_report(card, workdir, summary, profile))
        raise

    with _step("write", seconds):
        targets = {k: _prepare(uri) for k, uri in outputs.items()}
        schemas = {s: schema for s in SPLITS} | {QUARANTINE: quarantine_schema(columns)}
        written = _write_all(
            verified, card, targets, schemas, layout, plan=plan, balance=balance, duplicates=dups
        )
        expected = {**counts, QUARANTINE: rows_quarantined}
        if written != expected:  # the guarantee: every row is in a split or the quarantine
            raise AssertionError(f"rows written {written} != planned {expected}")
        storage.write_text(summary.profile, prof.dumps(profile))
        manifest = {
            "dataset_version": summary.dataset_version,
            "content_hash": digest,
            "created_at": mf.now(),
            "code_version": mf.code_version(),
            "card": card.name,
            "data_card": _data_card(card),
            "sources": infos,
            "rows": {
                "in": rows_in,
                "ok": rows_ok,
                "quarantined": rows_quarantined,
                "per_split": rows_per_split,
                "written": counts,
            },
            "quarantine_by_reason": by_reason,
            "splits": {
                s: {"uri": outputs[s], "rows": counts[s], "hash": h}
                for s, h in mf.split_digest(counts, sums).items()
            },
            "quarantine": outputs[QUARANTINE],
            "schema": {
                "splits": mf.schema_json(lay.written_schema(schema, layout)),
                "quarantine": mf.schema_json(quarantine_schema(columns)),
            },
            "split": {"strategy": split.strategy, "stratified": stratified, "seed": split.seed},
            "layout": {
                "format": "parquet",
                "partitioning": "hive" if layout else None,
                "partition_by": list(card.data.partition_by),
                **(layout.to_json() if layout else {}),
            },
            "label_counts": summary.label_counts,
            "class_weights": weights,
            "balance": summary.balance,
            "leakage": leaks,
            "anomalies": findings,
            "reference_profile": reference_what,
            "profile": summary.profile,
        }
        mf.write_manifest(version_dir, manifest)
        # Copies at the top for readers of the current version, then the pointer, last.
        storage.write_text(storage.join(output, PROFILE), prof.dumps(profile))
        mf.write_manifest(output, manifest)
        dv.write_current(output, summary.dataset_version)
    seconds["total"] = round(time.perf_counter() - start, 3)
    if card.data.report:
        with _step("report", seconds):
            summary.report = str(_report(card, workdir, summary, profile))
    summary.seconds = seconds
    storage.write_json(str(workdir.summary_path("etl")), summary.model_dump())
    log.info(
        "etl: wrote %s; dataset %s; splits %s",
        workdir.summary_path("etl"),
        summary.dataset_version,
        rows_per_split,
    )
    return summary


def _data_card(card: DesignCard) -> dict[str, Any]:
    """The card's data section as the manifest records it (database passwords masked)."""
    data = card.data.model_dump(mode="json")
    for i, source in enumerate(card.data.sources):
        if source.is_database:
            from mlsd_ray.data.database import redact

            data["sources"][i]["uri"] = redact(source.uri)
    return data


def _report(
    card: DesignCard, workdir: Workdir, summary: EtlSummary, profile: dict[str, Any]
) -> Any:
    from mlsd_ray.data.report import write_report

    return write_report(card, summary.model_dump(), profile, workdir.reports / "data")


def dataset_version(card: DesignCard, workdir: Workdir) -> str | None:
    """The version of the data set ETL last wrote for this card (None before the first run);
    a trainer records it with the model it trains."""
    manifest = mf.read_manifest(workdir.data_uri(card))
    return None if manifest is None else str(manifest["dataset_version"])


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
    table = lay.read_table(uri)  # Hive partition columns come back with their types
    frame = table.to_pandas(ignore_metadata=True)  # plain dtypes, whatever wrote the files
    if {SOURCE, ROW} <= set(frame.columns):
        frame = frame.sort_values([SOURCE, ROW], kind="stable")
    return frame.reset_index(drop=True)
