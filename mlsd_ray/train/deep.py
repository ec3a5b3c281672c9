"""The training stage's part for deep tabular models (kind ``mlp``): card params, optional
tuning (Ray Tune), training (Ray Train), the learning curve and the training report.

`mlsd_ray.train.stage` calls `fit_deep` for each mlp spec and `write_training_report` once.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard, ModelSpec
from mlsd_ray.tasks import get_task

log = logging.getLogger(__name__)
LABEL = "label"
NUMERIC_TYPES = ("int", "float", "bool")
CATEGORICAL_TYPES = ("category", "string")


def tabular_defaults(params: dict[str, Any], card: DesignCard) -> dict[str, Any]:
    """numeric / categorical input lists from the card unless the params name them."""
    out = dict(params)
    out.setdefault("numeric", [f.name for f in card.framing.inputs if f.type in NUMERIC_TYPES])
    out.setdefault(
        "categorical", [f.name for f in card.framing.inputs if f.type in CATEGORICAL_TYPES]
    )
    return out


def deep_params(spec: ModelSpec, card: DesignCard) -> dict[str, Any]:
    """The spec's params completed from the card and validated (errors name the key)."""
    from mlsd_ray.models.mlp import MLPParams

    params = tabular_defaults(spec.params, card)
    params["category"] = card.framing.category
    params["n_classes"] = get_task(card.framing.category).n_outputs(card.framing.label.classes)
    MLPParams.from_params(params, where=f"models.{spec.name}.params")
    return params


def fit_deep(
    spec: ModelSpec, card: DesignCard, train: pd.DataFrame, val: pd.DataFrame, workdir: Workdir
) -> tuple[Any, dict[str, Any], float, dict[str, Any]]:
    """(fitted TabularMLP, its params, seconds, extra metadata for the manifest/summary)."""
    from mlsd_ray.train.curves import write_curve
    from mlsd_ray.train.mlp import train_mlp

    inputs = card.feature_names
    params = deep_params(spec, card)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    storage = workdir.ray_results_uri
    started = time.perf_counter()
    extra: dict[str, Any] = {}
    if spec.tuning is not None:
        best, info = tune_spec(spec, card, params, train, val, workdir, f"{stamp}")
        params = {**params, **best}
        extra["tuning"] = info
    model = train_mlp(inputs, params, train, val, storage, f"{card.name}-{spec.name}-{stamp}")
    seconds = time.perf_counter() - started
    curve = write_curve(
        model.history_, workdir.reports / "training", spec.name, model.reference_loss_
    )
    extra["learning_curve"] = curve
    extra.update({k: v for k, v in model.train_metrics_.items() if k != "seconds"})
    log.info("%s learning curve: %s (%s)", spec.name, curve["verdict"], curve["detail"])
    return model, params, seconds, extra


def tune_spec(
    spec: ModelSpec,
    card: DesignCard,
    params: dict[str, Any],
    train: pd.DataFrame,
    val: pd.DataFrame,
    workdir: Workdir,
    stamp: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the spec's search; log it to MLflow (parent + child runs); write the report."""
    from mlsd_ray.models.mlp import TabularMLP
    from mlsd_ray.train.spaces import resolve
    from mlsd_ray.train.tune import record_tuning, run_tuning

    assert spec.tuning is not None
    tuning = resolve(spec.tuning, spec.kind, card.framing.category)
    inputs = card.feature_names
    # The preprocessor is fit on the train rows only, once, and shared by all trials.
    data = TabularMLP(inputs, **params).prepare(
        train[inputs], train[LABEL].to_numpy(), val[inputs], val[LABEL].to_numpy()
    )
    name = f"tune-{card.name}-{spec.name}-{stamp}"
    best, trials = run_tuning(
        tuning,
        params,
        data,
        workdir.ray_results_uri,
        name,
        where=f"models.{spec.name}.tuning",
    )
    info = record_tuning(card, workdir, spec.name, tuning, name, best, trials)
    return best, info


def write_training_report(summary: dict[str, Any], folder: Path) -> Path | None:
    """``reports/training/report.md``: each epoch-trained model's learning curve, diagnosis
    and tuning results. None when no model has a learning curve."""
    rows = {n: m for n, m in summary["models"].items() if m.get("learning_curve")}
    if not rows:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"# Training: {summary['card']}", ""]
    for name, m in rows.items():
        c = m["learning_curve"]
        lines += [
            f"## {name} ({m['kind']}): {c['verdict']}",
            "",
            f"{c['detail']}. Epochs run: {c['epochs']}, best epoch: {c.get('best_epoch')}, "
            f"final train/validation loss: {_f(c.get('final_train_loss'))} / "
            f"{_f(c.get('final_val_loss'))} (constant-prediction loss "
            f"{_f(c.get('reference_loss'))}).",
            "",
            f"![{name} learning curve]({Path(c['png']).name})",
            "",
        ]
        if m.get("tuning"):
            t = m["tuning"]
            lines += [
                f"Tuned: {t['trials']} trials ({t['stopped_early']} stopped early), best "
                f"{t['metric']} {_f(t['best'])} with {t['best_config']}; MLflow parent run "
                f"`{t['parent_run_id']}`; table: `{t['report']}`.",
                "",
            ]
    path = folder / "report.md"
    path.write_text("\n".join(lines))
    return path


def _f(v: Any) -> str:
    return "n/a" if v is None else f"{v:.4f}"
