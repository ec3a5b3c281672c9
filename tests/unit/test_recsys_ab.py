"""Sticky A/B assignment and the significance test (simulated traffic, fixed seeds)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsd_ray.recsys.ab import ABTest, assign, report

TEST = ABTest.model_validate(
    {"salt": "exp-1", "arms": [{"name": "control", "weight": 1}, {"name": "ranker", "weight": 1}]}
)


def test_assignment_is_stable_and_depends_on_the_salt() -> None:
    first = [assign(u, TEST).name for u in range(500)]
    assert first == [assign(u, TEST).name for u in range(500)]
    assert first == [assign(str(u), TEST).name for u in range(500)]  # "7" and 7: one user
    other = TEST.model_copy(update={"salt": "exp-2"})
    moved = np.mean([a != assign(u, other).name for u, a in enumerate(first)])
    assert 0.35 < moved < 0.65  # a new experiment reshuffles about half


@pytest.mark.parametrize("weights", [(1, 1), (9, 1), (1, 2, 1)])
def test_split_within_tolerance(weights: tuple[int, ...]) -> None:
    test = ABTest.model_validate(
        {"salt": "s", "arms": [{"name": f"a{i}", "weight": w} for i, w in enumerate(weights)]}
    )
    n = 20_000
    names = pd.Series([assign(f"user-{u}", test).name for u in range(n)]).value_counts()
    for i, w in enumerate(weights):
        expected = w / sum(weights)
        # 4 standard errors of a binomial share: fails by chance about once in 15,000 runs.
        assert abs(names[f"a{i}"] / n - expected) < 4 * np.sqrt(expected * (1 - expected) / n)


def _traffic(effect_ctr: float, effect_watch: float, seed: int, users: int = 4000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        arm = assign(u, TEST).name
        lift = arm == "ranker"
        for _ in range(5):
            click = rng.random() < 0.10 + (effect_ctr if lift else 0.0)
            watch = rng.exponential(600.0 + (effect_watch if lift else 0.0)) if click else 0.0
            rows.append((u, arm, int(click), watch))
    return pd.DataFrame(rows, columns=["user_id", "arm", "click", "watch_s"])


METRICS = [("ctr", "click", "rate"), ("watch_time_s", "watch_s", "mean")]


def test_a_planted_effect_is_detected() -> None:
    out = report(_traffic(0.02, 150.0, seed=1), TEST, METRICS)
    ctr = out["comparisons"]["ranker"]["ctr"]
    assert ctr["significant"] and ctr["interval"][0] < 0.02 < ctr["interval"][1]
    assert out["comparisons"]["ranker"]["watch_time_s"]["significant"]
    assert out["arms"]["ranker"]["ctr"]["mean"] > out["arms"]["control"]["ctr"]["mean"]


def test_no_effect_is_not_detected_beyond_alpha() -> None:
    false_alarms = sum(
        report(_traffic(0.0, 0.0, seed=s, users=1500), TEST, METRICS)["comparisons"]["ranker"][
            "ctr"
        ]["significant"]
        for s in range(20)
    )
    assert false_alarms <= 3  # alpha 0.05 over 20 A/A tests: P(more than 3) is about 1.6 %
