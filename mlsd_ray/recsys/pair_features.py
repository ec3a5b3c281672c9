"""Features of a (user, item) pair that neither view holds alone, computed the same way offline
(``two_stage.pair_frame``) and online (``serving.RecIngress._frame``) from one user's candidate
list and seen items:

- ``<retriever>_rank``: the candidate's rank (1 = best) by that retriever's score among the
  user's candidates. Raw scores differ in scale between users; ranks do not.
- ``genre_affinity``: cosine between the genres of the user's seen items and the item's genres.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from mlsd_ray.recsys.data import ITEM, USER

GENRE_COLUMN = "class"
AFFINITY = "genre_affinity"


def rank_desc(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """1 for the highest value, ties in list order (the candidate list's order)."""
    v = np.asarray(values, dtype=np.float64)
    rank = np.empty(len(v))
    rank[np.argsort(-v, kind="stable")] = np.arange(1, len(v) + 1)
    return rank


def add_ranks(frame: pd.DataFrame, scores: Sequence[str]) -> pd.DataFrame:
    """``<name>_rank`` for every ``<name>_score`` column, per user (1 = highest score)."""
    out = frame.copy()
    for col in scores:
        rank = out.groupby(USER, sort=False)[col].transform(rank_desc)
        out[col.removesuffix("_score") + "_rank"] = rank.astype(np.float64)
    return out


def genre_matrix(items: pd.DataFrame, catalogue: Sequence[str]) -> np.ndarray:
    """(catalogue items x genres) 0/1, rows L2-normalised; genres are the space-separated tokens
    of the item table's ``class`` column (MovieLens). No genre column: one zero column."""
    if GENRE_COLUMN not in items or ITEM not in items:
        return np.zeros((len(catalogue), 1), dtype=np.float32)
    tokens = items[GENRE_COLUMN].fillna("").astype(str).str.split()
    by_item = dict(zip(items[ITEM].astype(str), tokens, strict=True))
    vocab = sorted({g for gs in tokens for g in gs}) or ["none"]
    col = {g: j for j, g in enumerate(vocab)}
    out = np.zeros((len(catalogue), len(vocab)), dtype=np.float32)
    for row, item in enumerate(catalogue):
        for g in by_item.get(str(item), []):
            out[row, col[g]] = 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1.0)


def affinity(seen_rows: Sequence[int], cand_rows: Sequence[int], genres: np.ndarray) -> np.ndarray:
    """Cosine of the user's genre profile (sum over seen items) with each candidate's genres."""
    profile = genres[list(seen_rows)].sum(axis=0) if len(seen_rows) else genres[:0].sum(axis=0)
    norm = float(np.linalg.norm(profile))
    if norm == 0:
        return np.zeros(len(cand_rows))
    return np.asarray(genres[list(cand_rows)] @ (profile / norm), dtype=np.float64)


def add_affinity(
    frame: pd.DataFrame,
    seen: Mapping[str, set[str]],
    genres: np.ndarray,
    item_row: Mapping[str, int],
) -> pd.DataFrame:
    """``genre_affinity`` of every (user, item) pair of ``frame``."""
    out = frame.copy()
    values = np.zeros(len(out))
    for user, idx in out.groupby(USER, sort=False).indices.items():
        rows = [item_row[i] for i in seen.get(str(user), ()) if i in item_row]
        cands = [item_row.get(i, 0) for i in out[ITEM].to_numpy()[idx]]
        values[idx] = affinity(rows, cands, genres)
    out[AFFINITY] = values
    return out
