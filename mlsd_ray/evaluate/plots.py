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
