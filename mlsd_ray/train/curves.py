"""Learning curves: training and validation loss per epoch, a diagnosis, JSON + PNG.

Any model trained by epochs can use it: pass its history (a list of ``{"epoch", "train_loss",
"val_loss"}`` dicts, extra keys ignored) to `diagnose` and `write_curve`. The diagnosis:

* ``overfitting``: the validation loss rose by more than ``rise`` (relative) above its minimum
  while the training loss kept falling, or it ends more than ``gap`` (relative) above the
  training loss;
* ``underfitting``: the training loss stays near the loss of a constant prediction
  (``reference_loss``: class priors or the mean), or barely fell (flat) over the epochs;
* ``good_fit`` otherwise; ``insufficient`` with fewer than two epochs or no validation loss.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlsd_ray import plots

RISE = 0.05  # validation loss this far above its minimum counts as rising
GAP = 0.25  # final validation loss this far above the training loss is a generalisation gap
FLAT = 0.02  # training loss fell less than this (relative) over the run: flat
HIGH = 0.9  # training loss above this share of the constant-prediction loss: high


def diagnose(history: list[dict[str, Any]], reference_loss: float | None = None) -> dict[str, Any]:
    """The verdict and the numbers behind it (see the module docstring)."""
    train = [float(r["train_loss"]) for r in history if r.get("train_loss") is not None]
    val = [float(r["val_loss"]) for r in history if r.get("val_loss") is not None]
    out: dict[str, Any] = {"epochs": len(history), "reference_loss": reference_loss}
    if len(train) < 2 or len(val) != len(train):
        return {**out, "verdict": "insufficient", "detail": "fewer than two validated epochs"}
    best = min(range(len(val)), key=val.__getitem__)
    rise = (val[-1] - val[best]) / max(abs(val[best]), 1e-12)
    gap = (val[-1] - train[-1]) / max(abs(train[-1]), 1e-12)
    fell = (train[0] - train[-1]) / max(abs(train[0]), 1e-12)
    out.update(
        best_epoch=best + 1,
        final_train_loss=train[-1],
        final_val_loss=val[-1],
        min_val_loss=val[best],
        val_rise=rise,
        gap=gap,
        train_loss_fell=fell,
    )
    train_falling = train[-1] < train[best]
    high = reference_loss is not None and train[-1] > HIGH * reference_loss
    if (rise > RISE and train_falling) or gap > GAP:
        why = (
            f"validation loss rose {rise:.0%} above its minimum (epoch {best + 1}) while the "
            f"training loss kept falling"
            if rise > RISE and train_falling
            else f"validation loss ends {gap:.0%} above the training loss"
        )
        return {**out, "verdict": "overfitting", "detail": why + f"; gap {gap:+.1%}"}
    if high or fell < FLAT:
        why = (
            f"training loss {train[-1]:.4f} is near the constant-prediction loss "
            f"{reference_loss:.4f}"
            if high and reference_loss is not None
            else f"training loss fell only {fell:.1%} over {len(train)} epochs (flat)"
        )
        return {**out, "verdict": "underfitting", "detail": why}
    return {
        **out,
        "verdict": "good_fit",
        "detail": f"validation loss lowest at epoch {best + 1} of {len(val)} and within "
        f"{rise:.1%} of it at the end; gap to the training loss {gap:+.1%}",
    }


def write_curve(
    history: list[dict[str, Any]],
    folder: Path,
    name: str,
    reference_loss: float | None = None,
) -> dict[str, Any]:
    """``<name>_learning_curve.json`` (history + diagnosis) and ``.png`` into ``folder``;
    returns the diagnosis with the file paths."""
    folder.mkdir(parents=True, exist_ok=True)
    diagnosis = diagnose(history, reference_loss)
    json_path = folder / f"{name}_learning_curve.json"
    json_path.write_text(json.dumps({"history": history, "diagnosis": diagnosis}, indent=1))
    png = plots.plot_curve(
        history, folder / f"{name}_learning_curve.png", f"{name}: learning curve"
    )
    return {**diagnosis, "json": str(json_path), "png": str(png)}
