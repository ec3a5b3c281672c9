"""Drift over time: served traffic in sliding windows against the training reference.

Per window: feature drift (PSI over the reference's bins and categories, ``drift.py``; the KS
test too when ``monitoring.loop.drift.use_ks``, off by default because on thousands of rows it
flags shifts too small to matter). A feature alerts when its PSI reaches ``psi_alert`` (the
shift is large enough to matter) and its PSI test's p-value is under ``drift.alpha`` divided by
the number of watched series (Bonferroni: the shift is not sampling noise, and a window of
ninety features does not alarm ninety times as often as one of one); prediction drift (PSI of
the scores against the reference's scores), label drift (the labelled positive rate against the
training rate, a binomial test), and performance estimated before any label arrives
(confidence-based: a calibrated classifier's scores give the expected confusion matrix and ROC
AUC). ``train_serve_skew`` compares logged inputs with the same rows' features recomputed
offline.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from mlsd_ray.monitor.drift import categorical_drift, feature_kind, numeric_drift, text_features
from mlsd_ray.monitor.log import PROBABILITY, TS
from mlsd_ray.monitor.online import LABEL_COL, STATE
from mlsd_ray.spec import DesignCard


def expected_performance(scores: np.ndarray, threshold: float) -> dict[str, float | None]:
    """Confidence-based performance estimation (CBPE) for a calibrated binary classifier:
    each score is the chance its row is positive, so sums of scores are expected counts."""
    p = np.asarray(scores, dtype=float)
    if p.size == 0:
        return {"accuracy": None, "precision": None, "recall": None, "roc_auc": None}
    flag = p >= threshold
    tp, fp = p[flag].sum(), (1 - p[flag]).sum()
    fn, tn = p[~flag].sum(), (1 - p[~flag]).sum()
    # Expected AUC: the chance a positive outscores a negative, with row i positive with
    # probability p_i (pairs weighted p_i * (1 - p_j)); ties count one half.
    values, group = np.unique(p, return_inverse=True)
    pos = np.bincount(group, weights=p, minlength=values.size)
    neg = np.bincount(group, weights=1 - p, minlength=values.size)
    neg_below = np.cumsum(neg) - neg
    # A row is not paired with itself: remove p_i * (1 - p_i) from the tie half.
    self_pairs = np.bincount(group, weights=p * (1 - p), minlength=values.size)
    wins = (pos * neg_below).sum() + 0.5 * ((pos * neg).sum() - self_pairs.sum())
    pairs = pos.sum() * neg.sum() - self_pairs.sum()
    auc = float(wins / pairs) if pairs > 0 else None
    return {
        "accuracy": float((tp + tn) / p.size),
        "precision": float(tp / (tp + fp)) if tp + fp else None,
        "recall": float(tp / (tp + fn)) if tp + fn else None,
        "roc_auc": auc,
    }


def window_bounds(
    ts: pd.Series, window_s: float, step_s: float | None = None
) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """[start, end) windows of ``window_s`` every ``step_s`` from the first record."""
    if ts.empty:
        return []
    step = pd.Timedelta(seconds=step_s or window_s)
    width = pd.Timedelta(seconds=window_s)
    start, last = ts.min(), ts.max()
    out = []
    while start <= last:
        out.append((start, start + width))
        start += step
    return out


def feature_drift(
    card: DesignCard, reference: pd.DataFrame, current: pd.DataFrame
) -> dict[str, dict[str, Any]]:
    """PSI (and KS) per monitored input; text inputs through their derived features."""
    m = card.monitoring
    ignore = set(m.loop.drift.ignore)
    out: dict[str, dict[str, Any]] = {}
    for field in card.framing.inputs:
        if field.name in ignore or field.name not in current.columns:
            continue
        kind = feature_kind(field.type)
        if kind == "numeric":
            out[field.name] = numeric_drift(reference[field.name], current[field.name], m)
        elif kind == "category":
            out[field.name] = categorical_drift(reference[field.name], current[field.name], m)
        else:
            ref_t, cur_t = text_features(reference[field.name]), text_features(current[field.name])
            for sub in ("char_length", "word_count"):
                out[f"{field.name}.{sub}"] = numeric_drift(ref_t[sub], cur_t[sub], m)
    return out


def mark_alerts(card: DesignCard, features: dict[str, dict[str, Any]]) -> list[str]:
    """Set ``alert`` on every entry (large and not noise, Bonferroni over the entries); the
    names alerting."""
    m, cfg = card.monitoring, card.monitoring.loop.drift
    level = cfg.alpha / max(len(features), 1)
    for entry in features.values():
        psi, p, ks = entry.get("psi"), entry.get("psi_pvalue"), entry.get("ks_pvalue")
        big = psi is not None and psi >= m.psi_alert and (p is None or p < level)
        entry["alert"] = bool(big or (cfg.use_ks and ks is not None and ks < level))
        entry["alpha_per_feature"] = level
    return [n for n, f in features.items() if f["alert"]]


def drift_windows(
    card: DesignCard,
    reference: pd.DataFrame,
    served: pd.DataFrame,
    *,
    reference_scores: np.ndarray | None = None,
    threshold: float = 0.5,
) -> list[dict[str, Any]]:
    """One verdict per window of ``served`` (the log, optionally joined with labels).

    A window ``drifted`` when at least ``min_alerting`` features (the prediction counts as
    one) alert; windows under ``min_rows`` rows give no verdict (``drifted`` None).
    """
    cfg = card.monitoring.loop.drift
    ref_rate = (
        float(pd.to_numeric(reference["label"], errors="coerce").mean())
        if "label" in reference.columns
        else None
    )
    out = []
    for start, end in window_bounds(served[TS], cfg.window_s, cfg.step_s):
        cur = served[(served[TS] >= start) & (served[TS] < end)]
        entry: dict[str, Any] = {"start": str(start), "end": str(end), "rows": len(cur)}
        if len(cur) < cfg.min_rows:
            entry.update(drifted=None, alerting=[])
            out.append(entry)
            continue
        features = feature_drift(card, reference, cur)
        if reference_scores is not None and PROBABILITY in cur.columns:
            features[PROBABILITY] = numeric_drift(
                reference_scores, cur[PROBABILITY], card.monitoring
            )
        alerting = mark_alerts(card, features)
        entry.update(
            drifted=len(alerting) >= cfg.min_alerting,
            alerting=alerting,
            psi={n: f.get("psi") for n, f in features.items()},
            psi_pvalue={n: f.get("psi_pvalue") for n, f in features.items()},
            estimated=expected_performance(cur[PROBABILITY].to_numpy(float), threshold)
            if PROBABILITY in cur.columns
            else None,
        )
        entry["label_drift"] = _label_drift(cur, ref_rate, card.monitoring.ks_pvalue_alert)
        out.append(entry)
    return out


def _label_drift(cur: pd.DataFrame, ref_rate: float | None, alpha: float) -> dict[str, Any] | None:
    if STATE not in cur.columns or ref_rate is None or not 0 < ref_rate < 1:
        return None
    y = cur.loc[cur[STATE] == "labelled", LABEL_COL].to_numpy(float) >= 0.5
    if y.size == 0:
        return None
    test = stats.binomtest(int(y.sum()), int(y.size), ref_rate)
    return {
        "labelled": int(y.size),
        "positive_rate": float(y.mean()),
        "reference_rate": ref_rate,
        "pvalue": float(test.pvalue),
        "alert": bool(test.pvalue < alpha),
    }


def train_serve_skew(
    logged: pd.DataFrame, offline: pd.DataFrame, key: str, features: list[str]
) -> dict[str, Any]:
    """Logged (served) inputs against the same rows' features computed offline, by ``key``.

    Per feature: the share of matched rows whose values differ (numbers: beyond a relative
    1e-6; missing on one side only counts) and, for numbers, the mean absolute difference.
    """
    both = logged.merge(offline, on=key, how="inner", suffixes=("_served", "_offline"))
    out: dict[str, Any] = {"matched": len(both), "features": {}}
    for name in features:
        s, o = both[f"{name}_served"], both[f"{name}_offline"]
        sn, on = pd.to_numeric(s, errors="coerce"), pd.to_numeric(o, errors="coerce")
        numeric = sn.notna().sum() == s.notna().sum() and on.notna().sum() == o.notna().sum()
        if numeric:
            a, b = sn.to_numpy(float), on.to_numpy(float)
            same = np.isclose(a, b, rtol=1e-6, atol=0) | (np.isnan(a) & np.isnan(b))
            diff = np.abs(a - b)
            mad = float(np.nanmean(diff)) if np.isfinite(diff).any() else None
        else:
            same = (s.astype(str) == o.astype(str)).to_numpy() | (s.isna() & o.isna()).to_numpy()
            mad = None
        out["features"][name] = {
            "mismatch_share": float(1 - same.mean()) if len(both) else None,
            "mean_abs_diff": mad,
        }
    return out
