"""Two-tower (in-process), FAISS index and the lambdarank ranker on small data (no Ray)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from mlsd_ray.recsys.data import normalise_interactions
from mlsd_ray.recsys.index import ItemIndex
from mlsd_ray.recsys.ranker import LABEL, LambdaRanker
from mlsd_ray.recsys.train import TwoTowerRecommender, train_two_tower
from mlsd_ray.recsys.two_tower import TwoTowerModel


def _clustered(n_users: int = 60, seed: int = 0) -> pd.DataFrame:
    """Two taste groups: even users watch items a0..a9, odd users b0..b9."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        group = "a" if u % 2 == 0 else "b"
        for j in rng.choice(10, size=6, replace=False):
            rows.append((f"u{u}", f"{group}{j}", float(len(rows))))
    return normalise_interactions(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]))


def test_faiss_flat_index_equals_brute_force_and_round_trips(tmp_path) -> None:
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    ids = [f"i{j}" for j in range(50)]
    queries = rng.normal(size=(5, 8)).astype(np.float32)
    index = ItemIndex.build(vectors, ids)
    found, scores = index.search(queries, 7)
    brute = np.argsort(-(queries @ vectors.T), axis=1)[:, :7]
    assert found == [[ids[j] for j in row] for row in brute]
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first
    index.save(tmp_path)
    again, _ = ItemIndex.load(tmp_path).search(queries, 7)
    assert again == found
    hnsw, _ = ItemIndex.build(vectors, ids, kind="hnsw").search(queries, 1)
    assert sum(h[0] == f[0] for h, f in zip(hnsw, found, strict=True)) >= 4


def test_two_tower_learns_tastes_and_reloads(tmp_path) -> None:
    torch.set_num_threads(1)
    train = _clustered()
    items = sorted(set(train["item_id"]))
    params = {"num_workers": 0, "epochs": 30, "batch_size": 32, "dim": 8, "hidden": 16}
    model = train_two_tower(train, items, pd.DataFrame(), pd.DataFrame(), params)
    rec = TwoTowerRecommender(model)
    lists, _ = rec.recommend(["u0", "u1"], 5)
    assert sum(i.startswith("a") for i in lists[0]) >= 4  # even user: group a
    assert sum(i.startswith("b") for i in lists[1]) >= 4
    seen = {"u0": set(lists[0])}
    filtered, _ = rec.recommend(["u0"], 5, seen)
    assert not set(filtered[0]) & seen["u0"]
    model.save(tmp_path)
    again = TwoTowerModel.load(tmp_path)
    assert np.allclose(again.user_vectors(["u0"]), model.user_vectors(["u0"]), atol=1e-6)


def test_lambdarank_orders_by_the_informative_feature(tmp_path) -> None:
    rng = np.random.default_rng(0)
    n_users, per = 80, 20
    signal = rng.normal(size=n_users * per)
    frame = pd.DataFrame(
        {
            "user_id": np.repeat([f"u{u}" for u in range(n_users)], per),
            "item_id": [f"i{j}" for j in range(n_users * per)],
            "signal": signal,
            "noise": rng.normal(size=n_users * per),
        }
    )
    frame[LABEL] = (signal + 0.3 * rng.normal(size=len(signal)) > 1.0).astype(int)
    ranker = LambdaRanker(["signal", "noise"], rounds=50, min_data_in_leaf=5).fit(frame)
    scores = ranker.predict(frame)
    assert spearmanr(scores, frame["signal"]).statistic > 0.8
    ranker.save(tmp_path)
    assert np.allclose(LambdaRanker.load(tmp_path).predict(frame), scores)
    users, items, _ = ranker.rank(frame, 3)
    hits = 0
    for user in users:
        mine = frame[frame.user_id == user]
        hits += mine.loc[mine["signal"].idxmax(), "item_id"] in items[user]
    assert hits >= 0.8 * n_users  # the user's best item is in its top 3
