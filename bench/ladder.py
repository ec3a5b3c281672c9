"""The tabular model ladder, measured on the test split: every rung's ROC-AUC and PR-AUC with a
95 % bootstrap interval, ECE before and after calibration, tuned against untuned rungs with the
wall time spent tuning, and a 20-line scikit-learn HistGradientBoostingClassifier baseline on
the same split (the issue-16 goal: the champion beats it by 0.005 ROC-AUC or more).

    python bench/ladder.py [--cards event_registration,ad_click_ctr,harmful_content]
                           [--trials 8] [--workdir DIR] [--json OUT]
                           [--text-rows 3000] [--text-epochs 2] [--sms-rows 2000]

Each tabular card runs the pipeline's own stages (``etl`` then ``train``: GBDTs through Ray
Train, ensembles as Ray tasks, calibration on validation, refit on train + validation as the
card says) in a fresh workdir, with two cross-family blends added as rungs (``blend_stack``,
``blend_avg`` of a GBDT and the mlp, or of logreg and a GBDT where the card has no mlp), each
compared with its best member on test by a paired bootstrap; then, with ``--trials`` > 0, the
tunable rungs (logreg, xgboost, lightgbm) are trained again as ``<name>_tuned`` with ``tuning:
{num_samples: --trials}`` over their kind's default space (Ray Tune + Optuna + ASHA). "Before"
is the untuned rung's raw probability; "after" is the packaged (calibrated) one. The champion is
the rung with the best *validation* ROC-AUC, as the evaluation stage picks it.

``harmful_content`` (the text card) runs on ``--text-rows`` sampled rows of the real Davidson
data (60/20/20 split), MiniLM fine-tuned for at most ``--text-epochs`` with early stopping
(validation every 40 steps, patience 2), TF-IDF + MiniLM blends; every rung is scored on the
test split and on ``--sms-rows`` sampled rows of SMS Spam (an out-of-domain external set), and
the champion is compared with TF-IDF + logistic regression on both (goal: +0.01 ROC-AUC).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


from mlsd_ray import pipeline  # noqa: E402
from mlsd_ray.data.layout import read_split  # noqa: E402
from mlsd_ray.metrics import classification_metrics  # noqa: E402
from mlsd_ray.predict import Predictor  # noqa: E402
from mlsd_ray.runtime import ensure_ray  # noqa: E402
from mlsd_ray.settings import Workdir  # noqa: E402
from mlsd_ray.spec import DesignCard, ModelSpec, load_card  # noqa: E402
from mlsd_ray.tasks.bootstrap import confidence_intervals, paired_difference  # noqa: E402

TUNABLE = ("logreg", "xgboost", "lightgbm")


def hgb_baseline(card: DesignCard, train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """The 20-line baseline: scikit-learn's HistGradientBoostingClassifier with its defaults,
    categories ordinal-encoded and declared categorical; P(positive) on ``test``."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OrdinalEncoder

    cats = [f.name for f in card.framing.inputs if f.type in ("category", "string")]
    nums = [f.name for f in card.framing.inputs if f.name not in cats]
    encode = ColumnTransformer(
        [
            ("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), cats),
            ("num", "passthrough", nums),
        ]
    )
    model = make_pipeline(
        encode,
        HistGradientBoostingClassifier(categorical_features=list(range(len(cats))), random_state=0),
    )
    X = train[cats + nums].astype({c: str for c in cats})
    model.fit(X, train["label"].to_numpy())
    return model.predict_proba(test[cats + nums].astype({c: str for c in cats}))[:, 1]


def figures(y: np.ndarray, p: np.ndarray, raw: np.ndarray | None = None) -> dict[str, Any]:
    m = classification_metrics(y, p)
    ci = confidence_intervals(y, p, n_resamples=1000)
    out = {
        "roc_auc": m["roc_auc"],
        "roc_auc_ci": ci.get("roc_auc"),
        "pr_auc": m["pr_auc"],
        "pr_auc_ci": ci.get("pr_auc"),
        "ece_after": m["ece"],
    }
    if raw is not None:
        out["ece_before"] = classification_metrics(y, raw)["ece"]
    return out


def rung(entry: dict[str, Any], test: pd.DataFrame, inputs: list[str]) -> dict[str, Any]:
    predictor = Predictor(entry["dir"])
    p = predictor.predict_frame(test[inputs])
    raw = predictor.model.predict_proba(test[inputs])[:, 1]
    meta = predictor.manifest.metadata
    return {
        "kind": entry["kind"],
        "validation_roc_auc": entry["validation_roc_auc"],
        "calibration": (meta.get("calibration") or {}).get("chosen", "none"),
        "train_s": entry["train_seconds"],
        "tuning_s": (meta.get("tuning") or {}).get("seconds"),
        "test": figures(test["label"].to_numpy(), p, raw),
        "_p": p,
    }


def with_blends(card: DesignCard, members: list[str]) -> DesignCard:
    """The card with cross-family blends of ``members`` (stacking and weighted) as two more
    rungs of its ladder."""
    blends = [
        {"name": "blend_stack", "kind": "blend", "params": {"members": members}},
        {
            "name": "blend_avg",
            "kind": "blend",
            "params": {"members": members, "method": "weighted"},
        },
    ]
    card.models.candidates += [ModelSpec.model_validate(b) for b in blends]
    return card


def blend_verdicts(rungs: dict[str, Any], y: np.ndarray, members: list[str]) -> dict[str, Any]:
    """Each blend against its best member on test: the paired bootstrap difference."""
    best = max(members, key=lambda m: rungs[m]["test"]["roc_auc"])
    out: dict[str, Any] = {}
    for blend in ("blend_stack", "blend_avg"):
        if blend in rungs:
            d = paired_difference(
                y, rungs[blend]["_p"], rungs[best]["_p"], 0.5, 0.5, "roc_auc", n_resamples=1000
            )
            lo = (d["interval"] or [0])[0]
            out[blend] = {"best_member": best, "difference": d["mean"], "interval": d["interval"]}
            out[blend]["beats_best_member"] = bool(lo > 0)
    return out


#: Each card's cross-family blend: a GBDT with the mlp (with the logreg where no mlp).
BLEND_MEMBERS = {"event_registration": ["lightgbm", "mlp"], "ad_click_ctr": ["logreg", "lightgbm"]}


def run_card(name: str, root: Path, trials: int) -> dict[str, Any]:
    card = with_blends(load_card(REPO / "systems" / f"{name}.yaml"), BLEND_MEMBERS[name])
    workdir = Workdir(root / name)
    started = time.perf_counter()
    pipeline.etl(card, workdir)
    untuned = pipeline.train(card, workdir)
    train_s = time.perf_counter() - started
    # The tunable rungs again, tuned, as <name>_tuned (same workdir and splits).
    overrides, tuned_names = [], []
    for i, spec in enumerate(card.models.candidates):
        if spec.kind in TUNABLE and trials > 0:
            tuning = f"{{num_samples: {trials}, max_t: 4, max_concurrent_trials: 2}}"
            overrides += [
                f"models.candidates.{i}.name={spec.name}_tuned",
                f"models.candidates.{i}.tuning={tuning}",
            ]
            tuned_names.append(f"{spec.name}_tuned")
    started = time.perf_counter()
    tuned: dict[str, Any] = {"models": {}}
    if tuned_names:
        tuned_card = load_card(REPO / "systems" / f"{name}.yaml", overrides=overrides)
        tuned = pipeline.train(tuned_card, workdir, only=tuned_names)
    tune_s = time.perf_counter() - started

    inputs = card.feature_names
    train = read_split(workdir.split_uri(card, "train"))
    val = read_split(workdir.split_uri(card, "validation"))
    test = read_split(workdir.split_uri(card, "test"))
    y = test["label"].to_numpy()
    rungs = {m: rung(e, test, inputs) for m, e in untuned["models"].items()}
    rungs |= {m: rung(e, test, inputs) for m, e in tuned["models"].items()}
    started = time.perf_counter()
    hgb = {
        "train": hgb_baseline(card, train, test),
        "train+validation": hgb_baseline(card, pd.concat([train, val]), test),
    }
    hgb_s = time.perf_counter() - started
    champion = max(rungs, key=lambda m: rungs[m]["validation_roc_auc"] or 0)
    p_champion = rungs[champion]["_p"]
    baselines = {}
    for fitted_on, p in hgb.items():
        diff = paired_difference(y, p_champion, p, 0.5, 0.5, "roc_auc", n_resamples=1000)
        baselines[fitted_on] = {
            "test": figures(y, p),
            "champion_minus_hgb_roc_auc": diff["mean"],
            "interval": diff["interval"],
        }
    blends = blend_verdicts(rungs, y, BLEND_MEMBERS[name])
    for r in rungs.values():
        r.pop("_p")
    return {
        "blends": blends,
        "card": name,
        "rows": {"train": len(train), "validation": len(val), "test": len(test)},
        "test_positive_rate": float(y.mean()),
        "train_s": round(train_s, 1),
        "tuning_wall_s": round(tune_s, 1),
        "hgb_s": round(hgb_s, 1),
        "rungs": rungs,
        "champion": champion,
        "hgb": baselines,
        "goal_champion_beats_hgb_by_0_005": bool(
            rungs[champion]["test"]["roc_auc"] - baselines["train"]["test"]["roc_auc"] >= 0.005
        ),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


DATASETS = Path(os.environ.get("MLSD_DATASETS", REPO.parent / "shared" / "datasets"))


def sample_csv(source: Path, rows: int, out: Path, sep: str = ",") -> Path:
    """``rows`` random rows of a file (seed 0), written to ``out`` (outside the repo)."""
    frame = pd.read_csv(source, sep=sep)
    frame = frame.sample(n=min(rows, len(frame)), random_state=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False, sep=sep)
    return out


def text_card(root: Path, rows: int, epochs: int) -> DesignCard:
    """harmful_content on ``rows`` sampled Davidson tweets (60/20/20), MiniLM fine-tuned for up
    to ``epochs`` with early stopping, and the TF-IDF + MiniLM blends."""
    data = sample_csv(
        DATASETS / "harmful_content" / "davidson_dev.csv", rows, root / "data" / "davidson.csv"
    )
    trainer = (
        f"{{pretrained: minilm, max_length: 32, epochs: {epochs}, batch_size: 16,"
        " learning_rate: 5.0e-5, num_workers: 1, cpus_per_worker: 1, eval_every_steps: 40,"
        " patience: 2, checkpoint_every_steps: 40}"
    )
    card = load_card(
        REPO / "systems" / "harmful_content.yaml",
        overrides=[
            f"data.sources.0.uri={data}",
            "data.sources.0.rename={tweet: text, class: label}",
            'framing.label.mapping={"0": 1, "1": 1, "2": 0}',
            "data.split={train: 0.6, validation: 0.2, test: 0.2, stratify: true, seed: 0}",
            f"models.candidates.0.trainer={trainer}",
        ],
    )
    return with_blends(card, ["tfidf_logreg", "minilm"])


def sms_external(rows: int) -> pd.DataFrame:
    """SMS Spam as an out-of-domain set for the text card: spam = harmful (``rows`` sampled)."""
    sms = pd.read_csv(DATASETS / "harmful_content" / "sms_spam.tsv", sep="\t")
    sms = sms.sample(n=min(rows, len(sms)), random_state=0)
    return pd.DataFrame({"text": sms["SMS"].astype(str), "label": (sms["Label"] == "spam") * 1})


def run_text_card(root: Path, rows: int, epochs: int, sms_rows: int) -> dict[str, Any]:
    """The text card: every rung on test and on SMS Spam; the champion (best validation
    ROC-AUC) against TF-IDF + logistic regression, paired, on both (goal: +0.01 on each)."""
    card = text_card(root, rows, epochs)
    workdir = Workdir(root / card.name)
    started = time.perf_counter()
    pipeline.etl(card, workdir)
    trained = pipeline.train(card, workdir)
    train_s = time.perf_counter() - started
    sets = {"test": read_split(workdir.split_uri(card, "test")), "sms_spam": sms_external(sms_rows)}
    rungs: dict[str, Any] = {}
    scores: dict[str, dict[str, np.ndarray]] = {}
    for name, entry in trained["models"].items():
        predictor = Predictor(entry["dir"])
        scores[name] = {s: predictor.predict_frame(f[["text"]]) for s, f in sets.items()}
        meta = predictor.manifest.metadata
        rungs[name] = {
            "kind": entry["kind"],
            "validation_roc_auc": entry["validation_roc_auc"],
            "train_s": entry["train_seconds"],
            **{
                k: meta[k]
                for k in ("best_step", "best_epoch", "stopped_early", "step")
                if k in meta
            },
            **{s: figures(f["label"].to_numpy(), scores[name][s]) for s, f in sets.items()},
        }
    champion = max(rungs, key=lambda m: rungs[m]["validation_roc_auc"] or 0)
    against = {}
    for s, f in sets.items():
        y = f["label"].to_numpy()
        d = paired_difference(
            y, scores[champion][s], scores["tfidf_logreg"][s], 0.5, 0.5, "roc_auc", n_resamples=1000
        )
        against[s] = {"difference": d["mean"], "interval": d["interval"]}
        against[s]["goal_met"] = bool((d["mean"] or 0) >= 0.01)
    blends = {
        s: blend_verdicts(
            {m: {**r, "test": r[s], "_p": scores[m][s]} for m, r in rungs.items()},
            f["label"].to_numpy(),
            ["tfidf_logreg", "minilm"],
        )
        for s, f in sets.items()
    }
    return {
        "card": card.name,
        "rows": {k: v for k, v in trained["rows"].items()} | {"test": len(sets["test"])},
        "sms_spam_rows": len(sets["sms_spam"]),
        "train_s": round(train_s, 1),
        "rungs": rungs,
        "champion": champion,
        "champion_minus_tfidf": against,
        "blends": blends,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return "[" + ", ".join(f"{v:.3f}" for v in value) + "]"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cards", default="event_registration,ad_click_ctr")
    ap.add_argument("--trials", type=int, default=8, help="tuning trials per tunable rung")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--text-rows", type=int, default=3000, help="Davidson rows sampled")
    ap.add_argument("--text-epochs", type=int, default=2, help="MiniLM epochs (early stopping)")
    ap.add_argument("--sms-rows", type=int, default=2000, help="SMS Spam rows sampled")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench_ladder_"))
    ensure_ray(num_cpus=2)
    names = args.cards.split(",")
    results = [run_card(name, root, args.trials) for name in names if name != "harmful_content"]
    if "harmful_content" in names:
        text = run_text_card(root, args.text_rows, args.text_epochs, args.sms_rows)
        print(json.dumps(text, indent=1, default=str))
        results.append(text)
    for r in [r for r in results if r["card"] != "harmful_content"]:
        print(
            f"\n{r['card']}: {r['rows']} rows, test positive rate {r['test_positive_rate']:.4f}; "
            f"training {r['train_s']} s, tuning {r['tuning_wall_s']} s; champion "
            f"{r['champion']}; loadavg {r['loadavg']}"
        )
        print(
            "| rung | val ROC-AUC | test ROC-AUC [95 % CI] | test PR-AUC | calibration | "
            "ECE before | ECE after | tuning s |\n|---|---|---|---|---|---|---|---|"
        )
        for m, g in sorted(r["rungs"].items(), key=lambda kv: -(kv[1]["test"]["roc_auc"] or 0)):
            t = g["test"]
            print(
                f"| {m} | {fmt(g['validation_roc_auc'])} | {fmt(t['roc_auc'])} "
                f"{fmt(t['roc_auc_ci'])} | {fmt(t['pr_auc'])} | {g['calibration']} | "
                f"{fmt(t.get('ece_before'))} | {fmt(t['ece_after'])} | {fmt(g['tuning_s'])} |"
            )
        for fitted_on, b in r["hgb"].items():
            print(
                f"| HGB (sklearn defaults, fit on {fitted_on}) | - | {fmt(b['test']['roc_auc'])} "
                f"{fmt(b['test']['roc_auc_ci'])} | {fmt(b['test']['pr_auc'])} | none | - | "
                f"{fmt(b['test']['ece_after'])} | - |"
            )
            print(
                f"  champion - HGB({fitted_on}) test ROC-AUC: "
                f"{fmt(b['champion_minus_hgb_roc_auc'])} {fmt(b['interval'])}"
            )
    if args.json:
        meta = {"machine": platform.platform(), "cpus": os.cpu_count(), "trials": args.trials}
        args.json.write_text(json.dumps({"meta": meta, "cards": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
