"""Natural labels from application logs: impression and click events -> labelled rows.

A log source (``events:`` in the card's source) holds one event per row: a type (impression or
click), a time, the key that ties a click to what was shown (``[impression_id]``, or
``[user_id, item_id]``), and for impressions the features. The join, on Ray Data:

1. map, one Ray task per block: each event is checked (known type, key present, time
   parseable); a bad event keeps flowing as a row with a ``_reason`` (ETL quarantines it), good
   ones are split by a hash bucket of their key;
2. reduce, one Ray task per bucket: every click is credited to the latest impression of its
   key at or before it, if that impression is at most ``window_s`` older (``pandas.merge_asof``,
   backward, with tolerance). Ties in time are broken by lineage;
3. impressions come out with the card's label column set to ``"1"`` (credited at least one
   click) or ``"0"``; clicks are consumed; ``_credited`` counts the clicks per impression.

Accounting: ``events_in = impressions + clicks + quarantined``;
``clicks = clicks_credited + clicks_orphan`` (no impression of that key within the window).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlsd_ray.data.verify import META, RAW, REASON, ROW, SOURCE, parse_times
from mlsd_ray.errors import SourceError
from mlsd_ray.spec import DesignCard, Source

if TYPE_CHECKING:
    import ray.data

log = logging.getLogger(__name__)

BUCKET, KIND, TIME_NS, CREDITED = "_bucket", "_kind", "_time_ns", "_credited"
BUCKETS = 8


def _schema(columns: list[str], extra: bool) -> pa.Schema:
    fields = [pa.field(c, pa.string()) for c in columns]
    fields += [pa.field(SOURCE, pa.string()), pa.field(ROW, pa.int64())]
    fields += [pa.field(REASON, pa.string()), pa.field(RAW, pa.string())]
    if extra:
        fields += [pa.field(BUCKET, pa.int64()), pa.field(KIND, pa.string())]
        fields += [pa.field(TIME_NS, pa.int64())]
    else:
        fields += [pa.field(CREDITED, pa.int64())]
    return pa.schema(fields)


def _strings(column: pd.Series) -> list[str | None]:
    return [None if _null(v) else str(v) for v in column.tolist()]


def _null(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))


def classify(batch: pd.DataFrame, source: Source, columns: list[str]) -> pa.Table:
    """Step 1: reasons for bad events; key bucket, kind and time (ns) for good ones."""
    ev = source.events
    assert ev is not None
    reasons = _strings(batch[REASON])
    kinds = _strings(batch[ev.type_column])
    time_cells = _strings(batch[ev.time_column])
    times, time_ok = parse_times(time_cells)
    keys = {k: _strings(batch[k]) for k in ev.key}
    out_kind: list[str | None] = [None] * len(batch)
    for i, kind in enumerate(kinds):
        if reasons[i] is not None:
            continue
        if kind not in (ev.impression, ev.click):
            shown = "missing" if kind is None else repr(kind[:40])
            reasons[i] = (
                f"event: type {shown} in '{ev.type_column}' is neither "
                f"{ev.impression!r} nor {ev.click!r}"
            )
            continue
        missing = [k for k in ev.key if not (keys[k][i] or "").strip()]
        if missing:
            reasons[i] = f"event: missing key {missing}"
        elif not time_ok[i]:
            cell = time_cells[i]
            shown = "missing" if cell is None else repr(cell[:40])
            reasons[i] = f"event: cannot parse time {shown} in '{ev.time_column}'"
        else:
            out_kind[i] = kind
    key_text = ["\x1f".join(v or "" for v in parts) for parts in zip(*keys.values(), strict=True)]
    hashed = pd.util.hash_array(np.array(key_text, dtype=object), categorize=False)
    return pa.table(
        {
            **{c: pa.array(_strings(batch[c]), pa.string()) for c in columns},
            SOURCE: pa.array(_strings(batch[SOURCE]), pa.string()),
            ROW: pa.array(batch[ROW].tolist(), pa.int64()),
            REASON: pa.array(reasons, pa.string()),
            RAW: pa.array(_strings(batch[RAW]), pa.string()),
            BUCKET: pa.array((hashed % np.uint64(BUCKETS)).astype(np.int64), pa.int64()),
            KIND: pa.array(out_kind, pa.string()),
            TIME_NS: pa.array(np.where(time_ok, times, 0), pa.int64()),
        },
        schema=_schema(columns, extra=True),
    )


def attribute(group: pd.DataFrame, source: Source, columns: list[str], label: str) -> pa.Table:
    """Step 2 for one bucket: impressions with their label and credited clicks."""
    ev = source.events
    assert ev is not None
    imps = group[group[KIND] == ev.impression].copy()
    clicks = group[group[KIND] == ev.click].copy()
    imps["_imp"] = np.arange(len(imps))
    credited = np.zeros(len(imps), dtype=np.int64)
    if len(imps) and len(clicks):
        keys = [f"_k{i}" for i in range(len(ev.key))]
        for k, c in zip(keys, ev.key, strict=True):
            imps[k] = imps[c].astype(str)
            clicks[k] = clicks[c].astype(str)
        order = [TIME_NS, SOURCE, ROW]
        right = imps.sort_values(order, kind="stable")[[TIME_NS, *keys, "_imp"]]
        left = clicks.sort_values(order, kind="stable")[[TIME_NS, *keys]]
        matched = pd.merge_asof(
            left,
            right,
            on=TIME_NS,
            by=keys,
            direction="backward",
            allow_exact_matches=True,
            tolerance=round(ev.window_s * 1e9),
        )
        hits = matched["_imp"].dropna().astype(np.int64).to_numpy()
        np.add.at(credited, hits, 1)
    out: dict[str, Any] = {c: pa.array(_strings(imps[c]), pa.string()) for c in columns}
    out[label] = pa.array(np.where(credited > 0, "1", "0").tolist(), pa.string())
    out[SOURCE] = pa.array(_strings(imps[SOURCE]), pa.string())
    out[ROW] = pa.array(imps[ROW].astype(np.int64).tolist(), pa.int64())
    out[REASON] = pa.nulls(len(imps), pa.string())
    out[RAW] = pa.nulls(len(imps), pa.string())
    out[CREDITED] = pa.array(credited, pa.int64())
    return pa.table(out, schema=_schema([*columns, label], extra=False))


def _bad(batch: pa.Table, columns: list[str], label: str) -> pa.Table:
    """Rejected events, in the joined schema (label null)."""
    n = batch.num_rows
    data = {c: batch[c] for c in columns}
    data[label] = pa.nulls(n, pa.string())
    for c in (SOURCE, ROW, REASON, RAW):
        data[c] = batch[c]
    data[CREDITED] = pa.array(np.zeros(n, np.int64), pa.int64())
    return pa.table(data, schema=_schema([*columns, label], extra=False)).drop_columns([CREDITED])


def partition(block: pa.Table, source: Source, columns: list[str], label: str) -> tuple[Any, ...]:
    """Map task: (rejected events, then the good events of each bucket, then counts)."""
    tagged = classify(block.to_pandas(), source, columns)
    valid = pc.is_valid(tagged[KIND])
    out: list[Any] = [_bad(tagged.filter(pc.invert(valid)), columns, label)]
    good = tagged.filter(valid)
    buckets = good[BUCKET].to_numpy()
    out += [good.filter(pa.array(buckets == b)) for b in range(BUCKETS)]
    kinds = good[KIND].to_pylist()
    ev = source.events
    assert ev is not None
    out.append({"impressions": kinds.count(ev.impression), "clicks": kinds.count(ev.click)})
    return tuple(out)


def reduce_bucket(
    source: Source, columns: list[str], label: str, *pieces: pa.Table
) -> tuple[pa.Table, dict[str, int]]:
    """Reduce task: the impressions of one bucket, labelled; (table, counts)."""
    group = pa.concat_tables(pieces).to_pandas()
    joined = attribute(group, source, columns, label)
    credited = np.asarray(joined[CREDITED].to_numpy(zero_copy_only=False), dtype=np.int64)
    counts = {"credited": int(credited.sum()), "positives": int((credited > 0).sum())}
    return joined.drop_columns([CREDITED]), counts


def join_events(
    raw: ray.data.Dataset, source: Source, card: DesignCard
) -> tuple[ray.data.Dataset, dict[str, int]]:
    """(impressions labelled + rejected events, in the raw schema; counts).

    A hash-partitioned map/reduce on Ray tasks over the dataset's blocks: one map task per
    block (classify, split by key bucket), one reduce task per bucket (``attribute``).
    """
    import ray
    import ray.data

    ev = source.events
    assert ev is not None
    label = card.framing.label.column
    columns = [c for c in raw.schema().names if c not in META]
    if label in columns:
        raise SourceError(
            f"Data source {source.uri!r}: the event log already has a column {label!r}, "
            "which the impression/click join fills.",
            fix=f"drop or rename {label!r} in the log (data.sources[].rename), or remove "
            "`events` if the log is already labelled",
        )
    events_in = raw.count()
    mapper = ray.remote(partition).options(num_returns=BUCKETS + 2)
    maps: list[Any] = [mapper.remote(b, source, columns, label) for b in raw.to_arrow_refs()]
    reducer = ray.remote(reduce_bucket).options(num_returns=2)
    reduced: list[Any] = [
        reducer.remote(source, columns, label, *[m[1 + b] for m in maps]) for b in range(BUCKETS)
    ]
    kinds = ray.get([m[-1] for m in maps])
    tallies = ray.get([r[1] for r in reduced])
    impressions = sum(k["impressions"] for k in kinds)
    clicks = sum(k["clicks"] for k in kinds)
    credited = sum(t["credited"] for t in tallies)
    stats = {
        "events_in": events_in,
        "impressions": impressions,
        "clicks": clicks,
        "clicks_credited": credited,
        "clicks_orphan": clicks - credited,
        "positives": sum(t["positives"] for t in tallies),
        "quarantined": events_in - impressions - clicks,
    }
    log.info("events %s: %s", source.uri, stats)
    refs: list[Any] = [m[0] for m in maps] + [r[0] for r in reduced]
    return ray.data.from_arrow_refs(refs), stats
