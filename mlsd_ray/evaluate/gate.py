"""The promotion gate: may a candidate take the ``champion`` alias?

Every rule is checked and reported, so the report says exactly why a model was or was not
promoted. Champion and candidate are compared on the same test split: with a paired bootstrap
interval of the improvement when one is given (``Evidence.comparisons``), so that a lucky draw
of the test rows does not move the champion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlsd_ray.spec import LOWER_IS_BETTER, Gate, GateRule, Requirements


@dataclass
class GateDecision:
    passed: bool
    rules: list[dict[str, Any]] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        return [r["detail"] for r in self.rules if not r["passed"]]

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "rules": self.rules, "failed": self.reasons}


@dataclass
class Evidence:
    """What the gate may weigh beyond point metrics (all optional).

    ``comparisons``: metric -> ``bootstrap.paired_difference`` result (challenger - champion);
    ``slices`` / ``champion_slices``: ``slices.slice_metrics`` results; ``latency``: the
    candidate's ``{"p50_ms", "p99_ms"}``; ``behaviour``: ``behaviour.run_suite`` results.
    """

    comparisons: dict[str, dict[str, Any]] = field(default_factory=dict)
    slices: list[dict[str, Any]] = field(default_factory=list)
    champion_slices: list[dict[str, Any]] = field(default_factory=list)
    latency: dict[str, Any] | None = None
    requirements: Requirements | None = None
    behaviour: list[dict[str, Any]] = field(default_factory=list)
    #: The candidate's ``ensure_threshold`` result: a business objective not met on validation
    #: fails the gate unless ``allow_unmet`` (``threshold_objective.allow_unmet``).
    threshold_choice: dict[str, Any] | None = None
    allow_unmet: bool = False


def decide(
    gate: Gate,
    candidate: dict[str, Any],
    baseline: dict[str, Any] | None,
    champion: dict[str, Any] | None,
    evidence: Evidence | None = None,
) -> GateDecision:
    """Check the card's gate rules on metric dicts from ``classification_metrics``."""
    ev = evidence or Evidence()
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
        if gate.use_intervals and m in ev.comparisons:
            rule("beats_champion", *_interval_rule(m, gate.min_improvement, ev.comparisons[m]))
        else:
            c = champion[m]
            need = _needed(c, gate.min_improvement, gate.improvement)
            # 0 means "strictly better"; a negative margin tolerates a loss that small.
            op = ">=" if gate.min_improvement != 0 else ">"
            ok = value >= need if gate.min_improvement != 0 else value > c
            rule(
                "beats_champion",
                ok,
                f"{m} {value:.4f} vs champion {c:.4f} (needs {op} {need:.4f})",
            )
    for extra in gate.rules:
        _extra_rule(rule, extra, gate, candidate, champion, ev)
    _latency_rule(rule, ev)
    _objective_rule(rule, ev)
    for test in ev.behaviour:
        if test.get("gate"):
            rule(
                f"behaviour[{test['name']}]",
                test["passed"],
                f"{test['type']} test {test['name']!r}: pass rate {test['pass_rate']:.2f} "
                f"(needs >= {test['min_pass_rate']:.2f})",
            )
    return GateDecision(all(r["passed"] for r in rules), rules)


def _needed(champion_value: float, min_improvement: float, kind: str) -> float:
    if kind == "relative":
        return champion_value + abs(champion_value) * min_improvement
    return champion_value + min_improvement


def _interval_rule(metric: str, min_improvement: float, cmp: dict[str, Any]) -> tuple[bool, str]:
    """The improvement's lower bound must reach ``min_improvement`` (> 0 when that is 0)."""
    unit = "relative " if cmp["relative"] else ""
    if cmp["interval"] is None:
        return False, f"{metric}: the {unit}improvement has no interval (one class in resamples)"
    lo, hi = cmp["interval"]
    ok = lo >= min_improvement if min_improvement != 0 else lo > 0
    op = ">=" if min_improvement != 0 else ">"
    pct = round(cmp["confidence"] * 100)
    return ok, (
        f"{metric} {unit}improvement over champion {cmp['mean']:+.4f}, {pct}% CI "
        f"[{lo:+.4f}, {hi:+.4f}] (lower bound needs {op} {min_improvement:.4f})"
    )


def _extra_rule(
    rule: Any,
    extra: GateRule,
    gate: Gate,
    candidate: dict[str, Any],
    champion: dict[str, Any] | None,
    ev: Evidence,
) -> None:
    where = f"slice {extra.slice}" if extra.slice else "test split"
    name = f"{extra.metric}@{extra.slice}" if extra.slice else extra.metric
    if extra.class_name:  # one class of a multiclass task, one-vs-rest
        where, name = f"class {extra.class_name}", f"{extra.metric}[{extra.class_name}]"
        mine = candidate.get("per_class", {}).get(extra.class_name)
        theirs = None if champion is None else champion.get("per_class", {}).get(extra.class_name)
    elif extra.slice:
        mine = _slice(ev.slices, extra.slice)
        theirs = _slice(ev.champion_slices, extra.slice) if champion is not None else None
    else:
        mine, theirs = candidate, champion
    value = None if mine is None else mine.get(extra.metric)
    if extra.min_value is not None:
        ok = value is not None and value >= extra.min_value
        shown = "undefined" if value is None else f"{value:.4f}"
        rule(f"min_value[{name}]", ok, f"{extra.metric} on {where} {shown} (min {extra.min_value})")
    if extra.min_improvement is not None and theirs is not None:
        cmp = ev.comparisons.get(extra.metric) if not extra.slice else None
        if gate.use_intervals and cmp is not None:
            ok, detail = _interval_rule(extra.metric, extra.min_improvement, cmp)
            rule(f"beats_champion[{name}]", ok, detail)
            return
        c = theirs.get(extra.metric)
        if value is None or c is None:
            rule(f"beats_champion[{name}]", False, f"{extra.metric} on {where} is undefined")
            return
        need = _needed(c, extra.min_improvement, gate.improvement)
        rule(
            f"beats_champion[{name}]",
            value >= need,
            f"{extra.metric} on {where} {value:.4f} vs champion {c:.4f} (needs >= {need:.4f})",
        )


def _slice(results: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    for s in results:
        if s["slice"] == name:
            return dict(s["metrics"] or {})
    return None


def _objective_rule(rule: Any, ev: Evidence) -> None:
    """The business constraint (e.g. ``min_precision: 0.9``) is a gate rule: a threshold that
    cannot meet it on validation fails the gate, with the reason, unless the card allows it."""
    choice = ev.threshold_choice
    if choice is None or choice.get("rule") in (None, "fixed", "argmax", "class_thresholds"):
        return
    achieved = choice.get("achieved", {})
    shown = ", ".join(f"{k} {v:.4f}" for k, v in achieved.items() if isinstance(v, float))
    if choice.get("met", True):
        rule("threshold_objective", True, f"{choice['rule']} met on validation ({shown})")
        return
    allowed = ev.allow_unmet
    rule(
        "threshold_objective",
        allowed,
        f"{choice['rule']} not met on validation: no threshold reaches the objective (best: "
        f"{shown} at {choice['threshold']:.4f})"
        + ("; allowed by threshold_objective.allow_unmet" if allowed else ""),
    )


def _latency_rule(rule: Any, ev: Evidence) -> None:
    req = ev.requirements
    if req is None or ev.latency is None or req.priority != "latency":
        return
    p99 = ev.latency["p99_ms"]
    rule(
        "latency_p99",
        p99 <= req.latency_p99_ms,
        f"single-replica p99 {p99:.2f} ms {'<=' if p99 <= req.latency_p99_ms else '>'} "
        f"budget {req.latency_p99_ms} ms (requirements.priority: latency)",
    )


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
