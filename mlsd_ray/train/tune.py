"""Hyperparameter search with Ray Tune: Optuna proposes, ASHA stops early.

`run_search` drives any kind's trial function (`mlsd_ray.train.tune_kinds` has the GBDT and
single-fit ones); `run_tuning` is the mlp's. An mlp trial trains in its own Tune worker
(1 CPU) with the same `fit_net` loop as everything else and reports after every epoch, so
ASHA can stop a trial whose validation loss trails at a rung (``grace_period``, then every
``reduction_factor``-fold more epochs up to ``max_t``).
The driver then records every trial as a child run of one MLflow parent run, writes the trial
table (Markdown + JSON) and a PNG of the per-epoch metric, and returns the best configuration;
the training stage retrains it on the train split and packages it like any other model.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlsd_ray.errors import CardError
from mlsd_ray.models.mlp import Arrays, MLPParams, build_net, fit_net, make_loss
from mlsd_ray.spec import SearchDim, Tuning

if TYPE_CHECKING:
    from mlsd_ray.settings import Workdir
    from mlsd_ray.spec import DesignCard

log = logging.getLogger(__name__)
#: What every mlp trial reports per epoch, so what ``tuning.metric`` may name.
REPORTED = ("val_loss", "train_loss")
#: What a trial's history keeps per report.
HISTORY_KEYS = ("epoch", "train_loss", "val_loss", "val_roc_auc")


def search_space(
    space: dict[str, SearchDim], where: str, known: set[str] | None = None, kind: str = "mlp"
) -> dict[str, Any]:
    """The card's space as Ray Tune domains (OptunaSearch converts them)."""
    from ray import tune

    known = set(MLPParams.model_fields) if known is None else known
    out: dict[str, Any] = {}
    for name, dim in space.items():
        if name not in known:
            raise CardError(
                f"{where}.space.{name}: not an {kind} option.", fix=f"tune one of {sorted(known)}"
            )
        if dim.type == "choice":
            out[name] = tune.choice(list(dim.values or []))
        elif dim.type == "int":
            out[name] = tune.randint(int(dim.low or 0), int(dim.high or 0) + 1)  # inclusive
        elif dim.type == "loguniform":
            out[name] = tune.loguniform(float(dim.low or 0), float(dim.high or 0))
        else:
            out[name] = tune.uniform(float(dim.low or 0), float(dim.high or 0))
    return out


def _trial(config: dict[str, Any], base: dict[str, Any], data: Arrays) -> None:
    """One trial: the base params with the sampled values, trained in this process."""
    import torch
    from ray import tune

    torch.set_num_threads(1)
    p = MLPParams.model_validate({**base, **config})
    net = build_net(p, data.X.shape[1])

    def report(record: dict[str, Any], final: bool, best: Any) -> None:
        tune.report({k: v for k, v in record.items() if v is not None})

    fit_net(net, make_loss(p, data.y), data, p, report)


def run_tuning(
    tuning: Tuning,
    base: dict[str, Any],
    data: Arrays,
    storage_path: str,
    name: str,
    where: str,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(best sampled config, one row per trial with its per-epoch history)."""
    if tuning.metric not in REPORTED:
        raise CardError(
            f"{where}.metric: {tuning.metric!r} is not reported by the trials.",
            fix=f"use one of {list(REPORTED)}",
        )
    space = search_space(tuning.space, where)
    # Trials run in the Tune worker, one CPU each, for at most max_t epochs.
    trial_base = {**base, "epochs": tuning.max_t, "num_workers": 0, "cpus_per_worker": 1}
    return run_search(tuning, _trial, space, trial_base, data, storage_path, name, where)


def run_search(
    tuning: Tuning,
    trial: Any,
    space: dict[str, Any],
    base: dict[str, Any],
    data: Any,
    storage_path: str,
    name: str,
    where: str,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run ``trial(config, base=..., data=...)`` under Optuna + ASHA (``training_iteration`` =
    reports so far); (best sampled config, one row per trial with its history)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from mlsd_ray.train.mlp import storage_args

    assert tuning.metric is not None and tuning.mode is not None  # spaces.resolve fills them
    trainable = tune.with_resources(tune.with_parameters(trial, base=base, data=data), {"cpu": 1})
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=tuning.metric,
            mode=tuning.mode,
            search_alg=OptunaSearch(seed=tuning.seed),
            scheduler=ASHAScheduler(
                time_attr="training_iteration",
                max_t=tuning.max_t,
                grace_period=tuning.grace_period,
                reduction_factor=tuning.reduction_factor,
            ),
            num_samples=tuning.num_samples,
            max_concurrent_trials=tuning.max_concurrent_trials,
            time_budget_s=tuning.time_budget_s,
            reuse_actors=True,  # a fresh process per trial re-imports torch (seconds each)
        ),
        run_config=tune.RunConfig(name=name, verbose=0, **storage_args(storage_path)),
    )
    grid = tuner.fit()
    trials: list[dict[str, Any]] = []
    for i in range(len(grid)):
        result = grid[i]
        frame = result.metrics_dataframe if result.metrics_dataframe is not None else pd.DataFrame()
        history = [
            {k: _clean(row.get(k)) for k in HISTORY_KEYS if k in row}
            for row in frame.to_dict(orient="records")
        ]
        metric = tuning.metric
        values = [h[metric] for h in history if h.get(metric) is not None]
        best = (min if tuning.mode == "min" else max)(values) if values else None
        epochs = len(history)
        trials.append(
            {
                "trial": f"trial_{i + 1}_{(result.metrics or {}).get('trial_id', '')}",
                "config": {k: (result.config or {}).get(k) for k in space},
                "epochs": epochs,
                "best": best,
                "status": "error"
                if result.error
                else "stopped_early"
                if epochs < tuning.max_t
                else "completed",
                "history": history,
            }
        )
    ok = [t for t in trials if t["best"] is not None]
    if not ok:
        raise CardError(
            f"{where}: no trial reported {tuning.metric!r}.",
            fix="see the trial errors above; check the search space bounds",
        )
    winner = (min if tuning.mode == "min" else max)(ok, key=lambda t: t["best"])
    for t in trials:
        t["is_best"] = t is winner
    log.info("tuning %s: best %s = %s with %s", name, tuning.metric, winner["best"], winner)
    return dict(winner["config"]), trials


def record_tuning(
    card: DesignCard,
    workdir: Workdir,
    model: str,
    tuning: Tuning,
    run_name: str,
    best: dict[str, Any],
    trials: list[dict[str, Any]],
) -> dict[str, Any]:
    """After any kind's search: the trials report, the search in MLflow (a parent run, a
    child per trial) and the tuning info the package's manifest keeps."""
    from mlsd_ray import registry

    folder = workdir.reports / "tuning" / model
    paths = write_tuning_report(trials, tuning, folder, model)
    winner = next(t for t in trials if t.get("is_best"))
    parent = registry.log_tuning(
        card,
        workdir,
        run_name=run_name,
        params={"model": model, "tuning": tuning.model_dump(mode="json"), "best": best},
        metrics={f"best_{tuning.metric}": winner["best"], "trials": len(trials)},
        trials=trials,
        artifacts=paths,
    )
    return {
        "parent_run_id": parent,
        "best_config": best,
        "best": winner["best"],
        "metric": tuning.metric,
        "trials": len(trials),
        "stopped_early": sum(t["status"] == "stopped_early" for t in trials),
        "report": str(folder / "trials.md"),
    }


def _clean(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    return v.item() if hasattr(v, "item") else v


def write_tuning_report(
    trials: list[dict[str, Any]], tuning: Tuning, folder: Path, name: str
) -> list[Path]:
    """``trials.json``, ``trials.md`` (the table, best first) and ``tuning.png``."""
    from mlsd_ray.plots import pyplot

    folder.mkdir(parents=True, exist_ok=True)
    ranked = sorted(
        trials,
        key=lambda t: (t["best"] is None, (t["best"] or 0) * (1 if tuning.mode == "min" else -1)),
    )
    (folder / "trials.json").write_text(json.dumps(ranked, indent=1, default=str))
    keys = list(tuning.space)
    lines = [
        f"# Tuning {name}: {len(trials)} trials, {tuning.metric} ({tuning.mode})",
        "",
        f"ASHA grace_period {tuning.grace_period}, max_t {tuning.max_t}, reduction_factor "
        f"{tuning.reduction_factor}; Optuna search. Best first.",
        "",
        "| trial | " + " | ".join(keys) + f" | best {tuning.metric} | epochs | status |",
        "|---|" + "---|" * (len(keys) + 3),
    ]
    for t in ranked:
        cells = [_fmt(t["config"].get(k)) for k in keys]
        mark = " **best**" if t.get("is_best") else ""
        lines.append(
            f"| {t['trial']}{mark} | "
            + " | ".join(cells)
            + f" | {_fmt(t['best'])} | {t['epochs']} | {t['status']} |"
        )
    lines += ["", "![tuning](tuning.png)", ""]
    (folder / "trials.md").write_text("\n".join(lines))

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for t in trials:
        points = [(h["epoch"], h[tuning.metric]) for h in t["history"] if h.get(tuning.metric)]
        if points:
            style = "-" if t["status"] == "completed" else "--"
            label = f"{t['trial'].split('_')[1]}: {t['status']}" + (" (best)" * t["is_best"])
            lw = 2 if t["is_best"] else 1
            ax.plot(*zip(*points, strict=True), style, marker=".", lw=lw, label=label)
    ax.legend(fontsize=7)
    ax.set(
        xlabel="epoch",
        ylabel=tuning.metric,
        title=f"{name}: trials (dashed = stopped early by ASHA)",
    )
    fig.tight_layout()
    fig.savefig(folder / "tuning.png", dpi=110)
    plt.close(fig)
    return [folder / "trials.json", folder / "trials.md", folder / "tuning.png"]


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
