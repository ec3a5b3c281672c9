"""Dataset versions that stay: where each ETL run's splits live, the pointer to the current
one, and pruning.

Layout under the card's ``data.output_uri`` (local or ``s3://``)::

    versions/<dataset_version>/{train,validation,test,quarantine}/, manifest.json, profile.json
    manifest.json, profile.json   copies of the current version's (older readers, reports)
    CURRENT                       {"dataset_version": ..., "path": "versions/<v>"}, written last

``<dataset_version>`` is the content hash of the rows (``manifest.py``), so a rerun on the same
data writes the same folder and a changed row a new one. A run never deletes another version's
folder; ``CURRENT`` is written only after the version is complete, so a reader that resolves
splits through it (``Workdir.split_uri``) sees either the old or the new version, never half
of one. ``prune`` removes old versions except the ones it is told to protect (the caller, which
can see the registry, passes the versions registered models point to).
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow.fs as pafs

from mlsd_ray import storage
from mlsd_ray.settings import CURRENT_DATA as CURRENT

log = logging.getLogger(__name__)

VERSIONS = "versions"
MANIFEST = "manifest.json"


def version_uri(output_uri: str, version: str) -> str:
    return storage.join(output_uri, VERSIONS, version)


def current(output_uri: str) -> dict[str, Any] | None:
    """The pointer (``dataset_version``, ``path``), or None before the first versioned run."""
    uri = storage.join(output_uri, CURRENT)
    return dict(storage.read_json(uri)) if storage.exists(uri) else None


def write_current(output_uri: str, version: str) -> None:
    """Point readers at ``version``; call this last, once the version is complete."""
    pointer = {"dataset_version": version, "path": f"{VERSIONS}/{version}"}
    storage.write_json(storage.join(output_uri, CURRENT), pointer)


def list_versions(output_uri: str) -> list[dict[str, Any]]:
    """Complete versions (their manifest exists), oldest first: ``dataset_version``,
    ``created_at``, ``uri``. A folder without a manifest is a run that did not finish."""
    fs, path = storage.filesystem(storage.join(output_uri, VERSIONS))
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return []
    out = []
    for info in fs.get_file_info(pafs.FileSelector(path)):
        if info.type != pafs.FileType.Directory:
            continue
        uri = version_uri(output_uri, info.base_name)
        manifest = storage.join(uri, MANIFEST)
        if not storage.exists(manifest):
            continue
        created = str(storage.read_json(manifest).get("created_at", ""))
        out.append({"dataset_version": info.base_name, "created_at": created, "uri": uri})
    return sorted(out, key=lambda v: (v["created_at"], v["dataset_version"]))


def prune(output_uri: str, keep: int, protected: set[str]) -> list[str]:
    """Delete complete versions beyond the ``keep`` most recent, never the current one nor any
    in ``protected``. Returns the versions deleted."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    pointer = current(output_uri)
    spare = set(protected) | ({pointer["dataset_version"]} if pointer else set())
    versions = list_versions(output_uri)
    if pointer:  # same clock second: CURRENT, written last, is the newer (a rollback is not)
        now = pointer["dataset_version"]
        versions.sort(key=lambda v: (v["created_at"], v["dataset_version"] == now))
    recent = {v["dataset_version"] for v in versions[-keep:]}
    deleted = []
    for v in versions:
        name = v["dataset_version"]
        if name in recent or name in spare:
            continue
        storage.delete_dir(v["uri"])
        deleted.append(name)
    if deleted:
        log.info("data versions: pruned %s (kept %d recent, protected %s)", deleted, keep, spare)
    return deleted
