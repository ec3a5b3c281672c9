"""Pictures for the drift report: reference vs current share per PSI bucket.

Plotting the PSI buckets (rather than a fresh histogram) shows exactly what the index
compared. matplotlib runs on the Agg backend: no display is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def plot_feature(name: str, entry: dict[str, Any], path: Path) -> Path:
    """Grouped bars of reference and current shares per bucket, titled with PSI and status."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

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
