"""A model package: one folder holding the manifest, the weights and the preprocessing.

Serving, batch inference and evaluation all load the same folder, so they use exactly what
training produced. Layout::

    mlsd_model.json      the manifest (kind, inputs, classes, threshold, lineage)
    ...                  kind-specific files (JSON, safetensors, tokenizer files)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlsd_ray.errors import ModelError
from mlsd_ray.models.base import Model, load_model_class

log = logging.getLogger(__name__)
MANIFEST = "mlsd_model.json"


class InputSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    type: str
    required: bool = True


class ModelManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format_version: int = 1
    name: str
    kind: str
    category: str
    inputs: list[InputSchema]
    classes: list[str]
    threshold: float = 0.5
    #: Multiclass: class name -> threshold (see ``evaluation.class_thresholds``); empty = argmax.
    class_thresholds: dict[str, float] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    #: Lineage and training facts: dataset URIs, row counts, seconds, card name.
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.inputs]


def save_package(model: Model, path: str | Path, manifest: ModelManifest) -> Path:
    """Write ``model`` and its manifest to ``path`` (replacing what was there).

    Written into a sibling folder first and renamed into place, so a reader (or a publish of
    the workdir) never sees half a package."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        model.save(tmp)
        (tmp / MANIFEST).write_text(manifest.model_dump_json(indent=2))
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("saved %s model %r to %s", manifest.kind, manifest.name, path)
    return path


def read_manifest(path: str | Path) -> ModelManifest:
    file = Path(path) / MANIFEST
    if not file.is_file():
        raise ModelError(
            f"No model package at {str(path)!r}: {MANIFEST} is missing.",
            fix="point at a folder written by `mlsd train` (or downloaded from the registry)",
        )
    return ModelManifest.model_validate(json.loads(file.read_text()))


def load_package(path: str | Path) -> tuple[Model, ModelManifest]:
    manifest = read_manifest(path)
    cls = load_model_class(manifest.kind)
    model = cls.load(Path(path), manifest.input_names, manifest.params)
    return model, manifest
