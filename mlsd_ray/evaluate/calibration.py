"""ECE before and after calibration, per model, for the evaluation report.

Test-split ECE after calibration is the ``ece`` of the metrics (the Predictor applies the
package's map); before is recomputed here from the model's raw probabilities on the same rows.
The validation figures are the out-of-fold ones training chose the map with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlsd_ray.metrics import expected_calibration_error
from mlsd_ray.models.package import read_manifest
from mlsd_ray.predict import Predictor


def calibration_summary(model_dir: Path, frame: pd.DataFrame, p: np.ndarray) -> dict[str, Any]:
    """{method, validation_ece_before/after, test_ece_before/after} for one binary model scored
    on ``frame`` (its ``label`` and inputs) with calibrated probabilities ``p``."""
    report = read_manifest(model_dir).metadata.get("calibration") or {}
    y = frame["label"].to_numpy()
    out: dict[str, Any] = {
        "method": report.get("chosen", "none"),
        "validation_ece_before": report.get("ece_before"),
        "validation_ece_after": report.get("ece_after"),
        "test_ece_after": expected_calibration_error(y, p) if len(y) else None,
    }
    out["test_ece_before"] = out["test_ece_after"]
    if out["method"] != "none" and len(y):
        predictor = Predictor(model_dir)
        raw = predictor.model.predict_proba(predictor.input_frame(frame))[:, 1]
        out["test_ece_before"] = expected_calibration_error(y, raw)
    return out


def report_lines(calibration: dict[str, dict[str, Any]]) -> list[str]:
    if not calibration:
        return []

    def f(v: Any) -> str:
        return "" if v is None else f"{v:.4f}"

    lines = [
        "",
        "## Calibration",
        "",
        "Expected calibration error (10 bins) before and after the map chosen on validation "
        "(validation figures out of fold).",
        "",
        "| model | map | val ECE before | val ECE after | test ECE before | test ECE after |",
        "|---|---|---|---|---|---|",
    ]
    for name, c in calibration.items():
        lines.append(
            f"| {name} | {c['method']} | {f(c['validation_ece_before'])} | "
            f"{f(c['validation_ece_after'])} | {f(c['test_ece_before'])} | "
            f"{f(c['test_ece_after'])} |"
        )
    return lines
