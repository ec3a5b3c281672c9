"""The ad card (Open Bandit click log as a ranking problem) through the pipeline `mlsd run`
drives: etl -> train -> evaluate (ranking metrics, gate) -> register, tiny models."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from mlsd_ray import pipeline
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import load_card
from tests.conftest import REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CARD = REPO / "systems" / "ad_click_ranking.yaml"
TINY = [
    "models.candidates.3.params={epochs: 1, dim: 8, hidden: 16, num_workers: 0}",
    "models.candidates.4.params={num_leaves: 3, rounds: 10, min_data_in_leaf: 5}",
    "ranking.bootstrap_resamples=50",
]


def test_ad_card_ranks_ads_per_segment_end_to_end(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    torch.set_num_threads(1)
    card = load_card(CARD, overrides=TINY)
    work = Workdir.of(tmp_path)
    result = pipeline.run_pipeline(card, work, serve_requests=0)
    assert result["etl"]["rows_in"] == 10_000
    train = pd.read_parquet(work.split_uri(card, "train"))
    # The user is the segment of the four hashed user features; the click is the rating.
    assert train["user_id"].str.count(r"\|").eq(3).all()
    assert set(train["rating"].unique()) <= {0, 1} and train["timestamp"].is_monotonic_increasing
    report = result["evaluate"]
    test = pd.read_parquet(work.split_uri(card, "test"))
    clickers = test.loc[test["rating"] >= 1, "user_id"].nunique()
    assert report["users"] == clickers > 0  # relevance = a click in the test window
    names = {"popular", "recent_popular", "mf", "item2item", "two_tower", "two_stage"}
    assert set(report["metrics"]) == names
    for m in report["metrics"].values():
        assert 0 <= m["ndcg_at_10"] <= 1 and 0 <= m["recall_at_100"] <= 1
    # 80 ads and no seen filter: popular ranks the whole catalogue, so recall@100 is 1.
    assert report["metrics"]["popular"]["recall_at_100"] == 1.0
    gate = report["gate"]
    assert [r["rule"] for r in gate["rules"]] == ["min_value", "beats_baseline"]
    base = report["metrics"]["popular"]["ndcg_at_10"]
    assert gate["passed"] == (gate["value"] > base)
    assert result["register"]["promoted"] == gate["passed"]
