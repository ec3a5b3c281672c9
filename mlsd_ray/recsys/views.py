"""Feature views: user and item features computed from the interactions up to a point in time.

Each view returns one row per entity with ``event_timestamp`` = the snapshot time, so snapshots
taken at several times form the offline store that ``features.py`` joins point-in-time and
materialises to Redis. The ranker reads these same columns offline (training) and online
(serving), so the two cannot drift apart.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlsd_ray.recsys.data import ITEM, RATING, TS, USER

EVENT_TS = "event_timestamp"
DAY_S = 86400.0
USER_FEATURES = (
    "u_count",
    "u_mean_rating",
    "u_days_since_last",
    "u_age",
    "u_gender",
    "u_occupation",
)
ITEM_FEATURES = (
    "i_count",
    "i_recent_1d",
    "i_recent_7d",
    "i_recent_30d",
    "i_mean_rating",
    "i_days_since_first",
    "i_year",
)
#: What a missing entity gets online (and offline, where a user or item has no snapshot yet).
DEFAULTS: dict[str, float] = {
    **{f: 0.0 for f in USER_FEATURES},
    **{f: 0.0 for f in ITEM_FEATURES},
    "u_mean_rating": 3.5,
    "i_mean_rating": 3.5,
    "u_days_since_last": 365.0,
    "i_days_since_first": 365.0,
    "u_age": -1.0,
    "u_gender": -1.0,
    "u_occupation": -1.0,
    "i_year": -1.0,
}


def _codes(values: pd.Series) -> pd.Series:
    """Stable integer codes of a categorical column (sorted vocabulary), -1 when missing."""
    vocab = {v: float(i) for i, v in enumerate(sorted(set(values.dropna().astype(str))))}
    return values.astype(str).map(vocab).fillna(-1.0)


def user_view(history: pd.DataFrame, users: pd.DataFrame, now: float) -> pd.DataFrame:
    """Per user, from interactions strictly before ``now``: count, mean rating, days since the
    last one; and demographics (age, gender, occupation codes) for every known user."""
    past = history[history[TS] < now]
    agg = past.groupby(USER).agg(
        u_count=(ITEM, "size"), u_mean_rating=(RATING, "mean"), last=(TS, "max")
    )
    agg["u_days_since_last"] = (now - agg.pop("last")) / DAY_S
    demo = pd.DataFrame({USER: users[USER].astype(str)}) if USER in users else pd.DataFrame()
    if len(demo):
        demo["u_age"] = pd.to_numeric(users["age"], errors="coerce").fillna(-1.0).to_numpy()
        demo["u_gender"] = _codes(users["gender"]).to_numpy()
        demo["u_occupation"] = _codes(users["occupation"]).to_numpy()
        out = demo.merge(agg.reset_index(), on=USER, how="outer")
    else:
        out = agg.reset_index()
    out = _fill(out, USER_FEATURES)
    out[EVENT_TS] = float(now)
    return out[[USER, EVENT_TS, *USER_FEATURES]]


def item_view(history: pd.DataFrame, items: pd.DataFrame, now: float) -> pd.DataFrame:
    """Per item, from interactions strictly before ``now``: its share (per mille) of all
    interactions, of those decayed with a 1, 7 and 30 day half-life, mean rating, days since its
    first interaction; its release year."""
    past = history[history[TS] < now]
    age_days = (now - past[TS].to_numpy()) / DAY_S
    frame = pd.DataFrame(
        {
            ITEM: past[ITEM].to_numpy(),
            "w1": np.power(0.5, age_days / 1.0),
            "w7": np.power(0.5, age_days / 7.0),
            "w30": np.power(0.5, age_days / 30.0),
            RATING: past[RATING].to_numpy(),
            TS: past[TS].to_numpy(),
        }
    )
    agg = frame.groupby(ITEM).agg(
        i_count=(RATING, "size"),
        i_recent_1d=("w1", "sum"),
        i_recent_7d=("w7", "sum"),
        i_recent_30d=("w30", "sum"),
        i_mean_rating=(RATING, "mean"),
        first=(TS, "min"),
    )
    agg["i_days_since_first"] = (now - agg.pop("first")) / DAY_S
    # Shares, not raw counts: windows differ in traffic, and a ranker trained on one window's
    # counts would misread the next one's.
    for col in ("i_count", "i_recent_1d", "i_recent_7d", "i_recent_30d"):
        total = float(agg[col].sum())
        agg[col] = 1000.0 * agg[col] / total if total > 0 else 0.0
    base = pd.DataFrame({ITEM: items[ITEM].astype(str)}) if ITEM in items else pd.DataFrame()
    if len(base):
        base["i_year"] = pd.to_numeric(items.get("release_year"), errors="coerce").fillna(-1.0)
        out = base.merge(agg.reset_index(), on=ITEM, how="outer")
    else:
        out = agg.reset_index()
    out = _fill(out, ITEM_FEATURES)
    out[EVENT_TS] = float(now)
    return out[[ITEM, EVENT_TS, *ITEM_FEATURES]]


def _fill(frame: pd.DataFrame, names: tuple[str, ...]) -> pd.DataFrame:
    for name in names:
        frame[name] = (
            frame[name].astype(np.float64).fillna(DEFAULTS[name])
            if name in frame
            else DEFAULTS[name]
        )
    return frame
