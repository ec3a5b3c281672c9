"""``deployment.inference: auto``: measure each CPU path of a transformer on the validation
split and record in its package the one to serve.

Each fast path (onnx, int8, bf16) is scored against fp32 in this process, with the intra-op
threads a Serve replica gets: the gate metric's change on the validation split and a quick
throughput (rows/s). The choice is the fastest path whose |change| is within
``deployment.inference_max_metric_change``; fp32 when none is, or none beats fp32, and the
reason says which. It is stored in the manifest (``metadata.inference_choice``), which
`fast_inference.resolve` reads in Serve replicas and batch scoring, and which travels with the
package into the registry. Other model kinds have one path: fp32, no measurement.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mlsd_ray.errors import ModelError
from mlsd_ray.models.fast_inference import AUTO, CHOICE_KEY
from mlsd_ray.models.kinds import KINDS
from mlsd_ray.models.package import MANIFEST, read_manifest
from mlsd_ray.predict import Predictor
from mlsd_ray.spec import DesignCard

log = logging.getLogger(__name__)

FAST_PATHS = ("onnx", "int8", "bf16")
#: Validation rows scored per path: enough for a stable metric and rate, bounded in time
#: (4 passes of MiniLM over 2,000 posts is about a minute on 2 cores).
MAX_ROWS = 2000
WARMUP_ROWS = 8  # the first call pays one-off costs (allocator, onnxruntime's first run)


def choose_inference(card: DesignCard, model_dir: Path, val_uri: str) -> dict[str, Any]:
    """The path ``model_dir`` is served with under the card's ``deployment.inference``;
    under ``auto`` it is measured here and written into the package's manifest."""
    d = card.deployment
    if d.inference != AUTO:
        return {"path": d.inference, "reason": "set by the card (deployment.inference)"}
    manifest = read_manifest(model_dir)
    kind = KINDS.get(manifest.kind)
    if kind is None or not kind.fast_inference:
        choice: dict[str, Any] = {
            "path": "fp32",
            "reason": f"{manifest.kind} models have one CPU path (fast paths are for transformers)",
            "paths": {},
        }
    else:
        from mlsd_ray.data.layout import read_split

        frame = read_split(val_uri).head(MAX_ROWS)
        metric = card.evaluation.gate.metric
        measured = measure_paths(model_dir, frame, metric, d.replica_threads)
        choice = pick(measured, metric, d.inference_max_metric_change)
    choice = record(model_dir, choice)
    log.info("%s: serving path %s (%s)", manifest.name, choice["path"], choice["reason"])
    return choice


def measure_paths(
    model_dir: Path, frame: pd.DataFrame, metric: str, threads: int
) -> dict[str, dict[str, Any]]:
    """fp32 and each fast path on ``frame`` (inputs + ``label``): the metric, its change
    against fp32 and rows/s. A path this machine cannot run is marked unavailable."""
    out: dict[str, dict[str, Any]] = {}
    with torch_threads(threads):
        for path in ("fp32", *FAST_PATHS):
            try:
                predictor = Predictor(model_dir, inference=path)
            except ModelError as err:  # e.g. onnxruntime missing
                out[path] = {"available": False, "note": str(err)}
                continue
            if predictor.inference != path:  # e.g. bf16 on a CPU without native bf16
                out[path] = {"available": False, "note": f"runs as {predictor.inference} here"}
                continue
            out[path] = _measure(predictor, frame, metric)
    reference = out["fp32"]["metric"]
    for m in out.values():
        if m.get("available"):
            m["change"] = m["metric"] - reference
    return out


def _measure(predictor: Predictor, frame: pd.DataFrame, metric: str) -> dict[str, Any]:
    inputs = predictor.input_frame(frame)
    predictor.predict_frame(inputs.head(WARMUP_ROWS))
    t0 = time.perf_counter()
    scores = predictor.predict_frame(inputs)
    seconds = time.perf_counter() - t0
    value = predictor.task.metrics(frame["label"].to_numpy(), scores, predictor.decision)[metric]
    return {
        "available": True,
        "metric": float(value),
        "rows_per_s": round(len(inputs) / max(seconds, 1e-9), 1),
        "rows": len(inputs),
    }


def pick(measured: dict[str, dict[str, Any]], metric: str, max_change: float) -> dict[str, Any]:
    """The fastest available path whose |metric change| <= ``max_change``; fp32 (with the
    reason) when no fast path qualifies or none is faster than fp32."""
    fp32 = measured["fp32"]
    within = {
        p: m
        for p, m in measured.items()
        if p != "fp32" and m.get("available") and abs(m["change"]) <= max_change
    }
    choice: dict[str, Any] = {"metric": metric, "max_change": max_change, "paths": measured}
    if not within:
        rejected = [
            f"{p} {m['change']:+.4f}" if m.get("available") else f"{p} unavailable"
            for p, m in measured.items()
            if p != "fp32"
        ]
        reason = f"fp32: no fast path within ±{max_change:g} {metric} ({', '.join(rejected)})"
        return {"path": "fp32", "reason": reason, **choice}
    best = max(within, key=lambda p: within[p]["rows_per_s"])
    rate, base = within[best]["rows_per_s"], fp32["rows_per_s"]
    if rate <= base:
        reason = f"fp32: the fastest path within tolerance ({best}, {rate:g} rows/s) is no faster"
        return {"path": "fp32", "reason": reason + f" than fp32 ({base:g} rows/s)", **choice}
    change = within[best]["change"]
    reason = (
        f"{best}: {rate / base:.2f}x fp32's rows/s with {metric} change {change:+.4f} "
        f"(within ±{max_change:g})"
    )
    return {"path": best, "reason": reason, **choice}


def record(model_dir: Path, choice: dict[str, Any]) -> dict[str, Any]:
    """Write the choice into the package manifest (what Serve and the registry read); returns
    it as stored (JSON-safe), which the reports show too."""
    manifest = read_manifest(model_dir)
    stored: dict[str, Any] = _plain(choice)
    if manifest.metadata.get(CHOICE_KEY) != stored:
        updated = manifest.model_copy(
            update={"metadata": {**manifest.metadata, CHOICE_KEY: stored}}
        )
        (model_dir / MANIFEST).write_text(updated.model_dump_json(indent=2))
    return stored


def _plain(value: Any) -> Any:
    """JSON-safe: NaN metrics (e.g. ROC-AUC of one class) become None."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else float(value)
    return value


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Score with a replica's thread count, so the rates rank paths as Serve will run them."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
