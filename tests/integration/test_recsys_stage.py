"""The ranking card through etl -> train -> evaluate -> register (tiny models, real MovieLens)."""

from __future__ import annotations

import json

import pytest
import torch

from mlsd_ray import pipeline, registry
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import load_card
from tests.conftest import REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CARD = REPO / "systems" / "watch_time_ranking.yaml"
TINY = [
    "models.candidates.3.params={epochs: 1, dim: 8, hidden: 16, num_workers: 0}",
    "models.candidates.4.params={num_leaves: 7, rounds: 20, min_data_in_leaf: 50}",
    "ranking.retrieve={two_tower: 30, recent_popular: 20}",
    "ranking.label_windows=2",
    "ranking.bootstrap_resamples=50",
]


def test_ranking_card_stages(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    torch.set_num_threads(1)
    card = load_card(CARD, overrides=TINY)
    work = Workdir.of(tmp_path)
    etl = pipeline.etl(card, work)
    assert etl["rows_in"] == 100_000 and sum(etl["splits"].values()) == 100_000
    train = pipeline.train(card, work)
    assert (work.model_dir("two_stage") / "mlsd_model.json").exists(), train
    report = pipeline.evaluate(card, work)
    names = {"popular", "recent_popular", "mf", "item2item", "two_tower", "two_stage"}
    assert set(report["metrics"]) == names
    for m in report["metrics"].values():
        assert 0 < m["ndcg_at_10"] <= 1 and 0 < m["recall_at_100"] <= 1
    lo, hi = report["analysis"]["two_stage"]["intervals"]["ndcg_at_10"]
    assert lo <= report["metrics"]["two_stage"]["ndcg_at_10"] <= hi
    assert {"cold", "heavy"} <= set(report["analysis"]["two_stage"]["slices"])
    gate = report["gate"]
    base = report["metrics"]["popular"]["ndcg_at_10"]
    assert gate["passed"] == (gate["value"] >= 0.2 and gate["value"] > base)
    assert {r["rule"] for r in gate["rules"]} == {"min_value", "beats_baseline"}
    reg = pipeline.register(card, work, report)
    assert json.loads(json.dumps(reg, default=str))
    assert reg["promoted"] == gate["passed"]

    # A champion now exists (promoted or set by hand as an operator would): the gate is
    # evaluate.gate's, so the same system again does not beat it (paired interval over users
    # [0, 0]) and registration does not promote.
    if not reg["promoted"]:
        registry.set_alias(card, work, registry.CHAMPION, reg["registered_version"])
    again = pipeline.evaluate(card, work)
    assert again["champion"]["version"] == reg["registered_version"]
    ours = again["metrics"]["two_stage"]["ndcg_at_10"]
    assert again["champion"]["metrics"]["ndcg_at_10"] == pytest.approx(ours)
    assert again["gate"]["comparisons"]["ndcg@10"]["interval"] == [0.0, 0.0]
    assert "beats_champion" in {r["rule"] for r in again["gate"]["rules"]}
    assert not again["gate"]["passed"]
    second = pipeline.register(card, work, again)
    assert not second["promoted"] and second["champion_version"] == reg["registered_version"]
