"""Ensemble members and their combiner, resolved from the card before the graph is built.

Members are trained packages (``models/<name>`` in the workdir) or package folders. They must
take the same inputs, since one preprocessor validates each request for all of them. The
stacked combiner is fitted on the validation split the first time and kept as JSON at
``deployment.ensemble.stacker_path``; delete the file to refit.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from mlsd_ray.errors import CardError
from mlsd_ray.models.package import read_manifest
from mlsd_ray.serve.combine import StackedCombiner
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard

log = logging.getLogger(__name__)


def member_packages(card: DesignCard, workdir: Workdir) -> dict[str, Path]:
    """Member name -> package folder, checked to exist and to share one input schema."""
    members: dict[str, Path] = {}
    for ref in card.deployment.ensemble.members:
        path = Path(ref) if Path(ref).is_dir() else workdir.model_dir(ref)
        if not (path / "mlsd_model.json").is_file():
            raise CardError(
                f"deployment.ensemble.members: {ref!r} is neither a trained model of this "
                f"workdir ({workdir.model_dir(ref)}) nor a package folder.",
                fix="train it first (`mlsd train CARD --only NAME`) or give a package path",
            )
        members[ref] = path.resolve()
    if len(members) < 2:
        raise CardError("deployment.ensemble.members: an ensemble needs at least two members.")
    schemas = {name: read_manifest(p).inputs for name, p in members.items()}
    first = next(iter(schemas.values()))
    for name, inputs in schemas.items():
        if inputs != first:
            raise CardError(
                f"deployment.ensemble.members: {name!r} takes inputs "
                f"{[i.name for i in inputs]}, the first member {[i.name for i in first]}.",
                why="one preprocessor validates each request for every member",
            )
    for name, p in members.items():
        if read_manifest(p).category != "binary":
            raise CardError(
                f"deployment.ensemble: member {name!r} is not binary; only binary "
                "tasks can be combined"
            )
    return members


def member_scores(members: dict[str, Path], frame: Any) -> np.ndarray:
    """(rows x members) P(positive) of every member on ``frame`` (in-process, for fitting)."""
    from mlsd_ray.predict import Predictor

    predictors = [Predictor(p) for p in members.values()]
    return np.column_stack([p.predict_frame(frame[p.manifest.input_names]) for p in predictors])


def fit_stacker(card: DesignCard, workdir: Workdir, members: dict[str, Path]) -> StackedCombiner:
    """Fit the stacked combiner on the validation split (never the test split)."""
    from mlsd_ray.data.layout import read_split
    from mlsd_ray.data.verify import LABEL

    frame = read_split(workdir.split_uri(card, "validation"))
    y = frame[LABEL].to_numpy()
    return StackedCombiner().fit(member_scores(members, frame), y)


def combiner_config(card: DesignCard, workdir: Workdir, members: dict[str, Path]) -> dict[str, Any]:
    """Plain-JSON config the ``Combiner`` deployment is bound with."""
    e = card.deployment.ensemble
    config: dict[str, Any] = {"members": list(members), "n_members": len(members)}
    if e.combiner == "average":
        return config | {"kind": "average", "weights": e.weights}
    path = Path(workdir.resolve(e.stacker_path))
    if path.is_file():
        stacker = StackedCombiner.load(path)
        if len(stacker.coef_) != len(members):
            raise CardError(
                f"deployment.ensemble.stacker_path: {path} was fitted for "
                f"{len(stacker.coef_)} members, the card lists {len(members)}.",
                fix="delete the file to refit it on the validation split",
            )
    else:
        stacker = fit_stacker(card, workdir, members)
        stacker.save(path)
        log.info("fitted the stacked combiner on the validation split: %s", path)
    return config | {"kind": "stacked", "state": stacker.to_json()}
