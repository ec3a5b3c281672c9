"""Small model packages and registry versions for the Serve integration tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mlsd_ray.models.package import InputSchema, ModelManifest, save_package
from mlsd_ray.models.simple import TfidfLogReg

OK_WORDS = ["thanks", "lovely", "photo", "great", "game", "tonight", "nice", "day", "friends"]
BAD_WORDS = ["idiot", "stupid", "trash", "loser", "hate", "shut", "up", "ugly", "moron"]


def posts(rng: np.random.Generator, words: list[str], n: int) -> list[str]:
    return [" ".join(rng.choice(words, size=rng.integers(3, 9))) for _ in range(n)]


def toy_posts(seed: int = 0, n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "text": posts(rng, OK_WORDS, n) + posts(rng, BAD_WORDS, n),
            "label": [0] * n + [1] * n,
        }
    )


def tfidf_package(path: Path, seed: int = 0, name: str = "tfidf_logreg", c: float = 1.0) -> Path:
    """A tiny TF-IDF + logistic regression package (binary, one text input)."""
    train = toy_posts(seed)
    model = TfidfLogReg(["text"], min_df=1, C=c).fit(train[["text"]], train["label"].to_numpy())
    return save_package(
        model,
        path,
        ModelManifest(
            name=name,
            kind="tfidf_logreg",
            category="binary",
            inputs=[InputSchema(name="text", type="text")],
            classes=["ok", "harmful"],
            params=model.params,
            metadata={"version": f"{name}-{seed}"},
        ),
    )


def blend_package(
    path: Path,
    members: dict[str, Path],
    method: str = "stacking",
    threshold: float = 0.5,
    version: str = "blend-1",
) -> Path:
    """A real blend over member packages: its combiner fitted on held-out posts (as the training
    stage fits it on validation), saved with the package writer the stage uses."""
    from mlsd_ray.models.blend import Blend

    held_out = toy_posts(seed=2, n=80)
    names = list(members)
    model = Blend(["text"], members=names, method=method, folds=2).with_members(members)
    model.fit(held_out[["text"]], held_out["label"].to_numpy())
    return save_package(
        model,
        path,
        ModelManifest(
            name="blend",
            kind="blend",
            category="binary",
            inputs=[InputSchema(name="text", type="text")],
            classes=["ok", "harmful"],
            threshold=threshold,
            params=model.params,
            metadata={"version": version},
        ),
    )
