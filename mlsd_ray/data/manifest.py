"""Dataset versions: a content hash of what ETL wrote, and the manifest that records it.

The content hash does not depend on file names, block order or parallelism: every written row
gets two 64-bit hashes of its values (inputs, carried split columns, label; lineage excluded,
so moving the source files does not change it), summed modulo 2**64 per split. The hash of a
data set is the SHA-256 of the schema and of (rows, sum, sum) per split; ``dataset_version`` is
its first 12 hex digits. Two runs that write the same rows into the same splits get the same
version; a changed row, a moved split boundary or a changed type gives a new one.

``<output_uri>/manifest.json`` records: the version and hash, the time, the code version (the
package version, a hash of the data-stage sources, the git commit when known), the card's data
section, every source (files with sizes and rows, or the SQL read; event-join counts), rows in,
ok, quarantined (by reason) and per split, the schemas, per-split hashes and label counts, class
weights, leakage and anomaly findings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlsd_ray import storage
from mlsd_ray.data.verify import META

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_KEYS = ("mlsd-content-k01", "mlsd-content-k02")
_NULL = np.uint64(0x9E3779B97F4A7C15)  # the hash of a null (no text hashes to it by design)
_PRIMES = (np.uint64(1099511628211), np.uint64(14029467366897019727))


def column_hashes(batch: pa.Table, columns: list[str]) -> dict[str, np.ndarray]:
    """64-bit hash per row of each column's value (numbers and times by value, the rest as
    text); nulls get their own."""
    out = {}
    for name in columns:
        column = batch[name]
        kind = column.type
        if pa.types.is_timestamp(kind):
            column = column.cast(pa.int64())
        if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
            numbers = pc.fill_null(column, 0).to_numpy(zero_copy_only=False)
            hashes = pd.util.hash_array(np.asarray(numbers), categorize=False)
        else:
            hashes = _text_hashes(column)
        nulls = np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        hashes[nulls] = _NULL
        out[name] = hashes
    return out


def _text_hashes(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The hash of each value as text: each distinct value hashed once (Arrow dictionary
    encoding), then looked up; the same numbers as hashing every row."""
    text = pc.fill_null(column.cast(pa.string()), "")
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    encoded = pc.dictionary_encode(text)
    words = np.asarray(encoded.dictionary.to_numpy(zero_copy_only=False), dtype=object)
    per_word = pd.util.hash_array(words, hash_key=_KEYS[0], categorize=False)
    indices = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    return per_word[indices] if len(words) else np.zeros(len(text), dtype=np.uint64)


def combine(hashes: list[np.ndarray], which: int, n: int) -> np.ndarray:
    """Order-sensitive combination of per-column hashes into one hash per row."""
    h = np.full(n, np.uint64(len(hashes)) + np.uint64(which), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for part in hashes:
            h = h * _PRIMES[which] + part
            h ^= h >> np.uint64(29)
    return h


def data_columns(schema: pa.Schema) -> list[str]:
    return [n for n in schema.names if n not in META]


def split_digest(counts: dict[str, int], sums: dict[str, tuple[int, int]]) -> dict[str, str]:
    """Per split: a hex digest of (rows, sum1, sum2)."""
    return {
        s: hashlib.sha256(f"{counts[s]}:{sums[s][0]}:{sums[s][1]}".encode()).hexdigest()[:16]
        for s in counts
    }


def content_hash(
    schema: pa.Schema, counts: dict[str, int], sums: dict[str, tuple[int, int]]
) -> str:
    payload = {
        "schema": [[f.name, str(f.type)] for f in schema if f.name not in META],
        "splits": {s: [counts[s], str(sums[s][0]), str(sums[s][1])] for s in sorted(counts)},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def version_of(digest: str) -> str:
    return digest[:12]


def code_version() -> dict[str, Any]:
    """Package version, SHA-256 of the data-stage sources, and the git commit when known."""
    here = Path(__file__).resolve().parent
    sources = hashlib.sha256()
    for path in sorted(here.glob("*.py")):
        sources.update(path.name.encode() + b"\0" + path.read_bytes())
    try:
        package = metadata.version("mlsd-ray")
    except metadata.PackageNotFoundError:
        package = "unknown"
    commit = None
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        commit = done.stdout.strip() or None if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"package": package, "data_code_sha256": sources.hexdigest(), "git_commit": commit}


def schema_json(schema: pa.Schema) -> list[dict[str, Any]]:
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_manifest(output_uri: str, manifest: dict[str, Any]) -> str:
    uri = storage.join(output_uri, MANIFEST)
    storage.write_json(uri, manifest)
    log.info("etl: dataset %s, manifest %s", manifest["dataset_version"], uri)
    return uri


def read_manifest(output_uri: str) -> dict[str, Any] | None:
    """The manifest under ``output_uri``, or None when there is none."""
    uri = storage.join(output_uri, MANIFEST)
    if not storage.exists(uri):
        return None
    return dict(storage.read_json(uri))


def _sums(table: pa.Table, columns: list[str]) -> tuple[int, int]:
    hashes = column_hashes(table, columns)
    n = table.num_rows
    with np.errstate(over="ignore"):
        return (
            int(np.sum(combine([hashes[c] for c in columns], 0, n), dtype=np.uint64)),
            int(np.sum(combine([hashes[c] for c in columns], 1, n), dtype=np.uint64)),
        )


def check_splits(output_uri: str) -> dict[str, Any]:
    """Re-hash every split as a reader gets it back (Hive partition columns restored) and
    compare with the manifest: ``{"ok", "content_hash", "expected", "splits": {split: {"rows",
    "hash", "expected"}}}``. A file added, lost or changed after ETL shows as a mismatch."""
    from mlsd_ray.data import layout

    manifest = read_manifest(output_uri)
    if manifest is None:
        raise FileNotFoundError(f"no {MANIFEST} under {output_uri!r}")
    derived = set(manifest.get("layout", {}).get("derived", {}))
    counts: dict[str, int] = {}
    sums: dict[str, tuple[int, int]] = {}
    schema = None
    for split, info in manifest["splits"].items():
        table = layout.read_table(info["uri"])
        schema = pa.schema([f for f in table.schema if f.name not in derived])
        counts[split] = table.num_rows
        sums[split] = _sums(table, data_columns(schema))
    assert schema is not None
    digests = split_digest(counts, sums)
    splits = {
        s: {"rows": counts[s], "hash": digests[s], "expected": manifest["splits"][s]["hash"]}
        for s in counts
    }
    digest = content_hash(schema, counts, sums)
    ok = digest == manifest["content_hash"] and all(
        v["hash"] == v["expected"] for v in splits.values()
    )
    return {
        "ok": ok,
        "content_hash": digest,
        "expected": manifest["content_hash"],
        "splits": splits,
    }
