"""Step caching and per-stage resources on a small tabular pipeline (one shared local Ray)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mlsd_ray import pipeline
from mlsd_ray.errors import CardError
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import load_card
from tests.conftest import REPO

pytestmark = pytest.mark.integration

CACHEABLE = ["etl", "train", "evaluate", "register"]


@pytest.fixture(scope="module")
def small(ray_cluster, shared_datasets, tmp_path_factory):
    """The event-registration card on 1,500 real rows with one cheap candidate."""
    tmp = tmp_path_factory.mktemp("stage_cache")
    data = tmp / "sessions.csv"
    source = shared_datasets / "ad_click" / "online_shoppers_dev.csv"
    pd.read_csv(source, dtype=str).head(1500).to_csv(data, index=False)
    overrides = [
        f"data.sources.0.uri={data}",
        "models.candidates=[{name: logreg, kind: logreg, params: {C: 1.0}}]",
        "models.calibration.method=none",
        "evaluation.slices=[]",
        "evaluation.gate.min_value=0.5",
        "evaluation.bootstrap.n_resamples=0",
        "evaluation.latency={requests: 10, max_seconds: 1}",
    ]
    return overrides, Workdir.of(tmp / "work")


def _run(overrides: list[str], workdir: Workdir) -> dict:
    card = load_card(REPO / "systems" / "event_registration.yaml", overrides)
    return pipeline.run_pipeline(card, workdir, serve_requests=0)


def test_a_rerun_skips_unchanged_stages_and_a_changed_train_section_retrains(small) -> None:
    overrides, workdir = small
    first = _run(overrides, workdir)
    assert first["cached"] == [] and first["attempts"] == dict.fromkeys(CACHEABLE, 1)
    version = first["register"]["registered_version"]

    second = _run(overrides, workdir)
    assert second["cached"] == CACHEABLE
    assert all(second[s]["cached"] for s in CACHEABLE)
    assert second["register"]["registered_version"] == version  # nothing registered again
    etl = json.loads(workdir.summary_path("etl").read_text())
    assert etl["cache_key"] and etl["cached"] is False and etl["attempts"] == 1

    changed = _run([*overrides, "models.candidates.0.params.C=0.25"], workdir)
    assert changed["cached"] == ["etl"]
    assert changed["register"]["registered_version"] != version
    assert changed["train"]["cached"] is False
    assert changed["etl"]["dataset_version"] == first["etl"]["dataset_version"]


def test_a_resource_the_cluster_lacks_is_refused_naming_the_card_key(small) -> None:
    overrides, workdir = small
    with pytest.raises(CardError, match=r"stages\.train\.resources\.mlsd_no_such_accelerator"):
        _run([*overrides, "stages.train.resources={mlsd_no_such_accelerator: 1}"], workdir)
