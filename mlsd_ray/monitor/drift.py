"""Drift between the training reference and what the served model sees.

Pure functions over DataFrames and arrays, so every number can be checked by hand:

* numeric inputs: PSI over quantile bins of the reference (``monitoring.bins``) and the
  two-sample Kolmogorov-Smirnov test (scipy) with its p-value;
* category / string / bool inputs: PSI over categories (values never seen in the reference
  share one ``__unseen__`` bucket, so a flood of new values is visible). Only categories the
  current data is expected to hold at least ``MIN_EXPECTED`` times keep a bucket of their own;
  the rest share ``__other__``: rare categories left alone make mostly empty buckets, and PSI
  on empty buckets is sampling noise (80 items in 500 rows: PSI 0.23 with no drift at all);
* text inputs: drift of derived features (character length, word count, share with a URL,
  share with a mention), because raw text has no distribution to compare directly;
* the model's ``probability``: prediction drift, numeric.

Every PSI comes with ``psi_pvalue``, the chance of a PSI at least that large from sampling
noise alone: with shares from n reference and m current rows over k buckets, PSI / (1/n + 1/m)
is approximately chi-square with k - 1 degrees of freedom when nothing drifted (Yurdakul,
"Statistical properties of the population stability index", 2018). The watch windows alert
only when PSI is large *and* unlikely to be noise (``monitor/windows.py``).

Status per feature: ``alert`` if PSI >= psi_alert or KS p < ks_pvalue_alert, ``warn`` if
PSI >= psi_warn, else ``ok``; ``no_data`` when one side has no values to compare.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard, Monitoring

#: Shares are floored at this before the logarithm, so an empty bucket counts as rare, not
#: infinitely surprising.
EPS = 1e-4
MISSING, UNSEEN, OTHER = "__missing__", "__unseen__", "__other__"
#: The chi-square rule of thumb: a bucket is worth comparing when at least this many current
#: rows are expected in it.
MIN_EXPECTED = 5
PROBABILITY = "probability"
STATUS_ORDER = {"no_data": 0, "insufficient_data": 0, "ok": 1, "warn": 2, "alert": 3}
URL_PATTERN = r"(?:https?://|www\.)\S+"
MENTION_PATTERN = r"(?<!\w)@\w+"
TEXT_FEATURES = ("char_length", "word_count", "url_share", "mention_share")


# -- the statistics ---------------------------------------------------------------------
def psi(reference_share: ArrayLike, current_share: ArrayLike, eps: float = EPS) -> float:
    """Population stability index: sum over buckets of (c - r) * ln(c / r)."""
    r = np.clip(np.asarray(reference_share, dtype=float), eps, None)
    c = np.clip(np.asarray(current_share, dtype=float), eps, None)
    if r.shape != c.shape:
        raise ValueError(f"bucket counts differ: {r.shape} vs {c.shape}")
    return float(np.sum((c - r) * np.log(c / r)))


def psi_pvalue(value: float, n_reference: int, n_current: int, buckets: int) -> float | None:
    """P(PSI >= value | no drift): PSI / (1/n + 1/m) ~ chi-square(buckets - 1) under the null."""
    if buckets < 2 or n_reference == 0 or n_current == 0:
        return None
    return float(stats.chi2.sf(value / (1 / n_reference + 1 / n_current), buckets - 1))


def quantile_edges(reference: ArrayLike, bins: int) -> np.ndarray:
    """Inner bin edges: the distinct interior quantiles of the reference.

    Ties (e.g. a count that is mostly 0) merge bins instead of making empty ones.
    """
    values = np.asarray(reference, dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return np.array([])
    return np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))


def bucket_counts(values: ArrayLike, edges: np.ndarray) -> np.ndarray:
    """Non-missing values per right-closed bucket: (-inf, e0], (e0, e1], ..., (ek, inf)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    index = np.searchsorted(edges, values, side="left")
    return np.bincount(index, minlength=len(edges) + 1)


def status_of(psi_value: float | None, ks_pvalue: float | None, monitoring: Monitoring) -> str:
    if psi_value is None:
        return "no_data"
    if psi_value >= monitoring.psi_alert or (
        ks_pvalue is not None and ks_pvalue < monitoring.ks_pvalue_alert
    ):
        return "alert"
    if psi_value >= monitoring.psi_warn:
        return "warn"
    return "ok"


def _floats(values: Sequence[Any] | pd.Series) -> np.ndarray:
    """Numbers as a float array with NaN for missing (nullable dtypes included)."""
    series = pd.to_numeric(pd.Series(values), errors="coerce")
    return series.to_numpy(dtype=float, na_value=np.nan)


def _no_data(kind: str, why: str) -> dict[str, Any]:
    return {"kind": kind, "status": "no_data", "psi": None, "why": why}


def _round(x: float) -> float:
    return round(float(x), 6)


def _summary(values: np.ndarray, missing: int) -> dict[str, Any]:
    n = values.size + missing
    out: dict[str, Any] = {"n": int(n), "missing_share": _round(missing / n) if n else None}
    if values.size:
        out.update(
            mean=_round(values.mean()),
            std=_round(values.std()),
            p50=_round(np.median(values)),
            min=_round(values.min()),
            max=_round(values.max()),
        )
    return out


# -- one feature ------------------------------------------------------------------------
def numeric_drift(
    reference: Sequence[float] | pd.Series,
    current: Sequence[float] | pd.Series,
    monitoring: Monitoring,
) -> dict[str, Any]:
    """PSI over the reference's quantile bins (plus a missing bucket when needed) and KS."""
    ref_all, cur_all = _floats(reference), _floats(current)
    ref, cur = ref_all[~np.isnan(ref_all)], cur_all[~np.isnan(cur_all)]
    ref_missing, cur_missing = ref_all.size - ref.size, cur_all.size - cur.size
    if ref.size == 0 or cur.size == 0:
        return _no_data(
            "numeric",
            "no non-missing values in the " + ("reference" if ref.size == 0 else "current data"),
        )
    edges = quantile_edges(ref, monitoring.bins)
    ref_counts = bucket_counts(ref, edges).astype(float)
    cur_counts = bucket_counts(cur, edges).astype(float)
    labels = _interval_labels(edges)
    if ref_missing or cur_missing:
        ref_counts = np.append(ref_counts, ref_missing)
        cur_counts = np.append(cur_counts, cur_missing)
        labels.append(MISSING)
    ref_share, cur_share = ref_counts / ref_all.size, cur_counts / cur_all.size
    value = psi(ref_share, cur_share)
    ks = stats.ks_2samp(ref, cur)
    pvalue = float(ks.pvalue)
    return {
        "kind": "numeric",
        "status": status_of(value, pvalue, monitoring),
        "psi": _round(value),
        "psi_pvalue": psi_pvalue(value, ref_all.size, cur_all.size, len(labels)),
        "ks_statistic": _round(ks.statistic),
        "ks_pvalue": pvalue if pvalue < 1e-6 else _round(pvalue),
        "reference": _summary(ref, ref_missing),
        "current": _summary(cur, cur_missing),
        "buckets": {
            "labels": labels,
            "reference": [_round(x) for x in ref_share],
            "current": [_round(x) for x in cur_share],
        },
    }


def _interval_labels(edges: np.ndarray) -> list[str]:
    if edges.size == 0:
        return ["all"]
    shown = [f"{e:.4g}" for e in edges]
    return (
        [f"<= {shown[0]}"]
        + [f"({a}, {b}]" for a, b in itertools.pairwise(shown)]
        + [f"> {shown[-1]}"]
    )


def as_category(values: Sequence[Any] | pd.Series) -> pd.Series:
    """Values as category strings (missing: NaN); integral numbers print without ``.0`` so
    that a category read as 2.0 from one file and "2" from a request are the same category."""
    s = pd.Series(values, dtype=object)

    def one(v: Any) -> Any:
        if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
            return None
        if isinstance(v, (bool, np.bool_)):
            return str(bool(v))
        if isinstance(v, (int, np.integer)):
            return str(int(v))
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            return str(int(v))
        return str(v)

    return s.map(one)


def categorical_drift(
    reference: Sequence[Any] | pd.Series,
    current: Sequence[Any] | pd.Series,
    monitoring: Monitoring,
    max_categories: int = 50,
) -> dict[str, Any]:
    """PSI over the reference's categories (its most frequent ``max_categories`` that the
    current data is expected to hold ``MIN_EXPECTED`` times; the rest share ``__other__``);
    current values the reference never had share ``__unseen__``."""
    ref, cur = as_category(reference), as_category(current)
    if ref.notna().sum() == 0 or cur.notna().sum() == 0:
        side = "reference" if ref.notna().sum() == 0 else "current data"
        return _no_data("category", f"no non-missing values in the {side}")
    counts = ref.value_counts()
    expected = counts / len(ref) * len(cur)
    keep = (expected.iloc[:max_categories] >= MIN_EXPECTED).to_numpy()
    top = list(counts.index[:max_categories][keep])
    known = set(counts.index)

    def bucket(v: Any) -> str:
        if pd.isna(v):
            return MISSING
        if v in top:
            return str(v)
        return OTHER if v in known else UNSEEN

    top_set = set(top)
    ref_b = ref.map(lambda v: MISSING if pd.isna(v) else (v if v in top_set else OTHER))
    cur_b = cur.map(bucket)
    labels = [str(t) for t in top] + [
        b for b in (OTHER, UNSEEN, MISSING) if (ref_b == b).any() or (cur_b == b).any()
    ]
    ref_share = ref_b.value_counts(normalize=True).reindex(labels, fill_value=0.0).to_numpy()
    cur_share = cur_b.value_counts(normalize=True).reindex(labels, fill_value=0.0).to_numpy()
    value = psi(ref_share, cur_share)
    return {
        "kind": "category",
        "status": status_of(value, None, monitoring),
        "psi": _round(value),
        "psi_pvalue": psi_pvalue(value, len(ref), len(cur), len(labels)),
        "reference": {"n": len(ref), "categories": len(known)},
        "current": {"n": len(cur), "unseen_share": _round((cur_b == UNSEEN).mean())},
        "buckets": {
            "labels": labels,
            "reference": [_round(x) for x in ref_share],
            "current": [_round(x) for x in cur_share],
        },
    }


def text_features(texts: Sequence[Any] | pd.Series) -> pd.DataFrame:
    """Per text: character length, word count, whether it has a URL, whether a mention."""
    s = pd.Series(texts, dtype=object).map(lambda v: None if v is None else str(v)).astype("string")
    return pd.DataFrame(
        {
            "char_length": s.str.len().astype("Float64"),
            "word_count": s.str.split().str.len().astype("Float64"),
            "url_share": s.str.contains(URL_PATTERN, regex=True),
            "mention_share": s.str.contains(MENTION_PATTERN, regex=True),
        }
    )


def _share_drift(ref: pd.Series, cur: pd.Series, monitoring: Monitoring) -> dict[str, Any]:
    out = categorical_drift(ref, cur, monitoring)
    if out["status"] != "no_data":
        out["kind"] = "share"
        out["reference"]["share"] = _round(ref.dropna().astype(bool).mean())
        out["current"]["share"] = _round(cur.dropna().astype(bool).mean())
    return out


# -- the report -------------------------------------------------------------------------
def feature_kind(field_type: str) -> str:
    if field_type in ("int", "float"):
        return "numeric"
    if field_type == "text":
        return "text"
    return "category"  # category, string, bool


def drift_report(
    card: DesignCard,
    workdir: Workdir | None,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    reference_scores: ArrayLike | None = None,
    current_scores: ArrayLike | None = None,
) -> dict[str, Any]:
    """Drift of every card input (and of the scores, when both sides are given).

    ``workdir`` is accepted so that every stage helper takes (card, workdir, ...); the report
    itself depends only on the data passed in.
    """
    del workdir
    m = card.monitoring
    features: dict[str, dict[str, Any]] = {}
    for field in card.framing.inputs:
        kind = feature_kind(field.type)
        missing = [
            side
            for side, df in (("reference", reference), ("current", current))
            if field.name not in df.columns
        ]
        if missing:
            features[field.name] = _no_data(
                kind, f"column missing from the {' and '.join(missing)}"
            )
            continue
        if kind == "numeric":
            features[field.name] = numeric_drift(reference[field.name], current[field.name], m)
        elif kind == "category":
            features[field.name] = categorical_drift(reference[field.name], current[field.name], m)
        else:
            ref_t, cur_t = text_features(reference[field.name]), text_features(current[field.name])
            for sub in TEXT_FEATURES:
                fn = numeric_drift if sub in ("char_length", "word_count") else _share_drift
                entry = fn(ref_t[sub], cur_t[sub], m)
                entry["source"] = field.name
                features[f"{field.name}.{sub}"] = entry
    if reference_scores is not None and current_scores is not None:
        entry = numeric_drift(np.asarray(reference_scores), np.asarray(current_scores), m)
        entry["kind"] = "prediction"
        features[PROBABILITY] = entry
    if len(current) < m.min_rows:
        # Keep the numbers for a look, but no verdict on a handful of rows.
        for f in features.values():
            if f["status"] in ("ok", "warn", "alert"):
                f["status_if_enough_data"], f["status"] = f["status"], "insufficient_data"
    worst = max(
        (f["status"] for f in features.values()), key=STATUS_ORDER.__getitem__, default="no_data"
    )
    if worst == "no_data" and len(current) < m.min_rows and features:
        worst = "insufficient_data"
    return {
        "card": card.name,
        "n_reference": len(reference),
        "n_current": len(current),
        "thresholds": {
            "psi_warn": m.psi_warn,
            "psi_alert": m.psi_alert,
            "ks_pvalue_alert": m.ks_pvalue_alert,
            "bins": m.bins,
        },
        "min_rows": m.min_rows,
        "status": worst,
        "drifting": [n for n, f in features.items() if f["status"] in ("warn", "alert")],
        "features": features,
    }
