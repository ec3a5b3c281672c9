"""`mlsd ab` end to end without Serve: prediction-log files (the logger the graph uses) +
feedback -> per-arm metrics and the test; and the ranking card loads."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mlsd_ray.cli import app
from mlsd_ray.errors import MlsdError
from mlsd_ray.monitor.log import PredictionLogger
from mlsd_ray.recsys.ab import assign
from mlsd_ray.recsys.serving import LOG_FIELDS
from mlsd_ray.spec import load_card
from tests.conftest import REPO

CARD = REPO / "systems" / "watch_time_ranking.yaml"


def test_ranking_card_loads_with_its_defaults_and_rejects_a_classifier_metric() -> None:
    card = load_card(CARD)
    assert card.framing.category == "ranking" and card.evaluation.gate.metric == "ndcg@10"
    assert card.ranking is not None and [a.name for a in card.ranking.ab.arms] == [
        "control",
        "ranker",
    ]
    with pytest.raises(MlsdError, match=r"evaluation\.gate\.metric"):
        load_card(CARD, overrides=["evaluation.gate.metric=roc_auc"])
    with pytest.raises(MlsdError, match="ranking"):
        load_card(CARD, overrides=["ranking.retriev={}"])


def test_mlsd_ab_reports_the_planted_effect(tmp_path) -> None:
    card = load_card(CARD)
    test = card.ranking.ab
    rng = np.random.default_rng(0)
    log_dir = tmp_path / "work" / "predictions"
    feedback = []
    with PredictionLogger(str(log_dir), flush_every_n=500, fields=LOG_FIELDS) as logger:
        for r in range(3000):
            user = str(r % 700)
            arm = assign(user, test)
            rid = f"r{r}"
            rows = [{"user_id": user, "item_id": str(i), "position": i, "context": "{}"}
                    for i in range(3)]  # fmt: skip
            logger.log(rid, rows, [1.0, 0.5, 0.2], "v1", arm=arm.name)
            for i in range(3):
                p = 0.08 + (0.04 if arm.name == "ranker" else 0.0)
                if rng.random() < p:
                    feedback.append((rid, str(i), 1, rng.exponential(900.0)))
    pd.DataFrame(feedback, columns=["request_id", "item_id", "click", "watch_s"]).to_csv(
        tmp_path / "feedback.csv", index=False
    )
    out = CliRunner().invoke(
        app,
        ["ab", str(CARD), "--feedback", str(tmp_path / "feedback.csv"), "-w",
         str(tmp_path / "work"), "--set", f"monitoring.prediction_log_uri={log_dir}"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    report = json.loads((tmp_path / "work" / "reports" / "ab" / "ab_report.json").read_text())
    assert (
        report["arms"]["control"]["impressions"] + report["arms"]["ranker"]["impressions"] == 9000
    )
    ctr = report["comparisons"]["ranker"]["click"]
    assert ctr["significant"] and ctr["difference"] > 0
    lo, hi = report["arms"]["ranker"]["click"]["interval"]
    assert lo < 0.12 < hi
