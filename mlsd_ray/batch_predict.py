"""Offline batch prediction on Ray Data with the same ``Predictor`` class as Serve.

    mlsd predict CARD --input data.parquet --output s3://bucket/preds/   (or jobs/predict.py)

Reads Parquet, CSV or JSON Lines (a file, a folder or an ``s3://`` URI), scores every row with
``map_batches(Predictor, ...)`` - one model copy per actor, loaded once - and writes the input
columns plus ``probability`` and ``model_version`` as Parquet.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from mlsd_ray import storage
from mlsd_ray.errors import DataError
from mlsd_ray.predict import Predictor
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard

log = logging.getLogger(__name__)

MODEL_VERSION = "model_version"
FORMATS = ("parquet", "csv", "json")


def _format(uri: str, fmt: str | None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise DataError(f"Unknown input format {fmt!r}.", fix=f"use one of {list(FORMATS)}")
        return fmt
    suffix = Path(uri.rstrip("/")).suffix.lower().lstrip(".")
    if suffix in ("csv",):
        return "csv"
    if suffix in ("json", "jsonl", "ndjson"):
        return "json"
    return "parquet"  # files and folders of Parquet parts


def read_input(uri: str, fmt: str | None = None) -> Any:
    """A Ray Dataset over ``uri`` (local or ``s3://``)."""
    import ray.data

    fs, path = storage.filesystem(uri)
    if not storage.exists(uri):
        raise DataError(f"No input at {uri!r}.", fix="check the path (or the bucket and key)")
    kind = _format(uri, fmt)
    if kind == "csv":
        return ray.data.read_csv(path, filesystem=fs)
    if kind == "json":
        return ray.data.read_json(path, filesystem=fs, lines=True)
    return ray.data.read_parquet(path, filesystem=fs)


class _Scorer(Predictor):
    """``Predictor`` for Ray Data that also records the version and keeps the schema."""

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        out = super().__call__(batch)
        out[MODEL_VERSION] = str(self.version)
        return out


def predict_dataset(
    card: DesignCard,
    workdir: Workdir,
    input_uri: str,
    output_uri: str | None = None,
    *,
    alias: str | None = None,
    model_dir: str | Path | None = None,
    input_format: str | None = None,
    batch_size: int = 256,
    concurrency: int = 1,
) -> dict[str, Any]:
    """Score ``input_uri`` with the alias's model (or ``model_dir``); Parquet to ``output_uri``
    (default ``<workdir>/batch_predictions``). Returns rows, output URI and model version."""
    from mlsd_ray.runtime import ensure_ray

    ensure_ray()
    if model_dir is not None:
        version, package = None, Path(model_dir).resolve()
    else:
        from mlsd_ray.registry import fetch_model

        version, package = fetch_model(card, workdir, alias or card.deployment.alias)
    ds = read_input(input_uri, input_format)
    columns = set(ds.schema().names)
    # An optional input may be absent: the model imputes it (Predictor.input_frame).
    missing = [f.name for f in card.framing.inputs if f.required and f.name not in columns]
    if missing:
        raise DataError(
            f"The input {input_uri!r} lacks the card's input column(s) {missing}.",
            why=f"it has {sorted(columns)}",
            fix="rename the columns (or pass the right file); extra columns are kept as is",
        )
    scored = ds.map_batches(
        _Scorer,
        fn_constructor_args=(str(package), version),
        batch_format="pandas",
        batch_size=batch_size,
        concurrency=concurrency,
    )
    out = output_uri or workdir.resolve("batch_predictions")
    fs, path = storage.filesystem(out)
    scored.write_parquet(path, filesystem=fs)
    rows = _count_rows(out)
    summary = {"input": input_uri, "output": out, "rows": rows, "model_dir": str(package)}
    summary[MODEL_VERSION] = version or _Scorer(package).version
    log.info("scored %d rows of %s -> %s", rows, input_uri, out)
    return summary


def _count_rows(uri: str) -> int:
    import pyarrow.dataset as pads

    fs, path = storage.filesystem(uri)
    return int(pads.dataset(path, filesystem=fs, format="parquet").count_rows())
