"""Every picture mlsd-ray draws, in one module (matplotlib on the Agg backend, headless).

The stages call these with plain arrays and dicts; this module imports nothing else of
mlsd_ray, so any layer (data, train, evaluate, monitor, serve) may use it without importing
upward. `pyplot()` is the one place the backend is chosen.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np


def pyplot():  # type: ignore[no-untyped-def]
    """``matplotlib.pyplot`` on the Agg backend (imported on first use: importing this
    module stays cheap)."""
    import matplotlib

    matplotlib.use("Agg", force=True)  # headless: servers and CI have no display
    import matplotlib.pyplot as plt

    return plt


def roc_plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str) -> Path:
    """``curves``: model name -> (y_true, p_positive). One ROC curve per model."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = pyplot()
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
    plt = pyplot()
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
    pyplot().close(fig)
    return path


def pr_plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str) -> Path:
    """Precision-recall curve per model."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    plt = pyplot()
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

    plt = pyplot()
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


def threshold_plot(
    curve: dict[str, np.ndarray] | None, chosen: float, path: Path, title: str
) -> Path:
    """Precision, recall and F1 against the threshold (``curve`` from
    ``evaluate.threshold.threshold_curve``; None when there is a single class), with the chosen
    threshold marked."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    if curve is not None:
        c = curve
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
    plt = pyplot()
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


def regression_plots(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], out_dir: Path, title: str
) -> list[Path]:
    """``curves``: model name -> (y_true, y_pred). Writes ``predicted.png`` (predicted vs
    actual, the diagonal is perfect) and ``residuals.png`` (histogram of y_pred - y_true)."""
    plt = pyplot()
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


def plot_curve(history: list[dict[str, Any]], path: Path, title: str) -> Path:
    plt = pyplot()
    epochs = [r["epoch"] for r in history]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(epochs, [r["train_loss"] for r in history], "o-", label="training loss")
    val = [(r["epoch"], r["val_loss"]) for r in history if r.get("val_loss") is not None]
    if val:
        ax.plot(*zip(*val, strict=True), "s-", label="validation loss")
        best = min(val, key=lambda ev: ev[1])
        ax.axvline(best[0], color="grey", ls="--", lw=0.8, label=f"best epoch {best[0]}")
    ax.set(xlabel="epoch", ylabel="loss", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_column(name: str, stats: dict[str, Any], path: Path) -> Path | None:
    """One PNG for one column; None when there is nothing to draw."""
    plt = pyplot()
    kind = stats["kind"]
    hist = stats.get("length", {}).get("histogram") if kind == "text" else stats.get("histogram")
    top = stats.get("top") if kind == "category" else None
    if not hist and not top:
        return None
    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    try:
        if hist:
            edges, counts = hist["edges"], hist["counts"]
            widths = [b - a for a, b in itertools.pairwise(edges)]
            ax.bar(edges[:-1], counts, width=widths, align="edge", color="#4C72B0")
            ax.set_xlabel("characters" if kind == "text" else name)
            ax.set_ylabel("rows" + ("" if stats.get("exact", True) else " (from a sample)"))
        else:
            labels = [str(k)[:20] for k, _ in top or []]
            ax.barh(labels[::-1], [v for _, v in top or []][::-1], color="#DD8452")
            ax.set_xlabel("rows")
        title = f"{name} ({kind})" + (": length" if kind == "text" else "")
        ax.set_title(title)
        fig.tight_layout()
        fig.savefig(path, dpi=80)
    finally:
        plt.close(fig)
    return path


def plot_feature(name: str, entry: dict[str, Any], path: Path) -> Path:
    """Grouped bars of reference and current shares per bucket, titled with PSI and status."""
    plt = pyplot()
    buckets = entry["buckets"]
    labels = buckets["labels"]
    x = np.arange(len(labels))
    width = 0.42
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(labels) + 2), 4.0))
    try:
        ax.bar(
            x - width / 2, buckets["reference"], width, label="reference (train)", color="#4C72B0"
        )
        ax.bar(x + width / 2, buckets["current"], width, label="current (served)", color="#DD8452")
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=45 if len(labels) > 4 else 0, ha="right", fontsize=8)
        ax.set_ylabel("share of rows")
        title = f"{name}: PSI {entry['psi']:.3f}"
        if entry.get("ks_pvalue") is not None:
            title += f", KS p {entry['ks_pvalue']:.2g}"
        ax.set_title(f"{title} ({entry['status']})")
        ax.legend()
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path
