"""The promotion gate: may a candidate take the ``champion`` alias?

Every rule is checked and reported, so the report says exactly why a model was or was not
promoted. Champion and candidate are compared on the same test split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlsd_ray.spec import LOWER_IS_BETTER, Gate


@dataclass
class GateDecision:
    passed: bool
    rules: list[dict[str, Any]] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        return [r["detail"] for r in self.rules if not r["passed"]]

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "rules": self.rules, "failed": self.reasons}


def decide(
    gate: Gate,
    candidate: dict[str, Any],
    baseline: dict[str, Any] | None,
    champion: dict[str, Any] | None,
) -> GateDecision:
    """Check the card's gate rules on metric dicts from ``classification_metrics``."""
    m = gate.metric
    value = candidate.get(m)
    rules: list[dict[str, Any]] = []

    def rule(name: str, ok: bool, detail: str) -> None:
        rules.append({"rule": name, "passed": bool(ok), "detail": detail})

    if value is None:
        rule("metric_defined", False, f"{m} is undefined on the test split (one class only)")
        return GateDecision(False, rules)
    if m in LOWER_IS_BETTER:  # rmse, mae, mse: smaller wins, the floor becomes a ceiling
        return _decide_lower(gate, value, baseline, champion)
    rule(
        "min_value",
        value >= gate.min_value,
        f"{m} {value:.4f} {'>=' if value >= gate.min_value else '<'} minimum {gate.min_value}",
    )
    if gate.must_beat_baseline and baseline is not None and baseline.get(m) is not None:
        b = baseline[m]
        rule("beats_baseline", value > b, f"{m} {value:.4f} vs baseline {b:.4f}")
    if champion is not None and champion.get(m) is not None:
        c = champion[m]
        need = c + gate.min_improvement
        op = ">=" if gate.min_improvement > 0 else ">"
        ok = value >= need if gate.min_improvement > 0 else value > c
        rule(
            "beats_champion",
            ok,
            f"{m} {value:.4f} vs champion {c:.4f} (needs {op} {need:.4f})",
        )
    return GateDecision(all(r["passed"] for r in rules), rules)


def _decide_lower(
    gate: Gate, value: float, baseline: dict[str, Any] | None, champion: dict[str, Any] | None
) -> GateDecision:
    """The same rules for a lower-is-better metric: ``max_value`` is the ceiling and the
    candidate must be below the baseline and ``min_improvement`` below the champion."""
    m = gate.metric
    rules: list[dict[str, Any]] = []

    def rule(name: str, ok: bool, detail: str) -> None:
        rules.append({"rule": name, "passed": bool(ok), "detail": detail})

    if gate.max_value is not None:
        ok = value <= gate.max_value
        rule("max_value", ok, f"{m} {value:.4f} {'<=' if ok else '>'} maximum {gate.max_value}")
    if gate.must_beat_baseline and baseline is not None and baseline.get(m) is not None:
        b = baseline[m]
        rule("beats_baseline", value < b, f"{m} {value:.4f} vs baseline {b:.4f} (lower wins)")
    if champion is not None and champion.get(m) is not None:
        c = champion[m]
        need = c - gate.min_improvement
        ok = value <= need if gate.min_improvement > 0 else value < c
        op = "<=" if gate.min_improvement > 0 else "<"
        rule("beats_champion", ok, f"{m} {value:.4f} vs champion {c:.4f} (needs {op} {need:.4f})")
    return GateDecision(all(r["passed"] for r in rules), rules)
