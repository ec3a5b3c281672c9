"""Behavioural tests for text models (CheckList style), declared in a small YAML file.

Three types, each over a list of texts:

* ``min_functionality``: obvious cases; a text passes when the model's decision at its
  threshold is ``expect`` (positive / negative);
* ``invariance``: a perturbation that must not matter (other names, a URL, punctuation); a
  text passes when the score moves by at most ``max_change``;
* ``directional``: a perturbation that must move the score (``direction: up`` = adding an
  insult raises it) by more than ``min_change``.

A test passes when at least ``min_pass_rate`` of its texts pass; with ``gate: true`` a failing
test is also a gate rule. Example::

    tests:
      - {name: obvious_harmful, type: min_functionality, expect: positive,
         texts: ["shut up you pathetic loser"]}
      - {name: url, type: invariance, perturb: {add_url: true}, max_change: 0.1,
         texts: ["made soup for dinner"]}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mlsd_ray.behaviour_suite import BehaviourTest, Suite, load_suite
from mlsd_ray.predict import Predictor

__all__ = ["BehaviourTest", "Suite", "load_suite", "run_suite", "run_test"]


def _score(predictor: Predictor, texts: list[str]) -> np.ndarray:
    return np.asarray(predictor.predict(list(texts)), dtype=np.float64)


def run_test(predictor: Predictor, test: BehaviourTest) -> dict[str, Any]:
    before = _score(predictor, test.texts)
    if test.type == "min_functionality":
        flagged = before >= predictor.threshold
        ok = flagged if test.expect == "positive" else ~flagged
        after = None
    else:
        assert test.perturb is not None
        perturbed = [test.perturb.apply(t) for t in test.texts]
        after = _score(predictor, perturbed)
        delta = after - before
        if test.type == "invariance":
            ok = np.abs(delta) <= test.max_change
        else:
            ok = delta > test.min_change if test.direction == "up" else -delta > test.min_change
    rate = float(ok.mean())
    failures = [
        {"text": t, "score": float(b), **({} if after is None else {"perturbed": float(a)})}
        for t, b, a, good in zip(
            test.texts, before, after if after is not None else before, ok, strict=True
        )
        if not good
    ][:5]
    return {
        "name": test.name,
        "type": test.type,
        "cases": len(test.texts),
        "pass_rate": rate,
        "min_pass_rate": test.min_pass_rate,
        "passed": rate >= test.min_pass_rate,
        "gate": test.gate,
        "failures": failures,
    }


def run_suite(predictor: Predictor, suite: Suite | str | Path) -> list[dict[str, Any]]:
    """Every test of the suite against one model."""
    if not isinstance(suite, Suite):
        suite = load_suite(suite)
    return [run_test(predictor, t) for t in suite.tests]
