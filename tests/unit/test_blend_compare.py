"""The evaluation report's blend-against-best-member comparison (paired bootstrap)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlsd_ray.errors import CardError
from mlsd_ray.evaluate.blends import blend_comparisons, report_lines
from mlsd_ray.spec import load_card

CARD = Path(__file__).resolve().parents[2] / "systems" / "event_registration.yaml"
CANDIDATES = """[{name: a, kind: logreg}, {name: b, kind: logreg},
  {name: mix, kind: blend, params: {members: [a, b]}}]"""


def test_a_blend_is_compared_with_its_best_member() -> None:
    card = load_card(CARD, overrides=[f"models.candidates={CANDIDATES}"])
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 600)
    noise = rng.normal(0, 1, (3, 600))
    a, b = y + 1.5 * noise[0], y + 1.0 * noise[1]  # b is the better member
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    scored = {"a": (y, sigmoid(a)), "b": (y, sigmoid(b)), "mix": (y, sigmoid(y + 0.3 * noise[2]))}
    got = blend_comparisons(card, scored, {}, n_resamples=200)["mix"]
    assert got["best_member"] == "b" and got["blend"] > got["best_member_value"]
    assert got["interval"][0] > 0 and got["beats_best_member"] is True

    scored["mix"] = scored["b"]  # no better than its best member: no claim
    same = blend_comparisons(card, scored, {}, n_resamples=200)["mix"]
    assert same["difference"] == 0 and same["beats_best_member"] is False
    assert "| mix | b |" in "\n".join(report_lines({"mix": same}))


def test_a_blend_of_unknown_members_is_refused_at_card_load() -> None:
    bad = "[{name: a, kind: logreg}, {name: mix, kind: blend, params: {members: [a, nope]}}]"
    with pytest.raises(CardError, match=r"blend members \['nope'\] are not other models"):
        load_card(CARD, overrides=[f"models.candidates={bad}"])
