"""Step caching for ``mlsd run``: skip a stage whose inputs, card sections and code are unchanged.

A stage's key is the SHA-256 of

* the key of the stage before it (so a change upstream re-runs everything after it),
* the card sections it reads (``SECTIONS``; ``stages:`` and ``storage:`` never change results),
* its own inputs: for ETL, a fingerprint of the sources (every file's path, size and mtime;
  the URI of a ``synthetic://`` source); later stages read only what the stage before wrote,
* the code version: a hash of the package's own source files (uncommitted edits count).

The record is the key written into ``<stage>_summary.json`` *after* the stage succeeded (and
after the stage wrote that summary), so a stage that failed or was killed is never cached.
Serving and monitoring are live (HTTP answers, a new prediction log) and always run; a
database source is never fingerprinted, so its ETL always runs.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.fs as pafs

from mlsd_ray import storage

if TYPE_CHECKING:
    from mlsd_ray.settings import Workdir
    from mlsd_ray.spec import DesignCard

log = logging.getLogger(__name__)

#: The card sections each cacheable stage reads (its key also holds the upstream key).
SECTIONS: dict[str, tuple[str, ...]] = {
    "etl": ("requirements", "framing", "data"),
    "train": ("models",),
    "evaluate": ("evaluation",),
    "register": ("name",),
}
CACHEABLE = tuple(SECTIONS)
KEY_FIELD = "cache_key"


@functools.cache
def code_version() -> str:
    """SHA-256 of every ``.py`` file of the package (path and bytes): any code change counts."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def sources_fingerprint(card: DesignCard) -> list[Any] | None:
    """What ETL reads, as (path, size, mtime) of each file; None when a source cannot be
    fingerprinted (a database: its rows change without notice), so ETL always runs."""
    out: list[Any] = []
    for source in card.data.sources:
        uri = source.uri
        if uri.startswith("synthetic://"):
            out.append(uri)  # generated from the URI by this code version
            continue
        if "://" in uri and not storage.is_remote(uri):
            return None
        try:
            out.append([uri, _files(uri)])
        except (OSError, ValueError) as err:
            log.info("source %s cannot be fingerprinted (%s); ETL will run", uri, err)
            return None
    return out


def _files(uri: str) -> list[tuple[str, int, int]]:
    fs, path = storage.filesystem(uri)
    wild = min((path.find(ch) for ch in "*?[" if ch in path), default=-1)
    base = path[:wild].rsplit("/", 1)[0] if wild >= 0 else path
    info = fs.get_file_info(base)
    if info.type == pafs.FileType.File:
        infos = [info]
    elif info.type == pafs.FileType.Directory:  # the whole tree: more re-runs, never fewer
        infos = [i for i in fs.get_file_info(pafs.FileSelector(base, recursive=True)) if i.is_file]
    else:
        raise FileNotFoundError(base)
    return sorted((i.path, int(i.size or 0), int(i.mtime_ns or 0)) for i in infos)


def stage_key(card: DesignCard, stage: str, upstream: str | None) -> str | None:
    """The stage's cache key, or None when it must run (not cacheable, or ETL's sources
    cannot be fingerprinted, or an upstream stage was not cacheable)."""
    if stage not in SECTIONS or (stage != "etl" and upstream is None):
        return None
    dumped = card.model_dump(mode="json")
    parts: dict[str, Any] = {
        "stage": stage,
        "upstream": upstream,
        "sections": {name: dumped.get(name) for name in SECTIONS[stage]},
        "code": code_version(),
    }
    if stage == "etl":
        parts["sources"] = sources_fingerprint(card)
        if parts["sources"] is None:
            return None
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def cached_summary(
    card: DesignCard, workdir: Workdir, stage: str, key: str | None
) -> dict[str, Any] | None:
    """The stage's last summary when it was written under ``key`` and its outputs are still
    there; else None (run the stage)."""
    if key is None:
        return None
    path = str(workdir.summary_path(stage))
    if not storage.exists(path):
        return None
    summary: dict[str, Any] = storage.read_json(path)
    if summary.get(KEY_FIELD) != key or not _outputs_present(card, workdir, stage, summary):
        return None
    return summary


def _outputs_present(
    card: DesignCard, workdir: Workdir, stage: str, summary: dict[str, Any]
) -> bool:
    """Someone may have deleted what the summary points to since; then the stage runs."""
    if stage == "etl":
        from mlsd_ray.data.etl import dataset_version

        return dataset_version(card, workdir) == summary.get("dataset_version")
    if stage == "train":
        return all((workdir.model_dir(m) / "mlsd_model.json").is_file() for m in _models(summary))
    if stage == "evaluate":
        return (workdir.reports / "evaluation" / "report.json").is_file()
    return True


def _models(summary: dict[str, Any]) -> list[str]:
    models = summary.get("models") or {}
    return list(models) if isinstance(models, dict) else []


def record(workdir: Workdir, stage: str, key: str | None, attempts: int) -> None:
    """Write ``key`` and ``attempts`` into the stage's summary: the last write of a stage that
    succeeded (a stage that fails never gets here, so it is never cached)."""
    path = str(workdir.summary_path(stage))
    if not storage.exists(path):
        return
    summary = storage.read_json(path)
    summary.update({KEY_FIELD: key, "cached": False, "attempts": attempts})
    storage.write_json(path, summary)
