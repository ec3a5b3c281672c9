"""A model package that reaches a Ray Data scoring actor on any node.

The evaluation stage scores with ``Predictor`` actors that Ray may place on any node, but the
driver's package folder exists on the driver's node only (a workdir mirror, or a local
workdir). The driver packs the folder's files (``relative path -> bytes``, no pickle) into
the object store once; an actor on a node without the folder unpacks them into that node's
cache under their content hash, written aside and renamed into place, and loads from there.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mlsd_ray.models.package import MANIFEST
from mlsd_ray.predict import Predictor
from mlsd_ray.settings import cache_dir

Files = dict[str, bytes]


def pack(model_dir: Path) -> tuple[str, Files]:
    """(content hash, files) of a package folder."""
    files = {
        str(p.relative_to(model_dir)): p.read_bytes()
        for p in sorted(model_dir.rglob("*"))
        if p.is_file()
    }
    h = hashlib.sha256()
    for name, data in files.items():
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()[:20], files


def on_this_node(model_dir: str, digest: str, files: Files) -> Path:
    """``model_dir`` where this node has it, else the unpacked copy in this node's cache."""
    if (Path(model_dir) / MANIFEST).is_file():
        return Path(model_dir)
    target = cache_dir() / "shipped" / digest
    if (target / MANIFEST).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=target.parent))
    for name, data in files.items():
        dest = tmp / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    try:
        os.rename(tmp, target)
    except OSError:  # another actor on this node unpacked it first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


class ShippedPredictor(Predictor):
    """``Predictor`` for ``map_batches``: the package folder, or its shipped files."""

    def __init__(
        self, model_dir: str, digest: str, files: Any, version: str | None, inference: Any
    ) -> None:
        import ray

        if isinstance(files, ray.ObjectRef):  # Ray Data may hand the reference over as is
            files = ray.get(files)
        super().__init__(on_this_node(model_dir, digest, files), version, inference)
