"""The served recommender as one folder, and what the online store must hold for it.

    bundle/two_tower/      TwoTowerModel (safetensors + JSON)
    bundle/index/          FAISS index of the item vectors
    bundle/ranker/         LightGBM text model + feature list
    bundle/mf_item_factors.npy, bundle/i2i_similarity.npy   scores the ranker uses as features
    bundle/genres.npy      item x genre matrix (the genre-affinity pair feature)
    bundle/bundle.json     catalogue, recent-popular list, retrieval sizes, views, version

No pickle: numpy arrays load with ``allow_pickle=False``. :func:`publish_online` materialises the
user and item views as of ``now`` into Redis (Ray tasks), and each user's seen items.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlsd_ray.recsys.baselines import ItemToItem, PureSVD, Recommender
from mlsd_ray.recsys.data import RecData, seen_items
from mlsd_ray.recsys.features import FeatureView, OnlineStore, materialize
from mlsd_ray.recsys.index import ItemIndex
from mlsd_ray.recsys.pair_features import genre_matrix
from mlsd_ray.recsys.ranker import LambdaRanker
from mlsd_ray.recsys.train import TwoTowerRecommender
from mlsd_ray.recsys.two_stage import TwoStageConfig
from mlsd_ray.recsys.two_tower import TwoTowerModel
from mlsd_ray.recsys.views import ITEM_FEATURES, USER_FEATURES, item_view, user_view

USER_VIEW = FeatureView(name="user", entity="user_id", features=list(USER_FEATURES))
ITEM_VIEW = FeatureView(name="item", entity="item_id", features=list(ITEM_FEATURES))
SEEN, POPULAR = "seen", "popular"


@dataclass
class Bundle:
    model: TwoTowerModel
    index: ItemIndex
    ranker: LambdaRanker
    mf_factors: np.ndarray
    i2i: np.ndarray
    meta: dict[str, Any]
    genres: np.ndarray

    @property
    def items(self) -> list[str]:
        return list(self.meta["items"])


def save_bundle(
    folder: str | Path,
    retrievers: dict[str, Recommender],
    ranker: LambdaRanker,
    cfg: TwoStageConfig,
    version: str,
    items: pd.DataFrame | None = None,
) -> Path:
    """Write the bundle; ``items`` (the item table) gives the genres of the affinity feature."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    tt = retrievers["two_tower"]
    assert isinstance(tt, TwoTowerRecommender)
    mf, i2i = retrievers["mf"], retrievers["item2item"]
    assert isinstance(mf, PureSVD) and isinstance(i2i, ItemToItem)
    tt.model.save(out / "two_tower")
    tt.index.save(out / "index")
    ranker.save(out / "ranker")
    np.save(out / "mf_item_factors.npy", mf.item_factors.astype(np.float32))
    np.save(out / "i2i_similarity.npy", i2i.similarity.astype(np.float32))
    genres = genre_matrix(pd.DataFrame() if items is None else items, [str(i) for i in tt.items])
    np.save(out / "genres.npy", genres.astype(np.float32))
    recent = retrievers["recent_popular"]
    order = np.argsort(-recent.popularity, kind="stable")
    meta = {
        "version": version,
        "items": [str(i) for i in tt.items],
        "recent_popular": [str(recent.items[j]) for j in order[:500]],
        "retrieve": cfg.retrieve,
        "filter_seen": cfg.filter_seen,
        "prior": list(map(float, mf._prior())),
    }
    (out / "bundle.json").write_text(json.dumps(meta))
    return out


def load_bundle(folder: str | Path) -> Bundle:
    src = Path(folder)
    return Bundle(
        model=TwoTowerModel.load(src / "two_tower"),
        index=ItemIndex.load(src / "index"),
        ranker=LambdaRanker.load(src / "ranker"),
        mf_factors=np.load(src / "mf_item_factors.npy", allow_pickle=False),
        i2i=np.load(src / "i2i_similarity.npy", allow_pickle=False),
        meta=json.loads((src / "bundle.json").read_text()),
        genres=np.load(src / "genres.npy", allow_pickle=False),
    )


def history_scores(bundle: Bundle, seen: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """MF and item-to-item scores of every item for a user who has seen ``seen``: the same
    formulas as ``PureSVD.score`` / ``ItemToItem.score`` on a fresh history row."""
    col = {item: j for j, item in enumerate(bundle.meta["items"])}
    row = np.zeros(len(col), dtype=np.float32)
    row[[col[i] for i in seen if i in col]] = 1.0
    prior = np.asarray(bundle.meta["prior"])
    mf = (row @ bundle.mf_factors) @ bundle.mf_factors.T + prior
    i2i = row @ bundle.i2i + prior
    return mf, i2i


def publish_online(
    history: pd.DataFrame, data: RecData, now: float, url: str, prefix: str
) -> dict[str, Any]:
    """Materialise the views as of ``now`` and every user's seen list into Redis."""
    users = user_view(history, data.users, now)
    items = item_view(history, data.items, now)
    out: dict[str, Any] = {
        "user": materialize(users, USER_VIEW, now, url, prefix),
        "item": materialize(items, ITEM_VIEW, now, url, prefix),
    }
    store = OnlineStore(url, prefix, timeout_s=5.0)
    seen = seen_items(history[history["timestamp"] < now])
    pipe = store.client.pipeline(transaction=False)
    for user, got in seen.items():
        key = f"{prefix}:{SEEN}:{user}"
        pipe.delete(key)
        pipe.rpush(key, *sorted(got))
    pipe.execute()
    out["seen_users"] = len(seen)
    return out
