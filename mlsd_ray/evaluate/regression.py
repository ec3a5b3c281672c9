"""Regression plots: predicted against actual, and the residuals, one PNG each."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlsd_ray.evaluate.plots import _plt


def regression_plots(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], out_dir: Path, title: str
) -> list[Path]:
    """``curves``: model name -> (y_true, y_pred). Writes ``predicted.png`` (predicted vs
    actual, the diagonal is perfect) and ``residuals.png`` (histogram of y_pred - y_true)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    lo = min(float(np.min(y)) for y, _ in curves.values())
    hi = max(float(np.max(y)) for y, _ in curves.values())
    rng = np.random.default_rng(0)
    for name, (y, p) in curves.items():
        pick = rng.permutation(len(y))[:2000]  # a readable sample of points
        ax.scatter(y[pick], p[pick], s=6, alpha=0.4, label=name)
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="perfect")
    ax.set(xlabel="actual", ylabel="predicted", title=f"{title}: predicted vs actual")
    ax.legend(fontsize=8)
    fig.tight_layout()
    predicted = out_dir / "predicted.png"
    fig.savefig(predicted, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, (y, p) in curves.items():
        ax.hist(p - y, bins=40, histtype="step", label=name)
    ax.set(xlabel="predicted - actual", ylabel="rows", title=f"{title}: residuals")
    ax.legend(fontsize=8)
    fig.tight_layout()
    residuals = out_dir / "residuals.png"
    fig.savefig(residuals, dpi=110)
    plt.close(fig)
    return [predicted, residuals]
