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

import re
import string
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlsd_ray.errors import CardError
from mlsd_ray.predict import Predictor

NAMES = ["Alex", "Maria", "Sam", "Priya", "John", "Chen", "Fatima", "Lucas", "Emma", "Omar"]
URL = "https://example.com/post/123"


class Perturbation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: Text added at the end / start, e.g. ``append: " you worthless idiot"``.
    append: str | None = None
    prepend: str | None = None
    #: Append a URL.
    add_url: bool = False
    #: Replace every name of ``NAMES`` by the next one in the list.
    change_names: bool = False
    #: Remove punctuation / add "!!!" at the end.
    strip_punctuation: bool = False
    add_exclamations: bool = False

    def apply(self, text: str) -> str:
        if self.change_names:
            for i, name in enumerate(NAMES):  # one pass, so Alex->Maria is not undone later
                text = re.sub(rf"\b{name}\b", f"\0{i}\0", text)
            text = re.sub(r"\0(\d+)\0", lambda m: NAMES[(int(m[1]) + 1) % len(NAMES)], text)
        if self.strip_punctuation:
            text = text.translate(str.maketrans("", "", string.punctuation))
        if self.add_exclamations:
            text = text + "!!!"
        if self.add_url:
            text = f"{text} {URL}"
        if self.prepend:
            text = self.prepend + text
        if self.append:
            text = text + self.append
        return text


class BehaviourTest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    type: Literal["min_functionality", "invariance", "directional"]
    texts: list[str] = Field(min_length=1)
    expect: Literal["positive", "negative"] | None = None
    perturb: Perturbation | None = None
    max_change: float = Field(0.1, ge=0)
    direction: Literal["up", "down"] = "up"
    min_change: float = Field(0.0, ge=0)
    min_pass_rate: float = Field(1.0, ge=0, le=1)
    gate: bool = False


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tests: list[BehaviourTest] = Field(min_length=1)


def load_suite(path: str | Path) -> Suite:
    path = Path(path)
    if not path.is_file():
        raise CardError(
            f"evaluation.behaviour: {str(path)!r} does not exist.",
            fix="point it at a YAML file of behavioural tests (paths are relative to the card)",
        )
    try:
        suite = Suite.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (ValidationError, yaml.YAMLError) as err:
        raise CardError(
            f"evaluation.behaviour: {str(path)!r} is not a valid suite: {err}"
        ) from None
    for t in suite.tests:
        if t.type == "min_functionality" and t.expect is None:
            raise CardError(f"behaviour test {t.name!r}: min_functionality needs `expect`.")
        if t.type != "min_functionality" and t.perturb is None:
            raise CardError(f"behaviour test {t.name!r}: {t.type} needs `perturb`.")
    return suite


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
