"""A remote (``s3://``) workdir and its node-local mirror.

The driver writes packages, reports and summaries into ``Workdir.root`` (a local folder) as it
does for a local workdir. Around each stage, ``stage()`` first checks the bucket (and the
tracking server) are there, rebuilds the mirror from the bucket, runs the stage, and publishes
what changed. Splits, prediction logs and Ray Train/Tune results never pass through the mirror:
they are written to the bucket directly by whichever node does the work.

The bucket holds ``_mlsd_index.json``: every published file with its SHA-256. It is written
*after* the files it lists, so it is the commit marker: a reader sees a package only once all of
its files are uploaded, and a downloaded file whose hash differs from the index (a concurrent
publish) is fetched again. The mirror is a cache keyed by those hashes: a file is downloaded
only when the local copy's hash differs, and the whole mirror can be deleted at any time.

Why our own code rather than ``aws s3 sync`` or fsspec's ``put``: neither gives a commit
marker, and mtime/size comparisons miss same-size rewrites of JSON files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pyarrow.fs as pafs

from mlsd_ray import storage
from mlsd_ray.errors import StorageError
from mlsd_ray.settings import Workdir

log = logging.getLogger(__name__)

INDEX = "_mlsd_index.json"
#: Folders of the mirror that are published; ``registry_cache`` and ``staging`` are caches.
MIRRORED_DIRS = ("models", "reports")
MIRRORED_SUFFIX = "_summary.json"
_HASHES = (
    ".mlsd_hashes.json"  # local: (size, mtime_ns) -> sha256, so unchanged files are not re-hashed
)
_MANIFEST = "mlsd_model.json"
_checked: set[str] = set()

T = TypeVar("T")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _mirrored(rel: str) -> bool:
    top = rel.split("/", 1)[0]
    if ".partial" in rel or rel.endswith(".tmp"):
        return False
    return top in MIRRORED_DIRS or ("/" not in rel and rel.endswith(MIRRORED_SUFFIX))


def local_files(root: Path) -> dict[str, str]:
    """{relative path: sha256} of the mirror's published part."""
    cache_file = root / _HASHES
    try:
        known: dict[str, Any] = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        known = {}
    out: dict[str, str] = {}
    fresh: dict[str, Any] = {}
    if not root.is_dir():
        return out
    candidates = [p for d in MIRRORED_DIRS for p in (root / d).rglob("*")]
    candidates += list(root.glob(f"*{MIRRORED_SUFFIX}"))
    for p in candidates:
        if not p.is_file():
            continue
        rel = p.relative_to(root).as_posix()
        if not _mirrored(rel):
            continue
        st = p.stat()
        stamp = [st.st_size, st.st_mtime_ns]
        entry = known.get(rel)
        sha = entry[1] if entry and entry[0] == stamp else _sha256(p)
        out[rel] = sha
        fresh[rel] = [stamp, sha]
    cache_file.write_text(json.dumps(fresh))
    return out


def remote_index(wd: Workdir) -> dict[str, str]:
    uri = storage.join(wd.uri, INDEX)
    if not storage.exists(uri):
        return {}
    return dict(storage.read_json(uri).get("files", {}))


def _upload(fs: pafs.FileSystem, src: Path, dest: str) -> None:
    # No folder markers: S3 has no folders, and a marker per level cost a request each.
    with src.open("rb") as f, fs.open_output_stream(dest) as out:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            out.write(chunk)


def push(wd: Workdir, only: list[str] | None = None) -> dict[str, int]:
    """Publish the mirror's changed files, then the index (the commit marker), then delete
    objects the index no longer lists. ``only``: publish these paths and keep the rest."""
    if not wd.remote:
        return {"uploaded": 0, "deleted": 0}
    fs, base = storage.filesystem(wd.uri)
    before = remote_index(wd)
    if only is None:  # files published one by one (the sqlite store) stay as they are
        now = {**{r: h for r, h in before.items() if not _mirrored(r)}, **local_files(wd.root)}
    else:
        now = {**{r: h for r, h in before.items() if r not in only}}
        now.update(_only_files(wd.root, only))
    changed = sorted((r for r, h in now.items() if before.get(r) != h), key=_manifest_last)
    gone = [r for r in before if r not in now]
    if not changed and not gone:
        return {"uploaded": 0, "deleted": 0}
    for rel in changed:
        _upload(fs, wd.root / rel, f"{base}/{rel}")
    storage.write_json(storage.join(wd.uri, INDEX), {"files": now, "published_at": time.time()})
    for rel in gone:
        with contextlib.suppress(OSError):  # best effort: the index decides what exists
            fs.delete_file(f"{base}/{rel}")
    if changed or gone:
        log.info("published %d file(s) to %s (%d removed)", len(changed), wd.uri, len(gone))
    return {"uploaded": len(changed), "deleted": len(gone)}


def _only_files(root: Path, only: list[str]) -> dict[str, str]:
    return {rel: _sha256(root / rel) for rel in only if (root / rel).is_file()}


def _manifest_last(rel: str) -> tuple[bool, str]:
    # A reader that looks at the bucket directly (not through the index) also sees a package
    # only once its manifest, uploaded last, is there.
    return (rel.endswith(_MANIFEST), rel)


def pull(wd: Workdir, only: list[str] | None = None) -> dict[str, int]:
    """Make the mirror equal to the bucket's index: fetch files whose hash differs, drop files
    the index no longer lists (within the published folders)."""
    if not wd.remote:
        return {"downloaded": 0, "removed": 0}
    fs, base = storage.filesystem(wd.uri)
    wd.root.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):
        index = remote_index(wd)
        wanted = {r: h for r, h in index.items() if only is None or r in only}
        if only is None:  # the published folders, plus files published one by one (mlflow.db)
            have = local_files(wd.root)
            have.update(_only_files(wd.root, [r for r in wanted if not _mirrored(r)]))
        else:
            have = _only_files(wd.root, list(wanted))
        missing = [r for r, h in wanted.items() if have.get(r) != h]
        stale = [r for r in have if r not in wanted and _mirrored(r)] if only is None else []
        try:
            for rel in missing:
                _download(fs, f"{base}/{rel}", wd.root / rel, wanted[rel])
        except _Changed:
            if attempt == 2:
                raise StorageError(
                    f"The workdir {wd.uri} kept changing while it was read.",
                    why="another run publishes to the same workdir at the same time",
                    fix="run one writer per workdir, or retry when the other run is done",
                ) from None
            continue
        for rel in stale:
            (wd.root / rel).unlink(missing_ok=True)
        if missing or stale:
            log.info("mirror of %s: %d fetched, %d dropped", wd.uri, len(missing), len(stale))
        return {"downloaded": len(missing), "removed": len(stale)}
    raise AssertionError("unreachable")


class _Changed(Exception):
    pass


def _download(fs: pafs.FileSystem, src: str, dest: Path, sha: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".partial")
    h = hashlib.sha256()
    try:
        with fs.open_input_stream(src) as f, tmp.open("wb") as out:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
                out.write(chunk)
    except FileNotFoundError:
        tmp.unlink(missing_ok=True)
        raise _Changed from None
    if h.hexdigest() != sha:
        tmp.unlink(missing_ok=True)
        raise _Changed
    os.replace(tmp, dest)


def preflight(wd: Workdir) -> None:
    """Fail before any work when the bucket or the tracking server cannot be used."""
    from mlsd_ray.preflight import check_tracking, check_workdir

    key = f"{wd.uri}|{wd.tracking_uri}"
    if key in _checked:
        return
    check_workdir(wd)
    check_tracking(wd.tracking_uri, wd.preflight_timeout_s)
    _checked.add(key)


@contextmanager
def stage(wd: Workdir, name: str) -> Iterator[None]:
    """Check, rebuild the mirror, run, publish (also when the stage fails, so its report and
    whatever finished is kept; packages are written whole or not at all)."""
    if not wd.remote:
        preflight(wd)
        yield
        return
    preflight(wd)
    pull(wd)
    try:
        yield
    finally:
        push(wd)
        log.debug("stage %s published to %s", name, wd.uri)


def open_for_command(wd: Workdir) -> None:
    """For a command outside the pipeline's stages (``mlsd online``, ``serve tune``, ...):
    check and rebuild the mirror now, publish what the command wrote when the process exits."""
    if not wd.remote:
        return
    import atexit

    preflight(wd)
    pull(wd)
    atexit.register(push, wd)


def synced(name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorator for a stage function ``f(card, workdir, ...)``: runs it inside ``stage()``."""

    def wrap(fn: Callable[..., T]) -> Callable[..., T]:
        import functools

        @functools.wraps(fn)
        def inner(card: Any, workdir: Workdir, *args: Any, **kwargs: Any) -> T:
            with stage(workdir, name):
                return fn(card, workdir, *args, **kwargs)

        return inner

    return wrap
