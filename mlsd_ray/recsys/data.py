"""Interactions and side tables for recommendation, and the time split.

MovieLens-100k ships inside the installed RecBole package (``package://`` URIs, read in place).
Its headers are typed (``user_id:token``); :func:`read_atomic` strips the types. Ids are kept as
strings everywhere in ``recsys`` so a request's ``"196"`` and a file's ``196`` are the same user.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlsd_ray.errors import DataError
from mlsd_ray.package_uri import is_package_uri, package_path

USER, ITEM, RATING, TS = "user_id", "item_id", "rating", "timestamp"
ML100K = "package://recbole/dataset_example/ml-100k/ml-100k"


def read_atomic(uri: str) -> pd.DataFrame:
    """A RecBole atomic file (tab-separated, ``name:type`` headers) as a frame with plain names;
    ``token`` columns stay strings."""
    path = package_path(uri) if is_package_uri(uri) else uri
    raw = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    names = {c: c.split(":", 1)[0] for c in raw.columns}
    frame = raw.rename(columns=names)
    for col, typ in ((c.split(":", 1)[0], c.partition(":")[2]) for c in raw.columns):
        if typ == "float":
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame


@dataclass
class RecData:
    """Interactions (user_id, item_id, rating, timestamp) plus optional user and item tables."""

    interactions: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame

    @property
    def item_ids(self) -> np.ndarray:
        """The catalogue: every item of the item table or of the interactions, sorted."""
        listed = set(self.items[ITEM]) if ITEM in self.items else set()
        ids = listed | set(self.interactions[ITEM])
        return np.array(sorted(ids, key=_id_key), dtype=object)


def _id_key(value: str) -> tuple[int, str]:
    return (0, f"{int(value):012d}") if str(value).isdigit() else (1, str(value))


def normalise_interactions(frame: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in (USER, ITEM, TS) if c not in frame.columns]
    if missing:
        raise DataError(
            f"interactions lack column(s) {missing} (have {list(frame.columns)}).",
            fix="rename the source's columns to user_id, item_id, timestamp (and rating)",
        )
    out = frame.copy()
    out[USER] = out[USER].astype(str)
    out[ITEM] = out[ITEM].astype(str)
    out[TS] = _seconds(out[TS])
    out[RATING] = pd.to_numeric(out[RATING]) if RATING in out else 1.0
    return out.sort_values([TS, USER, ITEM], kind="stable").reset_index(drop=True)


def _seconds(values: pd.Series) -> pd.Series:
    """Timestamps as float seconds: numbers as they are, date-time strings (the Open Bandit
    log's ISO times) as seconds since the epoch, UTC."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all():
        return numeric.astype(np.float64)
    try:
        when = pd.to_datetime(values, utc=True)
    except (ValueError, TypeError) as exc:
        raise DataError(
            f"interactions: timestamp values are neither numbers nor date-times ({exc}).",
            fix="give the timestamp column as epoch seconds or ISO 8601 date-times",
        ) from exc
    return (when - pd.Timestamp(0, tz="UTC")).dt.total_seconds().astype(np.float64)


def load_movielens(base: str = ML100K) -> RecData:
    """MovieLens-100k from ``base`` + ``.inter`` / ``.user`` / ``.item``."""
    inter = normalise_interactions(read_atomic(base + ".inter"))
    users = read_atomic(base + ".user")
    items = read_atomic(base + ".item")
    return RecData(inter, users, items)


def time_split(
    interactions: pd.DataFrame, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Train on the past, validate on the next slice of time, test on the latest one. The cuts
    are at quantiles of the timestamp, so no later interaction is ever in an earlier split."""
    train_f, val_f, _ = fractions
    ts = interactions[TS].to_numpy()
    cut_val, cut_test = np.quantile(ts, [train_f, train_f + val_f])
    train = interactions[ts < cut_val]
    val = interactions[(ts >= cut_val) & (ts < cut_test)]
    test = interactions[ts >= cut_test]
    return train.reset_index(drop=True), val.reset_index(drop=True), test.reset_index(drop=True)


def relevant_items(frame: pd.DataFrame, min_rating: float | None = None) -> dict[str, set[str]]:
    """user -> the items they interacted with in ``frame`` (rated at least ``min_rating``)."""
    if min_rating is not None:
        frame = frame[frame[RATING] >= min_rating]
    return {u: set(g) for u, g in frame.groupby(USER, sort=False)[ITEM]}


def seen_items(frame: pd.DataFrame) -> dict[str, set[str]]:
    """user -> every item they interacted with (to filter out of recommendations)."""
    return relevant_items(frame)
