"""The evaluation stage: every trained model, the current champion and the gate on one split.

Predictions run as Ray Data batch inference with the same ``Predictor`` class Serve uses, so
offline numbers describe what the endpoint will answer.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from mlsd_ray import storage
from mlsd_ray.errors import DataError
from mlsd_ray.evaluate.gate import decide
from mlsd_ray.evaluate.metrics import classification_metrics, regression_metrics
from mlsd_ray.evaluate.plots import confusion_plot, roc_plot
from mlsd_ray.evaluate.report import write_markdown
from mlsd_ray.models.package import MANIFEST, read_manifest
from mlsd_ray.predict import PREDICTION, PROBABILITY, Predictor
from mlsd_ray.runtime import ensure_ray
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import LOWER_IS_BETTER, DesignCard

log = logging.getLogger(__name__)


def score(ds: Any, model_dir: Path, version: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(labels, positive-class probabilities) for a Ray Dataset with the card's columns and
    ``label``, scored by ``Predictor`` actors (the class Serve uses)."""
    scored = ds.map_batches(
        Predictor,
        fn_constructor_args=(str(model_dir), version),
        batch_format="pandas",
        batch_size=256,
        concurrency=1,  # one model copy: the cluster is small and loading dominates
    )
    column = PREDICTION if read_manifest(model_dir).category == "regression" else PROBABILITY
    frame = scored.select_columns(["label", column]).to_pandas()
    return frame["label"].to_numpy(), frame[column].to_numpy(dtype=np.float64)


def batch_predict(
    model_dir: Path, data_uri: str, version: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``score`` over a Parquet split written by the ETL stage."""
    import ray

    ensure_ray()
    fs, path = storage.filesystem(data_uri)
    y, p = score(ray.data.read_parquet(path, filesystem=fs), model_dir, version)
    if len(y) == 0:
        raise DataError(f"No rows to evaluate in {data_uri!r}.", fix="run the ETL stage first")
    return y, p


def trained_models(card: DesignCard, workdir: Workdir) -> list[str]:
    """Names of the card's models that have a package in the workdir, baseline first."""
    names = [card.models.baseline.name] + [m.name for m in card.models.candidates]
    return [n for n in names if (workdir.model_dir(n) / MANIFEST).is_file()]


def validation_leaderboard(
    card: DesignCard, workdir: Workdir, names: list[str]
) -> dict[str, float]:
    """The gate metric of each trained model on the *validation* split, as training recorded
    it: models are ranked before anyone looks at the test split."""
    metric = card.evaluation.gate.metric
    scores = {}
    for name in names:
        meta = read_manifest(workdir.model_dir(name)).metadata
        value = meta.get("validation", {}).get(metric, meta.get(f"validation_{metric}"))
        if value is not None:
            scores[name] = float(value)
    sign = 1 if metric in LOWER_IS_BETTER else -1  # best first: rmse ascending, AUC descending
    return dict(sorted(scores.items(), key=lambda kv: sign * kv[1]))


def _select_candidate(card: DesignCard, leaderboard: dict[str, float], names: list[str]) -> str:
    """The model to put forward: the best on validation (the baseline may win: a cheap model
    that is as good is a fine champion). Without validation scores, the last candidate."""
    if leaderboard:
        return next(iter(leaderboard))
    candidates = [n for n in names if n != card.models.baseline.name]
    return candidates[-1] if candidates else names[0]


def evaluate_models(
    card: DesignCard, workdir: Workdir, data_uri: str | None = None
) -> dict[str, Any]:
    """Metrics for every trained model and the champion; the gate's decision; plots and a
    JSON + Markdown report under ``workdir/reports/evaluation``."""
    from mlsd_ray import registry

    t0 = time.perf_counter()
    data_uri = data_uri or workdir.split_uri(card, "test")
    out_dir = workdir.reports / "evaluation"
    out_dir.mkdir(parents=True, exist_ok=True)
    threshold = card.evaluation.threshold
    regression = card.framing.category == "regression"

    def measure(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
        return regression_metrics(y, p) if regression else classification_metrics(y, p, threshold)

    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    results: dict[str, dict[str, Any]] = {}
    for name in trained_models(card, workdir):
        log.info("evaluating %s on %s", name, data_uri)
        y, p = batch_predict(workdir.model_dir(name), data_uri)
        curves[name], results[name] = (y, p), measure(y, p)
    if not results:
        raise DataError(
            "No trained model to evaluate.",
            fix=f"run `mlsd train` first; packages live in {workdir.models}",
        )

    champion = registry.get_alias(card, workdir, registry.CHAMPION)
    champion_metrics = None
    if champion is not None:
        version, path = registry.fetch_model(card, workdir, registry.CHAMPION)
        y, p = batch_predict(path, data_uri, version)
        champion_metrics = measure(y, p)
        curves[f"champion v{version}"] = (y, p)

    leaderboard = validation_leaderboard(card, workdir, list(results))
    candidate = _select_candidate(card, leaderboard, list(results))
    baseline = results.get(card.models.baseline.name)
    decision = decide(
        card.evaluation.gate,
        results[candidate],
        None if candidate == card.models.baseline.name else baseline,
        champion_metrics,
    )

    if regression:
        from mlsd_ray.evaluate.regression import regression_plots

        plots = regression_plots(curves, out_dir, f"{card.name} on {Path(data_uri).name}")
    else:
        title = f"{card.name}: ROC on {Path(data_uri).name}"
        plots = [roc_plot(curves, out_dir / "roc.png", title)]
    for name, m in ({} if regression else results).items():  # confusion matrices: classes
        plots.append(
            confusion_plot(
                m["confusion_matrix"],
                card.framing.label.classes,
                out_dir / f"confusion_{name}.png",
                f"{name} @ {threshold}",
            )
        )
    report = {
        "card": card.name,
        "data": data_uri,
        "metrics": results,
        "baseline": card.models.baseline.name,
        "candidate": candidate,
        "validation_leaderboard": leaderboard,
        "champion": None
        if champion is None
        else {
            "version": champion.version,
            "model_name": champion.model_name,
            "metrics": champion_metrics,
        },
        "gate": {"config": card.evaluation.gate.model_dump(), **decision.as_dict()},
        "plots": [str(p) for p in plots],
        "seconds": round(time.perf_counter() - t0, 2),
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    write_markdown(report, out_dir / "report.md")
    storage.write_json(str(workdir.summary_path("evaluate")), report)
    log.info("evaluation report: %s", out_dir / "report.md")
    return report
