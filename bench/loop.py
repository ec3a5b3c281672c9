"""Replay time-ordered streams through the monitor: false alarms, detection delay, and the
retrained model against the stale one on the later data.

    PYTHONPATH=$PWD .venv/bin/python bench/loop.py --json /tmp/loop.json [--plots DIR]

Per stream (read in place from ../shared/datasets/ad_click):

* ``online_shoppers``: sessions ordered by ``Month`` (Feb, Mar, May | June ... Dec). The model
  is trained on 70 % of the early months; the other 30 %, shuffled, is the **no-drift**
  segment (same months, unseen rows); the later months are the **drift** segment with an
  injected fault from its first row: ``PageValues`` arrives as 0 (an upstream pipeline that
  lost the feature). The stream has no clock: one row = 60 s of stream time.
* ``obp_clicks``: impressions ordered by ``timestamp``; first 50 % train, next 20 % no-drift,
  last 30 % drift: every impression is moved to slot 1 (a layout change) and slot-1 impressions
  of the commonest ``user_feature_0`` are clicked 15 % of the time (a flipped label rate).

The monitor is mlsd's own: ``monitor.windows.drift_windows`` over tumbling windows of
``--window-rows`` rows against the training reference (PSI at the card's alert level; ``Month``
is not watched: it moves by design). A false alarm is a drifted window in the no-drift segment;
the detection delay is the rows from the drift start to the end of the first drifted window
that holds drifted rows (a window straddling the start counts: it saw them). After detection,
the labels of the next ``--fresh-rows`` rows arrive, the model is retrained on the training
rows plus those (the loop's "fresh window"), and both models are scored on the rest of the
drift segment: ROC AUC with a paired bootstrap interval of retrained - stale
(``mlsd_ray.tasks.bootstrap``). The model is scikit-learn's HistGradientBoosting with
one-hot categories, fitted in-process (the loop's retrain stage goes through the pipeline; here
only the statistics are under test).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from mlsd_ray.monitor.windows import drift_windows
from mlsd_ray.spec import card_from_dict
from mlsd_ray.tasks.bootstrap import paired_difference

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "ad_click"
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "June", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def _card(
    name: str, numeric: list[str], categories: list[str], window_rows: int, ignore: list[str]
) -> Any:
    inputs = [{"name": c, "type": "float"} for c in numeric] + [
        {"name": c, "type": "category"} for c in categories
    ]
    return card_from_dict(
        {
            "name": name,
            "requirements": {"business_objective": "replay"},
            "framing": {
                "ml_objective": "replay",
                "category": "binary",
                "inputs": inputs,
                "output": "p",
                "label": {"column": "label"},
            },
            "data": {"sources": [{"uri": "unused.csv"}]},
            "models": {
                "baseline": {"name": "m", "kind": "majority"},
                "candidates": [{"name": "l", "kind": "logreg"}],
            },
            "monitoring": {
                "loop": {
                    "drift": {
                        "window_s": float(window_rows),  # one row = one second of replay time
                        "min_rows": window_rows // 2,
                        "ignore": ["Month", *ignore],
                    }
                }
            },
        }
    )


def _model(numeric: list[str], categories: list[str]) -> Any:
    pre = ColumnTransformer(
        [
            ("num", "passthrough", numeric),
            ("cat", OneHotEncoder(handle_unknown="ignore", min_frequency=5), categories),
        ],
        sparse_threshold=0.0,
    )
    return make_pipeline(pre, HistGradientBoostingClassifier(max_iter=150, random_state=0))


def replay(
    name: str,
    train: pd.DataFrame,
    calm: pd.DataFrame,
    drift: pd.DataFrame,
    numeric: list[str],
    categories: list[str],
    *,
    window_rows: int,
    fresh_rows: int,
    seconds: np.ndarray | None = None,
    plots: Path | None = None,
    ignore: list[str] | None = None,
) -> dict[str, Any]:
    features = numeric + categories
    card = _card(name, numeric, categories, window_rows, ignore or [])
    stale = _model(numeric, categories).fit(train[features], train["label"])
    stream = pd.concat([calm.assign(_seg="calm"), drift.assign(_seg="drift")], ignore_index=True)
    stream["probability"] = stale.predict_proba(stream[features])[:, 1]
    stream["ts"] = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(
        np.arange(len(stream)), unit="s"
    )
    ref_scores = stale.predict_proba(train[features])[:, 1]
    windows = drift_windows(card, train, stream, reference_scores=ref_scores)
    drift_start = len(calm)
    false_alarms, detected_at, psi_curve = 0, None, []
    alarmed_on: dict[str, int] = {}
    for i, w in enumerate(windows):
        last = min((i + 1) * window_rows, len(stream)) - 1
        psi_curve.append((last, max((v or 0) for v in (w.get("psi") or {0: 0}).values())))
        if w["drifted"] is None:
            continue
        in_calm = last < drift_start
        if w["drifted"] and in_calm:
            false_alarms += 1
            for feature in w["alerting"]:
                alarmed_on[feature] = alarmed_on.get(feature, 0) + 1
        if w["drifted"] and last >= drift_start and detected_at is None:
            detected_at = last + 1
    out: dict[str, Any] = {
        "rows": {"train": len(train), "no_drift": len(calm), "drift": len(drift)},
        "window_rows": window_rows,
        "no_drift_windows": sum(
            1 for i in range(len(windows)) if (i + 1) * window_rows <= drift_start
        ),
        "false_alarms": false_alarms,
        "false_alarms_by_feature": alarmed_on,
        "not_watched": card.monitoring.loop.drift.ignore,
        "detection_delay_rows": None if detected_at is None else detected_at - drift_start,
    }
    if seconds is not None and detected_at is not None:
        out["detection_delay_seconds"] = float(
            seconds[min(detected_at, len(seconds) - 1)] - seconds[drift_start]
        )
    elif detected_at is not None:
        out["detection_delay_seconds"] = float(60 * (detected_at - drift_start))  # 60 s a row
    if detected_at is None:
        out.update(retrained=None, stale=None)
        return out
    fresh_end = detected_at + fresh_rows
    fresh = stream.iloc[detected_at:fresh_end]
    later = stream.iloc[fresh_end:]
    retrained = _model(numeric, categories).fit(
        pd.concat([train[features], fresh[features]]),
        pd.concat([train["label"], fresh["label"]]),
    )
    p_new = retrained.predict_proba(later[features])[:, 1]
    p_old = later["probability"].to_numpy()
    y = later["label"].to_numpy()
    diff = paired_difference(y, p_new, p_old, 0.5, 0.5, "roc_auc", n_resamples=1000, seed=0)
    out.update(
        later_rows=len(later),
        later_positives=int(y.sum()),
        retrained={"roc_auc": float(roc_auc_score(y, p_new))},
        stale={"roc_auc": float(roc_auc_score(y, p_old))},
        retrained_minus_stale={"roc_auc": diff["mean"], "interval": diff["interval"]},
    )
    if plots is not None:
        _plot(
            name, stream, p_new, fresh_end, drift_start, detected_at, psi_curve, window_rows, plots
        )
        out["plot"] = str(plots / f"loop_{name}.png")
    return out


def _plot(name, stream, p_new, fresh_end, drift_start, detected_at, psi_curve, window_rows, plots):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    xs, stale_auc, new_auc = [], [], []
    for start in range(0, len(stream), window_rows):
        part = stream.iloc[start : start + window_rows]
        if part["label"].nunique() < 2:
            continue
        xs.append(start + len(part))
        stale_auc.append(roc_auc_score(part["label"], part["probability"]))
        if start >= fresh_end:
            new_auc.append(
                (
                    start + len(part),
                    roc_auc_score(
                        part["label"], p_new[start - fresh_end : start - fresh_end + len(part)]
                    ),
                )
            )
    ax1.plot(xs, stale_auc, "o-", label="stale model")
    if new_auc:
        ax1.plot(*zip(*new_auc, strict=True), "s-", label="retrained")
    ax1.set_ylabel("ROC AUC per window")
    ax1.legend()
    ax2.plot(*zip(*psi_curve, strict=True), "o-", color="tab:red")
    ax2.set_ylabel("max PSI per window")
    ax2.set_xlabel("stream row")
    for ax in (ax1, ax2):
        ax.axvline(drift_start, color="grey", ls="--")
        ax.axvline(detected_at, color="tab:red", ls=":")
    fig.suptitle(f"{name}: drift injected at the dashed line, detected at the dotted one")
    fig.tight_layout()
    fig.savefig(plots / f"loop_{name}.png", dpi=90)
    plt.close(fig)


def online_shoppers(
    window_rows: int, fresh_rows: int, plots: Path | None, ignore: list[str]
) -> dict[str, Any]:
    frame = pd.read_csv(DATA / "online_shoppers_dev.csv")
    frame["label"] = frame.pop("Revenue").astype(str).isin(["1", "True", "true"]).astype(int)
    frame["_m"] = frame["Month"].map(MONTHS.index)
    frame = frame.sort_values("_m", kind="stable").reset_index(drop=True)
    categories = [
        "Month",
        "OperatingSystems",
        "Browser",
        "Region",
        "TrafficType",
        "VisitorType",
        "Weekend",
    ]
    for c in categories:
        frame[c] = frame[c].astype(str)
    numeric = [c for c in frame.columns if c not in {*categories, "label", "_m"}]
    early = frame[frame["_m"] <= MONTHS.index("May")].sample(frac=1.0, random_state=0)
    n_train = int(0.7 * len(early))
    train, calm = early.iloc[:n_train], early.iloc[n_train:]
    drift = frame[frame["_m"] > MONTHS.index("May")].copy()
    drift["PageValues"] = 0.0  # the injected fault
    return replay(
        "online_shoppers",
        train,
        calm,
        drift,
        numeric,
        categories,
        window_rows=window_rows,
        fresh_rows=fresh_rows,
        plots=plots,
        ignore=ignore,
    )


def obp_clicks(
    window_rows: int, fresh_rows: int, plots: Path | None, ignore: list[str]
) -> dict[str, Any]:
    frame = pd.read_csv(DATA / "obp_bts_all.csv").sort_values("timestamp", kind="stable")
    frame = frame.reset_index(drop=True)
    frame["label"] = frame.pop("click").astype(int)
    categories = ["item_id", "position", *[f"user_feature_{i}" for i in range(4)]]
    for c in categories:
        frame[c] = frame[c].astype(str)
    numeric = [c for c in frame.columns if c.startswith("user-item_affinity_")]
    n = len(frame)
    train, calm = frame.iloc[: n // 2], frame.iloc[n // 2 : int(0.7 * n)]
    drift = frame.iloc[int(0.7 * n) :].copy()
    rng = np.random.default_rng(0)
    common = frame["user_feature_0"].mode().iloc[0]
    drift["position"] = "1"  # the layout change
    hot = (drift["user_feature_0"] == common).to_numpy()
    drift.loc[hot, "label"] = (rng.uniform(size=int(hot.sum())) < 0.15).astype(int)
    seconds = (
        pd.to_datetime(pd.concat([calm["timestamp"], drift["timestamp"]]), utc=True, format="mixed")
        .astype("int64")
        .to_numpy()
        / 1e9
    )
    return replay(
        "obp_clicks",
        train,
        calm,
        drift,
        numeric,
        categories,
        window_rows=window_rows,
        fresh_rows=fresh_rows,
        seconds=seconds,
        plots=plots,
        ignore=ignore,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None)
    parser.add_argument("--plots", default=None, help="Folder for loop_<stream>.png")
    parser.add_argument("--window-rows", type=int, default=500)
    parser.add_argument("--fresh-rows", type=int, default=1000)
    parser.add_argument("--streams", default="online_shoppers,obp_clicks")
    parser.add_argument(
        "--ignore",
        default="",
        help="Inputs not watched (comma-separated, besides Month), e.g. item_id: the OBP log's "
        "items are chosen by an adaptive (Thompson sampling) policy, so their mix moves by design",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    plots = Path(args.plots) if args.plots else None
    runs = {"online_shoppers": online_shoppers, "obp_clicks": obp_clicks}
    result = {}
    for name in args.streams.split(","):
        ignore = [c for c in args.ignore.split(",") if c]
        result[name] = runs[name](args.window_rows, args.fresh_rows, plots, ignore)
        print(name, json.dumps(result[name]), flush=True)
    text = json.dumps(result, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
