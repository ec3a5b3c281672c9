"""The real stages of the watch loop: the prediction log, delayed labels, the pipeline's
ETL/train/evaluate/register, and the serve rollout helpers (``watch.Stages``)."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from mlsd_ray import storage
from mlsd_ray.monitor.log import ARM, PROBABILITY, TS, read_prediction_log
from mlsd_ray.monitor.online import LABEL_COL, STATE
from mlsd_ray.monitor.watch import Stages, state_dir
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard, card_from_dict

log = logging.getLogger(__name__)


def _joined(card: DesignCard, workdir: Workdir) -> pd.DataFrame:
    frame = read_prediction_log(workdir.prediction_log_uri(card))
    if frame.empty or not card.monitoring.loop.feedback.sources:
        return frame
    from mlsd_ray.monitor.delayed import collect

    joined, _ = collect(card, workdir, log_frame=frame)
    return joined


def observe(card: DesignCard, workdir: Workdir, state: dict[str, Any]) -> dict[str, Any]:
    """The newest complete window not seen before: drift against the training split, and
    decay of the online ROC AUC where labels came back."""
    from mlsd_ray.monitor.delayed import champion_threshold
    from mlsd_ray.monitor.stage import read_reference, reference_scores
    from mlsd_ray.monitor.windows import drift_windows

    served = _joined(card, workdir)
    if served.empty:
        return {"bad": None, "why": "empty prediction log"}
    now = pd.Timestamp.now(tz="UTC")
    reference = read_reference(card, workdir)
    scores, _, _ = reference_scores(card, workdir, reference)
    windows = drift_windows(
        card,
        reference,
        served,
        reference_scores=scores,
        threshold=champion_threshold(card, workdir),
    )
    last_end = pd.Timestamp(state["last_window_end"]) if state.get("last_window_end") else None
    fresh = [
        w
        for w in windows
        if pd.Timestamp(w["end"]) <= now and (last_end is None or pd.Timestamp(w["end"]) > last_end)
    ]
    if not fresh:
        return {"bad": None, "why": "no new complete window"}
    w = fresh[-1]
    state["last_window_end"] = w["end"]
    auc = _online_roc_auc(card, served, w)
    floor = card.monitoring.loop.watch.decay_min_value
    decayed = None if auc is None or floor is None else auc < floor
    bad = None if w["drifted"] is None and decayed is None else bool(w["drifted"] or decayed)
    return {"bad": bad, "drifted": w["drifted"], "decayed": decayed, "online_roc_auc": auc, **w}


def _online_roc_auc(card: DesignCard, served: pd.DataFrame, window: dict[str, Any]) -> float | None:
    """ROC AUC of the window's labelled predictions (None: too few labels or one class)."""
    from sklearn.metrics import roc_auc_score

    if STATE not in served.columns:
        return None
    part = served[
        (served[TS] >= pd.Timestamp(window["start"])) & (served[TS] < pd.Timestamp(window["end"]))
    ]
    lab = part[part[STATE] == "labelled"]
    y = lab[LABEL_COL].to_numpy(float) >= 0.5
    if len(y) < card.monitoring.loop.drift.min_rows or y.all() or not y.any():
        return None
    return float(roc_auc_score(y, lab[PROBABILITY]))


def fresh_card(card: DesignCard, workdir: Workdir) -> DesignCard:
    """The card with the newest labelled window of served traffic added as a data source
    (or as the only one, with ``watch.retrain_on: fresh_window``)."""
    served = _joined(card, workdir)
    if served.empty or STATE not in served.columns:
        return card
    cutoff = served[TS].max() - pd.Timedelta(seconds=card.monitoring.loop.watch.fresh_window_s)
    lab = served[(served[STATE] == "labelled") & (served[TS] >= cutoff)]
    if lab.empty:
        return card
    rows = lab[[*card.feature_names]].copy()
    rows[card.framing.label.column] = (lab[LABEL_COL] >= 0.5).astype(int).astype(str).to_numpy()
    uri = storage.join(state_dir(card, workdir), "fresh", "labelled.csv")
    storage.write_text(uri, rows.to_csv(index=False))
    raw = card.model_dump(mode="json", exclude_unset=True)
    if card.monitoring.loop.watch.retrain_on == "fresh_window":
        raw["data"]["sources"] = [{"uri": uri}]
    else:
        raw["data"]["sources"].append({"uri": uri})
    return card_from_dict(raw)


def retrain(card: DesignCard, workdir: Workdir) -> dict[str, Any]:
    """ETL with the fresh window, train, evaluate against the champion, register as
    challenger only (the champion moves after the canary)."""
    from mlsd_ray import pipeline

    fresh = fresh_card(card, workdir)
    pipeline.etl(fresh, workdir)
    pipeline.train(fresh, workdir)
    report = pipeline.evaluate(fresh, workdir)
    return pipeline.register(fresh, workdir, report, promote=False)


def canary_arms(card: DesignCard, workdir: Workdir) -> dict[str, tuple[int, int]]:
    """{arm: (right decisions, labelled predictions)} from the log and delayed labels."""
    from mlsd_ray.monitor.delayed import champion_threshold

    served = _joined(card, workdir)
    if served.empty or STATE not in served.columns:
        return {}
    thr = champion_threshold(card, workdir)
    lab = served[served[STATE] == "labelled"]
    out = {}
    for arm, part in lab.groupby(lab[ARM].fillna("champion")):
        right = ((part[PROBABILITY] >= thr) == (part[LABEL_COL] >= 0.5)).sum()
        out[str(arm)] = (int(right), len(part))
    return out


def _rollout(card: DesignCard, mode: str) -> DesignCard:
    raw = card.model_dump(mode="json", exclude_unset=True)
    raw.setdefault("deployment", {}).setdefault("rollout", {})["mode"] = mode
    return card_from_dict(raw)


def start_canary(card: DesignCard, workdir: Workdir, version: str) -> None:
    from mlsd_ray.serve import rollout

    if rollout.is_serving(card):
        rollout.refresh_serving(_rollout(card, "canary"), workdir)


def promote(card: DesignCard, workdir: Workdir, version: str) -> None:
    from mlsd_ray.serve import rollout

    rollout.promote(_rollout(card, "none"), workdir, version)


def rollback(card: DesignCard, workdir: Workdir, version: str | None) -> None:
    """The champion stays; the app goes back to serving it alone."""
    from mlsd_ray.serve import rollout

    if rollout.is_serving(card):
        rollout.refresh_serving(_rollout(card, "none"), workdir)


def default_stages() -> Stages:
    return Stages(
        observe=observe,
        retrain=retrain,
        canary_arms=canary_arms,
        start_canary=start_canary,
        promote=promote,
        rollback=rollback,
    )
