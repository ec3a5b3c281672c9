"""One predictor for every consumer: Serve replicas, Ray Data batch inference and evaluation.

It loads a model package once, validates raw instances against the package's input schema
(so a bad request is rejected with a reason before it reaches the model) and returns the
probability of the positive class (binary) or per-class probabilities (multiclass).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlsd_ray.errors import InvalidInput
from mlsd_ray.models.calibration import Calibrator
from mlsd_ray.models.package import ModelManifest, load_package
from mlsd_ray.tasks import Decision, get_task
from mlsd_ray.tasks.base import PREDICTION, PROBABILITY

log = logging.getLogger(__name__)

__all__ = ["PREDICTION", "PROBABILITY", "InvalidInput", "Predictor"]


def _cast(value: Any, type_: str, where: str) -> Any:
    if type_ == "image":
        return _image(value, where)
    if type_ == "category" and isinstance(value, bool):
        return str(value)  # "True"/"False", as the value reads in a CSV source
    if type_ in ("text", "string", "category"):
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise InvalidInput(f"{where}: expected a string, got {type(value).__name__}")
        # Categories are stripped as the ETL strips them, so " Feb" online is "Feb" in training.
        return str(value).strip() if type_ == "category" else str(value)
    if type_ == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
            return value.strip().lower() in ("true", "1")
        raise InvalidInput(f"{where}: expected a boolean, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(f"{where}: expected a number, got {type(value).__name__}")
    if type_ == "int" and float(value) != int(value):
        raise InvalidInput(f"{where}: expected an integer, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput(f"{where}: expected a finite number, got {value!r}")
    return int(value) if type_ == "int" else float(value)


def _image(value: Any, where: str) -> Any:
    """Base64 text (JSON) or bytes (Python callers) that Pillow decodes; passed on as given
    (the model decodes and resizes it to the card's size)."""
    from mlsd_ray.images import ImageError, decode

    try:
        decode(value, 1, 1)  # any size: this only proves the value is an image
    except ImageError as err:
        raise InvalidInput(f"{where}: {err}; send a PNG or JPEG as base64 text") from None
    return value


class Predictor:
    """Load once, predict many times. ``version`` is what the registry calls this model.

    ``inference`` (the card's ``deployment.inference``) picks a faster CPU path for a
    transformer package (see `mlsd_ray.models.fast_inference`); ``self.inference`` is the path
    really in use (e.g. "fp32" when bf16 was asked for on a CPU without it).
    """

    def __init__(
        self, model_dir: str | Path, version: str | None = None, inference: str | None = None
    ) -> None:
        self.model_dir = Path(model_dir)
        self.model, self.manifest = load_package(self.model_dir)
        self.task = get_task(self.manifest.category)
        # The package's probability calibration (fitted on validation at training), if any.
        self.calibrator = Calibrator.load(self.model_dir)
        self.version = version or self.manifest.metadata.get("version", "local")
        self.inference = "fp32"
        if inference and inference != "fp32":
            from mlsd_ray.models.fast_inference import resolve, use

            # "auto": the path evaluation measured and recorded in this package's manifest.
            path = resolve(inference, self.manifest.metadata)
            if path != "fp32":
                self.inference = use(self.model, path, self.model_dir)
        self._text_only = len(self.manifest.inputs) == 1 and self.manifest.inputs[0].type in (
            "text",
            "string",
            "image",  # a bare base64 string per instance
        )

    @property
    def threshold(self) -> float:
        return self.manifest.threshold

    @property
    def decision(self) -> Decision:
        """The package's decision rule (threshold chosen at evaluation, class thresholds)."""
        m = self.manifest
        return Decision(list(m.classes), m.threshold, dict(m.class_thresholds))

    # -- validation ---------------------------------------------------------------------
    def to_frame(self, instances: list[Any]) -> pd.DataFrame:
        """Raw instances -> a typed DataFrame. A text-only model also takes bare strings."""
        return self.frame(self.validate(instances))

    def frame(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        """Rows from ``validate`` (of one request, or of a whole served batch) -> the frame."""
        return pd.DataFrame(rows, columns=self.manifest.input_names)

    def validate(self, instances: list[Any]) -> list[dict[str, Any]]:
        """Raw instances -> typed rows, one dict per instance; ``InvalidInput`` says which
        instance and field is wrong. A server validates each request alone (so a bad one gets
        its own 4xx) and builds one frame per batch."""
        if not isinstance(instances, list):
            raise InvalidInput(f"'instances' must be a list, got {type(instances).__name__}")
        rows = []
        for i, inst in enumerate(instances):
            if self._text_only and isinstance(inst, str):
                inst = {self.manifest.inputs[0].name: inst}
            if not isinstance(inst, dict):
                raise InvalidInput(
                    f"instances[{i}]: expected an object with fields "
                    f"{self.manifest.input_names}, got {type(inst).__name__}"
                )
            unknown = set(inst) - set(self.manifest.input_names)
            if unknown:
                raise InvalidInput(f"instances[{i}]: unknown field(s) {sorted(unknown)}")
            row: dict[str, Any] = {}
            for field in self.manifest.inputs:
                where = f"instances[{i}].{field.name}"
                value = inst.get(field.name)
                if value is None:
                    if field.required:
                        raise InvalidInput(f"{where}: required field is missing")
                    row[field.name] = None
                    continue
                row[field.name] = _cast(value, field.type, where)
            rows.append(row)
        return rows

    # -- prediction ---------------------------------------------------------------------
    def predict_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Binary: P(positive) per row, shape (n,); regression: the value, (n,). Otherwise
        (n, n_classes)."""
        if len(frame) == 0:
            return np.zeros(0)
        scores = self.task.answer(self.model, frame)
        # The package's calibration map (binary packages fitted with one), else the raw scores.
        return scores if self.calibrator is None else self.calibrator.apply(scores)

    def labels(self, scores: np.ndarray) -> list[str]:
        """Answers for scores from ``predict_frame``: binary at the manifest's threshold (the one
        evaluation chose for the business objective), multiclass by the card's class thresholds
        or argmax, regression the value."""
        if len(scores) == 0:
            return []
        return self.task.labels(np.asarray(scores), self.decision)

    def predict(self, instances: list[Any]) -> list[Any]:
        return self.predict_frame(self.to_frame(instances)).tolist()

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        """For Ray Data: ``map_batches(Predictor, fn_constructor_args=(dir,), ...)``."""
        out = batch.copy()
        scores = self.predict_frame(self.input_frame(batch))
        out[self.task.output_column] = list(scores) if scores.ndim > 1 else scores
        return out

    def input_frame(self, batch: pd.DataFrame) -> pd.DataFrame:
        """The model's input columns of ``batch``; an optional input may be absent (all
        missing: the model's preprocessing imputes it), a required one may not."""
        absent = [f for f in self.manifest.inputs if f.name not in batch.columns]
        required = [f.name for f in absent if f.required]
        if required:
            raise InvalidInput(
                f"the batch lacks required input column(s) {required}; it has {list(batch.columns)}"
            )
        if absent:
            return batch.reindex(columns=self.manifest.input_names)
        return batch[self.manifest.input_names]

    def describe(self) -> dict[str, Any]:
        m: ModelManifest = self.manifest
        return {
            "name": m.name,
            "kind": m.kind,
            "version": self.version,
            "inputs": m.input_names,
            "inference": self.inference,
        }
