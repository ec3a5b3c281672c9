"""ROC curve and confusion-matrix PNGs (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")  # headless: servers and CI have no display
    import matplotlib.pyplot as plt

    return plt


def roc_plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str) -> Path:
    """``curves``: model name -> (y_true, p_positive). One ROC curve per model."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (y, p) in curves.items():
        if len(np.unique(y)) < 2:
            continue
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, p):.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def confusion_plot(matrix: list[list[int]], classes: list[str], path: Path, title: str) -> Path:
    plt = _plt()
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(
            j, i, str(v), ha="center", va="center", color="black" if v < m.max() / 2 else "white"
        )
    ax.set_xticks(range(len(classes)), [f"pred {c}" for c in classes])
    ax.set_yticks(range(len(classes)), [f"true {c}" for c in classes])
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _save(fig, ax, path: Path, title: str):  # type: ignore[no-untyped-def]
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def pr_plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str) -> Path:
    """Precision-recall curve per model."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (y, p) in curves.items():
        if len(np.unique(y)) < 2:
            continue
        precision, recall, _ = precision_recall_curve(y, p)
        ap = average_precision_score(y, p)
        ax.step(recall, precision, where="post", label=f"{name} (AP {ap:.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower left", fontsize=8)
    return _save(fig, ax, path, title)


def calibration_plot(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str, bins: int = 10
) -> Path:
    """Reliability diagram: observed positive rate per predicted-probability bin."""
    from sklearn.calibration import calibration_curve

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (y, p) in curves.items():
        if len(np.unique(y)) < 2:
            continue
        frac, mean = calibration_curve(y, p, n_bins=bins, strategy="uniform")
        ax.plot(mean, frac, "o-", label=name)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfectly calibrated")
    ax.set(xlabel="mean predicted probability", ylabel="observed positive rate")
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, ax, path, title)


def threshold_plot(y: np.ndarray, p: np.ndarray, chosen: float, path: Path, title: str) -> Path:
    """Precision, recall and F1 against the threshold, with the chosen threshold marked."""
    from mlsd_ray.evaluate.threshold import threshold_curve

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    if len(np.unique(y)) == 2:
        c = threshold_curve(y, p)
        for key in ("precision", "recall", "f1"):
            ax.plot(c["threshold"], c[key], label=key)
    ax.axvline(chosen, color="k", ls="--", lw=0.8, label=f"chosen {chosen:.3f}")
    ax.set(xlabel="threshold", ylabel="value", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower left", fontsize=8)
    return _save(fig, ax, path, title)


def quality_latency_plot(
    points: dict[str, tuple[float, float]],
    path: Path,
    title: str,
    metric: str,
    budget_ms: float | None = None,
) -> Path:
    """Each model as a point (p99 latency, quality); the latency budget as a vertical line."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, (latency, quality) in points.items():
        ax.scatter([latency], [quality])
        ax.annotate(name, (latency, quality), textcoords="offset points", xytext=(4, 4))
    if budget_ms is not None:
        ax.axvline(budget_ms, color="r", ls="--", lw=0.8, label=f"p99 budget {budget_ms:g} ms")
        ax.legend(loc="lower right", fontsize=8)
    ax.set(xlabel="single-replica p99 latency (ms)", ylabel=metric)
    ax.set_xscale("log")
    return _save(fig, ax, path, title)
