"""Column statistics on Ray Data, mergeable across blocks, and anomaly checks against a reference.

``dataset_states`` runs one ``map_batches`` pass over the verified rows: every block gives a
partial state per column, the states merge pairwise in any order (``merge_states`` is
associative and commutative), and ``finalize`` turns the merged state into the profile. The
states are exact while a column has at most ``MAX_EXACT`` distinct values (a value -> count
table; ``MAX_TEXTS`` for texts), so count, nulls, distinct, min/max/mean/std, quantiles (linear
interpolation, as pandas), top categories and text lengths then equal pandas on the same data.
Beyond that a numeric state keeps a bottom-k sample of rows (by a hash of their lineage, so the
same rows are picked whatever the block layout) for quantiles and histograms, a category state
its most frequent values, and both a k-minimum-values sketch of value hashes for the distinct
count; ``exact`` says which applies.

Kinds: ``numeric`` (int, float inputs; regression labels), ``category`` (category, string,
bool inputs; group columns; class labels), ``text`` (text inputs: values plus their length as a
numeric sub-profile), ``time`` (the split's time column, as seconds since the epoch).

``anomalies`` compares a fresh state with a reference profile (usually the previous run's):
new categories, values outside the reference range, null-rate jumps, and PSI over the
reference's deciles (numeric) or categories; each rule warns or fails as the card says.
"""

from __future__ import annotations

import json
import math
import pickle
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlsd_ray.data.verify import LABEL, ROW, SOURCE, carried_columns
from mlsd_ray.spec import Data, DesignCard

if TYPE_CHECKING:
    import ray.data

MAX_EXACT = 10_000  # distinct values kept exactly per column
MAX_TEXTS = 2_000  # distinct texts kept exactly (texts are long)
SAMPLE = 4_096  # bottom-k rows kept for quantiles when a column is not exact
KMV = 2_048  # smallest value hashes kept for the distinct estimate
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
TOP = 10
BINS = 20
MAX_SHARES = 1_000  # categories kept with their share for PSI / new-category checks
_HASH_KEY = "mlsd-profile-001"  # 16 characters, as pandas wants
_U64 = float(2**64)

State = dict[str, Any]


# Kinds -----------------------------------------------------------------------------------
def column_kinds(card: DesignCard) -> dict[str, str]:
    """Column of the verified rows -> profile kind."""
    # images (base64 text) are profiled by length, a proxy for their size in bytes
    kinds = {"int": "numeric", "float": "numeric", "text": "text", "image": "text"}
    out = {f.name: kinds.get(f.type, "category") for f in card.framing.inputs}
    for name, kind in carried_columns(card).items():
        out[name] = "time" if kind == "time" else "category"
    out[LABEL] = "numeric" if card.framing.category == "regression" else "category"
    return out


# Per-block states --------------------------------------------------------------------------
def _row_hashes(table: pa.Table) -> np.ndarray:
    """A hash per row from its lineage (block-layout free); position when there is none."""
    if SOURCE in table.column_names and ROW in table.column_names:
        codes, uniques = pd.factorize(table[SOURCE].to_numpy(zero_copy_only=False))
        per_source = pd.util.hash_array(np.asarray(uniques, dtype=object), hash_key=_HASH_KEY)
        rows = np.asarray(table[ROW].to_numpy(zero_copy_only=False), dtype=np.int64)
        with np.errstate(over="ignore"):
            mixed = pd.util.hash_array(rows, categorize=False) * np.uint64(31) + per_source[codes]
        return pd.util.hash_array(mixed, categorize=False)
    return pd.util.hash_array(np.arange(table.num_rows), hash_key=_HASH_KEY)


def _bottom(hashes: np.ndarray, values: np.ndarray, k: int) -> list[tuple[int, Any]]:
    if len(hashes) > k:
        keep = np.argpartition(hashes, k - 1)[:k]
        hashes, values = hashes[keep], values[keep]
    order = np.argsort(hashes, kind="stable")
    # .tolist() gives the Python ints and floats that .item() would, without a call per row
    return list(zip(hashes[order].tolist(), values[order].tolist(), strict=True))


def _kmv(values: np.ndarray) -> list[int]:
    if not len(values):
        return []
    hashes = np.unique(pd.util.hash_array(values, hash_key=_HASH_KEY, categorize=False))
    return [int(h) for h in hashes[:KMV]]


def numeric_state(values: np.ndarray, nulls: int, row_hashes: np.ndarray) -> State:
    """State of a float64 array without NaN (``nulls`` counted apart)."""
    n = len(values)
    uniq, counts = np.unique(values, return_counts=True)
    mean = float(values.mean()) if n else 0.0
    return {
        "kind": "numeric",
        "count": n,
        "nulls": nulls,
        "sum": float(values.sum()),
        "mean": mean,
        "m2": float(((values - mean) ** 2).sum()) if n else 0.0,
        "min": float(values.min()) if n else None,
        "max": float(values.max()) if n else None,
        "values": dict(zip(uniq.tolist(), counts.tolist(), strict=True))
        if len(uniq) <= MAX_EXACT
        else None,
        "kmv": _kmv(uniq),
        "sample": _bottom(row_hashes, values, SAMPLE),
    }


def category_state(
    values: np.ndarray, nulls: int, cap: int, counted: dict[str, int] | None = None
) -> State:
    """State of an object array of strings without nulls (``counted``: its value counts in
    order of first appearance, when the caller has them already)."""
    if counted is None:
        series = pd.Series(values, dtype=object).map(str).value_counts(sort=False)
        counted = dict(zip([str(u) for u in series.index], series.tolist(), strict=True))
    uniq = list(counted)
    table = {u: int(c) for u, c in counted.items()}
    exact = len(table) <= cap
    top = dict(Counter(table).most_common(MAX_SHARES)) if not exact else None
    return {
        "kind": "category",
        "count": sum(table.values()),
        "nulls": nulls,
        "values": table if exact else None,
        "top": top,
        "kmv": _kmv(np.asarray(uniq, dtype=object)),
    }


def _column_state(kind: str, column: pa.ChunkedArray, row_hashes: np.ndarray) -> State:
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    nulls = int((~valid).sum())
    hashes = row_hashes[valid]
    if kind in ("numeric", "time"):
        if pa.types.is_timestamp(column.type):
            raw = column.cast(pa.int64()).to_numpy(zero_copy_only=False)[valid]
            unit = {"s": 1, "ms": 1e3, "us": 1e6, "ns": 1e9}[column.type.unit]
            values = raw.astype(np.float64) / unit
        else:
            values = column.to_numpy(zero_copy_only=False)[valid].astype(np.float64)
        nan = np.isnan(values)
        state = numeric_state(values[~nan], nulls + int(nan.sum()), hashes[~nan])
        state["kind"] = kind
        return state
    if kind == "category" and (
        pa.types.is_string(column.type) or pa.types.is_integer(column.type)
    ):  # counted by Arrow: no Python object per row
        counts = pc.value_counts(column.drop_null())
        keys = [str(k) for k in counts.field("values").to_pylist()]
        counted = dict(zip(keys, counts.field("counts").to_pylist(), strict=True))
        return category_state(np.array([], dtype=object), nulls, MAX_EXACT, counted)
    if pa.types.is_boolean(column.type):
        values = np.where(column.to_numpy(zero_copy_only=False)[valid], "true", "false")
    else:
        values = np.asarray(column.to_numpy(zero_copy_only=False)[valid], dtype=object)
    if kind == "text":
        state = category_state(values, nulls, MAX_TEXTS)
        lengths = np.fromiter((len(str(v).strip()) for v in values), np.float64, len(values))
        state["kind"] = "text"
        state["length"] = numeric_state(lengths, 0, hashes)
        return state
    return category_state(values, nulls, MAX_EXACT)


def block_state(table: pa.Table, kinds: dict[str, str]) -> dict[str, State]:
    """Partial profile of one block: column -> state."""
    hashes = _row_hashes(table)
    return {name: _column_state(kind, table[name], hashes) for name, kind in kinds.items()}


# Merging -----------------------------------------------------------------------------------
def _merge_counts(a: dict[Any, int] | None, b: dict[Any, int] | None, cap: int) -> Any:
    if a is None or b is None:
        return None
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out if len(out) <= cap else None


def _merge_sorted(a: list[Any], b: list[Any], k: int) -> list[Any]:
    return sorted(set(a) | set(b))[:k] if a and b else list(a or b)


def _merge_sample(a: list[tuple[int, Any]], b: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
    return sorted([*a, *b], key=lambda hv: hv[0])[:SAMPLE]


def merge_states(a: State, b: State) -> State:
    """Merge two states of one column (associative and commutative)."""
    if a["count"] + a["nulls"] == 0:
        return b
    if b["count"] + b["nulls"] == 0:
        return a
    out: State = {"kind": a["kind"], "count": a["count"] + b["count"]}
    out["nulls"] = a["nulls"] + b["nulls"]
    out["kmv"] = _merge_sorted(a["kmv"], b["kmv"], KMV)
    if a["kind"] in ("numeric", "time"):
        na, nb = a["count"], b["count"]
        n = na + nb
        delta = b["mean"] - a["mean"]
        out["sum"] = a["sum"] + b["sum"]
        out["mean"] = a["mean"] + delta * nb / n if n else 0.0
        out["m2"] = a["m2"] + b["m2"] + (delta * delta * na * nb / n if n else 0.0)
        mins = [x for x in (a["min"], b["min"]) if x is not None]
        maxs = [x for x in (a["max"], b["max"]) if x is not None]
        out["min"] = min(mins) if mins else None
        out["max"] = max(maxs) if maxs else None
        out["values"] = _merge_counts(a["values"], b["values"], MAX_EXACT)
        out["sample"] = _merge_sample(a["sample"], b["sample"])
        return out
    cap = MAX_TEXTS if a["kind"] == "text" else MAX_EXACT
    values = _merge_counts(a["values"], b["values"], cap)
    out["values"] = values
    if values is None:
        tops = Counter(a["values"] or a["top"] or {}) + Counter(b["values"] or b["top"] or {})
        out["top"] = dict(tops.most_common(MAX_SHARES))
    else:
        out["top"] = None
    if a["kind"] == "text":
        out["length"] = merge_states(a["length"], b["length"])
    return out


def merge_all(states: list[dict[str, State]]) -> dict[str, State]:
    out: dict[str, State] = {}
    for state in states:
        for name, s in state.items():
            out[name] = merge_states(out[name], s) if name in out else s
    return out


# Finalizing --------------------------------------------------------------------------------
def _lerp(a: float, b: float, t: float) -> float:
    """numpy's linear interpolation (what pandas' quantile uses), for equal results."""
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


def quantiles_from_counts(counts: dict[float, int], qs: tuple[float, ...]) -> list[float]:
    """Exact quantiles (linear interpolation) of the multiset value -> count."""
    values = np.array(sorted(counts), dtype=np.float64)
    cum = np.cumsum([counts[v] for v in sorted(counts)])
    n = int(cum[-1])

    def at(i: int) -> float:
        return float(values[np.searchsorted(cum, i, side="right")])

    out = []
    for q in qs:
        pos = q * (n - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, n - 1)
        out.append(_lerp(at(lo), at(hi), pos - lo))
    return out


def _distinct(state: State, exact: bool) -> int:
    if exact:
        return len(state["values"])
    kmv = state["kmv"]
    if len(kmv) < KMV:
        return len(kmv)
    return round((KMV - 1) / (kmv[-1] / _U64))


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _common(state: State, exact: bool) -> dict[str, Any]:
    """The statistics every column kind reports."""
    n, nulls = state["count"], state["nulls"]
    return {
        "kind": state["kind"],
        "count": n,
        "nulls": nulls,
        "null_rate": nulls / (n + nulls) if n + nulls else 0.0,
        "exact": exact,
        "distinct": _distinct(state, exact) if n else 0,
    }


def _numeric(state: State) -> dict[str, Any]:
    n = state["count"]
    exact = state["values"] is not None
    out: dict[str, Any] = {
        **_common(state, exact),
        "min": state["min"],
        "max": state["max"],
        "mean": _finite(state["mean"]) if n else None,
        "std": _finite(math.sqrt(state["m2"] / (n - 1))) if n > 1 else None,
    }
    if not n:
        out.update(quantiles={}, histogram=None, deciles=None)
        return out
    counts = state["values"] if exact else dict(Counter(v for _, v in state["sample"]))
    qs = quantiles_from_counts(counts, QUANTILES)
    out["quantiles"] = {f"p{round(q * 100):02d}": v for q, v in zip(QUANTILES, qs, strict=True)}
    keys = np.array(list(counts), dtype=np.float64)
    weights = np.array(list(counts.values()), dtype=np.float64)
    lo, hi = state["min"], state["max"]
    edges = np.linspace(lo, hi, BINS + 1) if hi > lo else np.array([lo - 0.5, lo + 0.5])
    hist, _ = np.histogram(keys, bins=edges, weights=weights)
    scale = n / weights.sum() if weights.sum() else 0.0
    out["histogram"] = {
        "edges": edges.tolist(),
        "counts": [round(float(c) * scale, 3) for c in hist],
    }
    deciles = sorted(set(quantiles_from_counts(counts, tuple(i / 10 for i in range(1, 10)))))
    out["deciles"] = {"edges": deciles, "shares": bucket_shares(counts, deciles)}
    return out


def bucket_shares(counts: dict[float, int], edges: list[float]) -> list[float]:
    """Shares of the multiset in (-inf, e0], (e0, e1], ..., (e_last, inf)."""
    keys = np.array(list(counts), dtype=np.float64)
    weights = np.array(list(counts.values()), dtype=np.float64)
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), keys, side="left")
    out = np.bincount(idx, weights=weights, minlength=len(edges) + 1)
    total = out.sum()
    return (out / total).tolist() if total else out.tolist()


def _category(state: State) -> dict[str, Any]:
    n = state["count"]
    exact = state["values"] is not None
    table = state["values"] if exact else state["top"]
    ranked = sorted(table.items(), key=lambda kv: (-kv[1], str(kv[0])))
    out: dict[str, Any] = {
        **_common(state, exact),
        "top": [[k, v] for k, v in ranked[:TOP]],
        "shares": {k: v / n for k, v in ranked[:MAX_SHARES]} if n else {},
        "all_categories": exact and len(table) <= MAX_SHARES,
    }
    if state["kind"] == "text":
        out["top"] = [[k[:80], v] for k, v in ranked[:5] if v > 1]
        out.pop("shares")
        out["all_categories"] = False
        out["length"] = _numeric(state["length"])
        out["length"]["kind"] = "length"
    return out


def finalize(states: dict[str, State], rows: int) -> dict[str, Any]:
    """The profile: ``{"rows": n, "columns": {name: statistics}}`` (JSON-ready)."""
    columns = {}
    for name, state in states.items():
        if state["kind"] in ("numeric", "time"):
            columns[name] = _numeric(state)
            if state["kind"] == "time" and state["count"]:
                for key in ("min", "max"):
                    stamp = pd.Timestamp(columns[name][key], unit="s", tz="UTC")
                    columns[name][f"{key}_time"] = stamp.isoformat()
        else:
            columns[name] = _category(state)
    return {"rows": rows, "columns": columns}


# On Ray Data -------------------------------------------------------------------------------
def _block_profile(batch: pa.Table, kinds: dict[str, str]) -> pa.Table:
    """``map_batches`` step: the block's partial state, pickled into a one-row table (so that
    Ray never has to infer an Arrow type for it)."""
    return pa.table({"state": pa.array([pickle.dumps(block_state(batch, kinds))], pa.binary())})


def dataset_states(ds: ray.data.Dataset, kinds: dict[str, str]) -> dict[str, State]:
    """Merged states of every column of ``ds``: one ``map_batches`` pass computes a partial
    state per block (in parallel, where the blocks are), the driver merges them."""
    from functools import partial

    parts = ds.map_batches(
        partial(_block_profile, kinds=kinds), batch_format="pyarrow", batch_size=None
    ).take_all()
    return merge_blocks([pickle.loads(row["state"]) for row in parts], kinds)


def merge_blocks(states: list[dict[str, State]], kinds: dict[str, str]) -> dict[str, State]:
    """``merge_all``, or the state of no rows when there are no blocks."""
    if not states:
        types = {
            n: pa.float64() if k in ("numeric", "time") else pa.string() for n, k in kinds.items()
        }
        empty = pa.table({n: pa.array([], t) for n, t in types.items()})
        return block_state(empty, kinds)
    return merge_all(states)


# Anomalies -----------------------------------------------------------------------------------
def psi(ref: list[float], cur: list[float], eps: float = 1e-4) -> float:
    r = np.clip(np.asarray(ref, dtype=float), eps, None)
    c = np.clip(np.asarray(cur, dtype=float), eps, None)
    return float(np.sum((c - r) * np.log(c / r)))


def _counts_of(state: State) -> dict[Any, int]:
    if state["values"] is not None:
        return dict(state["values"])
    if state["kind"] in ("numeric", "time"):
        return dict(Counter(v for _, v in state["sample"]))
    return dict(state["top"] or {})


def anomalies(
    states: dict[str, State], reference: dict[str, Any], checks: Data.Checks
) -> list[dict[str, Any]]:
    """Findings of this run's states against a reference profile, one dict per finding:
    ``{rule, column, action, message, value, threshold}``; rules set to ``off`` are skipped."""
    found: list[dict[str, Any]] = []

    def add(rule: str, column: str, action: str, message: str, value: float, limit: float) -> None:
        if action != "off":
            found.append(
                {
                    "rule": rule,
                    "column": column,
                    "action": action,
                    "message": message,
                    "value": round(value, 6),
                    "threshold": limit,
                }
            )

    ref_columns = reference.get("columns", {})
    for name, state in states.items():
        ref = ref_columns.get(name)
        n = state["count"]
        if ref is None or ref.get("kind") != state["kind"] or n + state["nulls"] == 0:
            continue
        rate = state["nulls"] / (n + state["nulls"])
        jump = rate - ref.get("null_rate", 0.0)
        if jump > checks.max_null_rate_increase:
            add(
                "null_rate",
                name,
                checks.null_rate,
                f"'{name}': null rate {rate:.1%} against {ref['null_rate']:.1%} in the reference",
                jump,
                checks.max_null_rate_increase,
            )
        if not n:
            continue
        counts = _counts_of(state)
        total = sum(counts.values())
        if state["kind"] in ("numeric", "time") and ref.get("min") is not None:
            outside = sum(c for v, c in counts.items() if v < ref["min"] or v > ref["max"])
            share = outside / total if total else 0.0
            if share > checks.max_out_of_range_share:
                add(
                    "out_of_range",
                    name,
                    checks.out_of_range,
                    f"'{name}': {share:.2%} of values outside the reference range "
                    f"[{ref['min']:g}, {ref['max']:g}] (now [{state['min']:g}, {state['max']:g}])",
                    share,
                    checks.max_out_of_range_share,
                )
            deciles = ref.get("deciles")
            if deciles and total:
                value = psi(deciles["shares"], bucket_shares(counts, deciles["edges"]))
                if value > checks.psi_threshold:
                    add(
                        "psi",
                        name,
                        checks.psi,
                        f"'{name}': PSI {value:.3f} over the reference deciles",
                        value,
                        checks.psi_threshold,
                    )
        elif state["kind"] == "category" and ref.get("shares") is not None:
            shares = ref["shares"]
            if ref.get("all_categories") and state["values"] is not None:
                new = sorted(k for k in counts if k not in shares)
                if new:
                    rows = sum(counts[k] for k in new)
                    add(
                        "new_category",
                        name,
                        checks.new_category,
                        f"'{name}': {len(new)} categories the reference never saw "
                        f"({', '.join(map(repr, new[:5]))}{', ...' if len(new) > 5 else ''}) "
                        f"on {rows} rows",
                        rows / total,
                        0.0,
                    )
            keys = list(shares)
            ref_shares = [*shares.values(), max(0.0, 1.0 - sum(shares.values()))]
            cur = [counts.get(k, 0) / total for k in keys]
            cur.append(max(0.0, 1.0 - sum(cur)))
            value = psi(ref_shares, cur)
            if value > checks.psi_threshold:
                add(
                    "psi",
                    name,
                    checks.psi,
                    f"'{name}': PSI {value:.3f} over the reference categories",
                    value,
                    checks.psi_threshold,
                )
    return found


def dumps(profile: dict[str, Any]) -> str:
    return json.dumps(profile, indent=2, sort_keys=True, default=str) + "\n"
