"""The two-tower model trained through Ray Train's TorchTrainer on the shared local Ray."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsd_ray.recsys.data import normalise_interactions
from mlsd_ray.recsys.train import train_two_tower

pytestmark = pytest.mark.integration


def test_two_tower_trains_with_ray_train(ray_cluster, tmp_path) -> None:
    rows = [(f"u{u}", f"i{(u + j) % 12}", float(u * 10 + j)) for u in range(30) for j in range(4)]
    train = normalise_interactions(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]))
    items = sorted(set(train["item_id"]))
    params = {"num_workers": 1, "epochs": 2, "batch_size": 16, "dim": 4, "hidden": 8}
    model = train_two_tower(
        train, items, pd.DataFrame(), pd.DataFrame(), params, str(tmp_path), "tt_test"
    )
    vectors = model.item_vectors()
    assert vectors.shape == (12, 4)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # The weights came back from the Ray Train checkpoint: not the initial random ones.
    fresh = train_two_tower(
        train, items, pd.DataFrame(), pd.DataFrame(), {**params, "epochs": 0, "num_workers": 0}
    )
    assert not np.allclose(fresh.item_vectors(), vectors)
