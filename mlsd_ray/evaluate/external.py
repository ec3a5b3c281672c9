"""Evaluate a registered model on any data set that has the card's schema.

Users keep their own held-out data; this reads it like a card source (same renames, same
verification and quarantine), scores it with the model behind an alias and returns metrics.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any

from mlsd_ray.errors import DataError
from mlsd_ray.evaluate.stage import score
from mlsd_ray.metrics import classification_metrics
from mlsd_ray.models.package import read_manifest
from mlsd_ray.runtime import ensure_ray
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard

log = logging.getLogger(__name__)


def evaluate_alias_on(
    card: DesignCard, workdir: Workdir, data_uri: str, alias: str = "champion"
) -> dict[str, Any]:
    from mlsd_ray import registry
    from mlsd_ray.data.sources import read_source
    from mlsd_ray.data.verify import good_rows

    t0 = time.perf_counter()
    ensure_ray()
    version, model_dir = registry.fetch_model(card, workdir, alias)
    # The data has the schema of the card's (first) source: same format rules and renames.
    source = card.data.sources[0].model_copy(update={"uri": data_uri, "format": None})
    raw = read_source(source, card, workdir.root / "staging").materialize()
    rows_in = raw.count()
    good = raw.map_batches(partial(good_rows, card=card), batch_format="pandas").materialize()
    rows_ok = good.count()
    if rows_ok == 0:
        raise DataError(
            f"No usable rows in {data_uri!r} ({rows_in} read, all quarantined).",
            fix="check that the data has the card's columns and label values",
        )
    y, p = score(good, model_dir, version)
    # The model decides at the threshold it was promoted with (chosen for the business
    # objective), unless the card fixes one.
    fixed = card.evaluation.threshold_objective.rule == "fixed"
    threshold = card.evaluation.threshold if fixed else read_manifest(model_dir).threshold
    metrics = classification_metrics(y, p, threshold)
    log.info("%s v%s on %s: %s", card.name, version, data_uri, metrics)
    return {
        "card": card.name,
        "data": data_uri,
        "alias": alias,
        "model_version": version,
        "rows_in": rows_in,
        "rows_ok": rows_ok,
        "rows_quarantined": rows_in - rows_ok,
        "metrics": metrics,
        "seconds": round(time.perf_counter() - t0, 2),
    }
