"""Recommenders that score the whole catalogue for a user: popular, recently popular, matrix
factorisation (PureSVD) and item-to-item cosine.

Every recommender has ``items`` (the catalogue, fixed at construction), ``fit(train, now)`` and
``score(users) -> (n_users, n_items)``; :meth:`Recommender.recommend` masks what each user has
seen and returns the top k. Unknown users get the history-free scores, and every score carries a
tiny popularity term so that ties (a cold user under MF) fall back to popular items, not to
catalogue order. The catalogues here are small (thousands of items): dense scores are simpler and
faster than an index; the two-tower model uses FAISS instead (``index.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.linalg import svds

from mlsd_ray.errors import ModelError
from mlsd_ray.recsys.data import ITEM, TS, USER

TIE_BREAK = 1e-6
DAY_S = 86400.0


class Recommender:
    name = "base"

    def __init__(self, items: Sequence[str]) -> None:
        self.items = np.asarray(items, dtype=object)
        self.item_index = {str(item): i for i, item in enumerate(self.items)}
        self.popularity = np.zeros(len(self.items))
        self.user_index: dict[str, int] = {}

    # -- shared helpers ------------------------------------------------------------------
    def _counts(self, train: pd.DataFrame, weights: np.ndarray | None = None) -> np.ndarray:
        idx = train[ITEM].map(self.item_index).to_numpy()
        known = ~pd.isna(idx)
        return np.bincount(
            idx[known].astype(np.int64),
            weights=None if weights is None else weights[known],
            minlength=len(self.items),
        ).astype(np.float64)

    def _matrix(self, train: pd.DataFrame) -> sparse.csr_matrix:
        """Binary user x item matrix of ``train`` (users in first-seen order)."""
        users = pd.unique(train[USER])
        self.user_index = {u: i for i, u in enumerate(users)}
        rows = train[USER].map(self.user_index).to_numpy()
        cols = train[ITEM].map(self.item_index).to_numpy()
        keep = ~pd.isna(cols)
        m = sparse.csr_matrix(
            (np.ones(keep.sum()), (rows[keep].astype(int), cols[keep].astype(int))),
            shape=(len(users), len(self.items)),
        )
        m.data[:] = 1.0  # duplicates summed by the constructor
        return m

    def fit(self, train: pd.DataFrame, now: float | None = None) -> Recommender:
        self.popularity = self._counts(train)
        return self

    def score(self, users: Sequence[str]) -> np.ndarray:
        return np.tile(self.popularity, (len(users), 1))

    def _prior(self) -> np.ndarray:
        top = self.popularity.max()
        return TIE_BREAK * self.popularity / top if top > 0 else np.zeros(len(self.items))

    # -- top k -----------------------------------------------------------------------------
    def recommend(
        self, users: Sequence[str], k: int, seen: Mapping[str, set[str]] | None = None
    ) -> tuple[list[list[str]], np.ndarray]:
        """The top-k unseen items for each user, best first, and their scores."""
        scores = self.score(users).astype(np.float64)
        if seen:
            for row, user in enumerate(users):
                cols = [self.item_index[i] for i in seen.get(user, ()) if i in self.item_index]
                scores[row, cols] = -np.inf
        return top_k(self.items, scores, k)


def top_k(items: np.ndarray, scores: np.ndarray, k: int) -> tuple[list[list[str]], np.ndarray]:
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(part, np.argsort(-np.take_along_axis(scores, part, 1), 1), 1)
    top_scores = np.take_along_axis(scores, order, 1)
    return [list(items[row]) for row in order], top_scores


class Popular(Recommender):
    """Most interactions in the training window."""

    name = "popular"


class RecentPopular(Recommender):
    """Interactions weighted by recency: a weight that halves every ``half_life_days`` before
    ``now`` (the end of the training window)."""

    name = "recent_popular"

    def __init__(self, items: Sequence[str], half_life_days: float = 7.0) -> None:
        super().__init__(items)
        self.half_life_days = half_life_days

    def fit(self, train: pd.DataFrame, now: float | None = None) -> Recommender:
        counts = self._counts(train)
        now = float(train[TS].max()) if now is None else now
        age_days = (now - train[TS].to_numpy()) / DAY_S
        recent = self._counts(train, np.power(0.5, age_days / self.half_life_days))
        self.popularity = recent + TIE_BREAK * counts
        return self


class PureSVD(Recommender):
    """Matrix factorisation: truncated SVD of the binary user x item matrix (PureSVD,
    Cremonesi et al. 2010). A user's scores are their row projected on the item factors, so a
    user's latest history counts even when it came after the fit (``extra`` in :meth:`score`)."""

    name = "mf"

    def __init__(self, items: Sequence[str], factors: int = 64) -> None:
        super().__init__(items)
        self.factors = factors
        self.item_factors = np.zeros((len(self.items), 0))
        self.history: sparse.csr_matrix | None = None

    def fit(self, train: pd.DataFrame, now: float | None = None) -> Recommender:
        super().fit(train)
        self.history = self._matrix(train)
        k = min(self.factors, min(self.history.shape) - 1)
        if k < 1:
            raise ModelError("mf: too few users or items to factorise.", fix="use more data")
        _, _, vt = svds(self.history.astype(np.float64), k=k, random_state=0)
        self.item_factors = vt.T  # (items, k)
        return self

    def _rows(self, users: Sequence[str]) -> sparse.csr_matrix:
        assert self.history is not None
        idx = [self.user_index.get(u, -1) for u in users]
        out = sparse.lil_matrix((len(users), len(self.items)))
        for row, i in enumerate(idx):
            if i >= 0:
                out[row] = self.history[i]
        return out.tocsr()

    def score(self, users: Sequence[str]) -> np.ndarray:
        rows = self._rows(users)
        return np.asarray(rows @ self.item_factors @ self.item_factors.T) + self._prior()


class ItemToItem(PureSVD):
    """Item-to-item cosine similarity: a user's score for an item is the summed similarity of
    the item to the items in their history."""

    name = "item2item"

    def fit(self, train: pd.DataFrame, now: float | None = None) -> Recommender:
        Recommender.fit(self, train)
        self.history = self._matrix(train)
        norms = np.sqrt(np.asarray(self.history.sum(axis=0))).ravel()
        norms[norms == 0] = 1.0
        scaled = self.history @ sparse.diags(1.0 / norms)
        sim = (scaled.T @ scaled).toarray()
        np.fill_diagonal(sim, 0.0)
        self.similarity = sim
        return self

    def score(self, users: Sequence[str]) -> np.ndarray:
        return np.asarray(self._rows(users) @ self.similarity) + self._prior()
