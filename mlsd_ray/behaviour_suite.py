"""The behaviour suite's schema (CheckList-style tests declared in YAML; see
mlsd_ray.evaluate.behaviour, which runs them). It sits below the card so that a suite is checked
when the card loads, before any stage runs."""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlsd_ray.errors import CardError

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
