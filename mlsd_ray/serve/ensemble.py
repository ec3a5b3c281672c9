"""A registered blend served as a graph (``deployment.ensemble.graph: true``).

An ensemble is a registered model of kind ``blend`` (`mlsd_ray.models.blend`): trained,
evaluated and gated like any candidate, and moved by promote and rollback like any version.
Served plainly, one deployment loads it with all its members. As a graph, each member package
inside it (``members/NN/``, with its own calibration) becomes a ``ModelServer`` of its own, and
the ``Combiner`` applies the blend's stored combiner (``blend.json``) to their answers. Nothing
is fitted when the app is built and no split is read: the graph answers what the blend's own
``Predictor`` answers, labels at its stored threshold included.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from mlsd_ray.errors import CardError
from mlsd_ray.models.blend import INFO, combine, member_folder
from mlsd_ray.models.calibration import Calibrator
from mlsd_ray.models.package import read_manifest
from mlsd_ray.tasks import get_task
from mlsd_ray.tasks.base import Decision


def combiner_config(package: Path, version: str | None = None) -> dict[str, Any]:
    """Plain-JSON config the ``Combiner`` deployment is bound with, read from the blend package
    the alias resolved to (``version``: the registry's; None = the package's own)."""
    package = Path(package)
    manifest = read_manifest(package)
    if manifest.kind != "blend" or not (package / INFO).is_file():
        raise CardError(
            f"deployment.ensemble.graph: the served version ({version or package}) is a "
            f"{manifest.kind!r} model, not a blend; only a blend's members can be served as "
            "separate deployments.",
            why="an ensemble is a registered version that went through evaluation and the gate",
            fix="train a `kind: blend` candidate and let it win the gate (the alias then points "
            "at it), or set deployment.ensemble.graph: false",
        )
    info = json.loads((package / INFO).read_text())
    calibrator = Calibrator.load(package)  # a blend is not calibrated itself; honoured if it is
    return {
        "members": list(info["members"]),
        "folders": [member_folder(i) for i in range(len(info["members"]))],
        "method": info["method"],
        "state": info["combiner"],
        "calibration": None if calibrator is None else asdict(calibrator),
        "category": manifest.category,
        "decision": asdict(
            Decision(list(manifest.classes), manifest.threshold, dict(manifest.class_thresholds))
        ),
        "model_name": manifest.name,
        "model_version": version or str(manifest.metadata.get("version", "local")),
    }


def combined_answer(config: dict[str, Any], scores: np.ndarray) -> tuple[np.ndarray, list[Any]]:
    """(probabilities, labels) from the members' probabilities ``scores`` (rows x members), as
    ``Predictor(blend package)`` gives them: the blend's combiner, then its calibration if any,
    labels by the package's decision rule."""
    p = combine(config["method"], config["state"], np.asarray(scores, dtype=np.float64))
    if config.get("calibration"):
        p = Calibrator(**config["calibration"]).apply(p)
    if len(p) == 0:
        return p, []
    return p, get_task(config["category"]).labels(p, Decision(**config["decision"]))
