"""Trivially separable toy posts shared by the training tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

HARMFUL = ["i hate you", "you are awful", "go away idiot", "stupid person", "i will hurt you"]
BENIGN = ["have a nice day", "lovely weather", "thanks for the help", "great game", "see you soon"]


def toy_split(n: int, seed: int) -> pd.DataFrame:
    """Posts as ETL writes them: the card's text input plus an int64 ``label``."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(np.int64)
    texts = [f"{(HARMFUL if c else BENIGN)[rng.integers(5)]} {rng.integers(100)}" for c in y]
    return pd.DataFrame({"text": texts, "label": y})
