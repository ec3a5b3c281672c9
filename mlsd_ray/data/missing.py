"""Missing values per input column, for the data report: how many rows lacked a value, and
whether the card should mark the input ``required: false``.

A required input's blanks quarantine their rows (verification names the column in the
reason, ``missing value in 'X'``); an optional input's blanks stay in the splits as nulls and
the model's preprocessing fills them (``TabularPreprocessor``: median plus a ``#missing``
indicator, or NaN for the GBDTs). A quarantined row records only the first check it failed,
so a required column's count is a lower bound when rows fail several checks.
"""

from __future__ import annotations

import re
from typing import Any

from mlsd_ray.spec import DesignCard

_MISSING = re.compile(r"^missing value in '(?P<column>.*)'$")
#: Up to this share of blank rows, imputing keeps more signal than dropping the rows.
SUGGEST_MAX_RATE = 0.5


def missing_by_column(
    card: DesignCard, reasons: list[str], profile: dict[str, Any], rows_in: int
) -> dict[str, dict[str, Any]]:
    """column -> {required, missing_rows, missing_rate, action, suggestion} for every input
    that had a blank (quarantined or kept)."""
    quarantined: dict[str, int] = {}
    for reason in reasons:
        match = _MISSING.match(reason)
        if match:
            quarantined[match["column"]] = quarantined.get(match["column"], 0) + 1
    columns = profile.get("columns", {})
    out: dict[str, dict[str, Any]] = {}
    for field in card.framing.inputs:
        if field.required:
            n, action = quarantined.get(field.name, 0), "quarantined"
        else:
            n, action = int(columns.get(field.name, {}).get("nulls", 0)), "imputed by the model"
        if n == 0:
            continue
        rate = n / rows_in if rows_in else 0.0
        suggestion = ""
        if field.required and field.type != "text" and rate <= SUGGEST_MAX_RATE:
            suggestion = (
                f"mark `{field.name}` `required: false` in framing.inputs: the model then "
                f"imputes it and keeps these {n} rows"
            )
        elif field.required and field.type != "text":
            suggestion = f"more than {SUGGEST_MAX_RATE:.0%} blank: consider dropping the input"
        out[field.name] = {
            "required": field.required,
            "missing_rows": n,
            "missing_rate": round(rate, 6),
            "action": action,
            "suggestion": suggestion,
        }
    return out


def report_lines(missing: dict[str, dict[str, Any]]) -> list[str]:
    """The data report's "Missing values" section."""
    lines = ["## Missing values", ""]
    if not missing:
        return [*lines, "No input had a blank value."]
    lines += [
        "| column | required | blank rows | rate (of rows in) | what happened | suggestion |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in sorted(missing.items(), key=lambda kv: -kv[1]["missing_rows"]):
        lines.append(
            f"| {name} | {'yes' if m['required'] else 'no'} | {m['missing_rows']} | "
            f"{m['missing_rate']:.2%} | {m['action']} | {m['suggestion']} |"
        )
    return lines
