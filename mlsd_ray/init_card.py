"""``mlsd init``: a complete, commented design card from a person's own data.

A sample of the data (a file, ``s3://`` URI or PostgreSQL table) is read with pandas; each
column becomes a typed input (numeric, category, text) or the time of a time-based split; the
ranges and categories seen become verification rules; the model ladder suits the inputs (text:
TF-IDF then a small transformer; tabular: logistic regression then gradient-boosted trees); a
gate and a deployment section complete it. The card is validated before it is written.

Columns that would mislead a model are left out with a comment saying why: a row index, an
identifier (a different value on almost every row), and a column that predicts the label on
its own (a likely leak, e.g. the vote counts a label was computed from).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mlsd_ray.errors import CardError, SourceError

SAMPLE_ROWS = 20_000
MAX_CATEGORIES = 50  # more distinct values than this is not a category (text, or an id)
LEAK_PURITY = 0.995  # a column whose values alone give the label on this share of rows


@dataclass
class Column:
    name: str
    kind: str  # float | int | category | text | time | skip
    note: str = ""
    rule: dict[str, Any] = field(default_factory=dict)


# Reading a sample -----------------------------------------------------------------------
def read_sample(uri: str, table: str | None = None, rows: int = SAMPLE_ROWS) -> pd.DataFrame:
    """Up to ``rows`` rows of the source as pandas, for inference only."""
    if uri.startswith(("postgresql://", "postgres://")):
        return _read_sql(uri, table, rows)
    path = uri.lower()
    try:
        if "://" in uri:
            from mlsd_ray.storage import filesystem

            fs, where = filesystem(uri)
            handle: Any = fs.open_input_file(where)
        else:
            if not Path(uri).is_file():
                raise SourceError(
                    f"--data {uri!r} does not exist.",
                    fix="give the path of a CSV, TSV, JSON lines or Parquet file, an s3:// URI "
                    "or postgresql://user@host:5432/db with --table",
                )
            handle = uri
        if path.endswith(".parquet"):
            return pd.read_parquet(handle).head(rows)
        if path.endswith((".json", ".jsonl")):
            return pd.read_json(handle, lines=True, nrows=rows)
        sep = "\t" if path.endswith(".tsv") else ","
        return pd.read_csv(handle, sep=sep, nrows=rows)
    except SourceError:
        raise
    except Exception as err:  # pandas/pyarrow: many kinds, one message for the person
        raise SourceError(
            f"Could not read a sample of {uri!r}.",
            why=f"{type(err).__name__}: {err}",
            fix="check the file's format (CSV, TSV, JSON lines, Parquet) and its encoding",
        ) from err


def _read_sql(uri: str, table: str | None, rows: int) -> pd.DataFrame:
    from mlsd_ray.data.database import _conninfo, connect, probe
    from mlsd_ray.spec import Source

    if not table:
        raise CardError(
            f"--data {uri!r} is a database but no table was given.",
            fix="add --table NAME (schema.name allowed)",
        )
    sql, columns = probe(Source(uri=uri, table=table))
    with connect(_conninfo(uri)) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT * FROM ({sql}) AS mlsd_sample LIMIT {int(rows)}")  # type: ignore[arg-type]
        return pd.DataFrame(cur.fetchall(), columns=columns)


# Inference ------------------------------------------------------------------------------
def _is_time(values: pd.Series, name: str) -> bool:
    if pd.api.types.is_datetime64_any_dtype(values):
        return True
    if not (values.dtype == object or pd.api.types.is_string_dtype(values)) or not len(values):
        return False
    head = values.dropna().astype(str).head(200)
    if head.empty or head.str.len().min() < 8 or not head.str.contains(r"\d{4}|\d:\d").all():
        return False
    parsed = pd.to_datetime(head, errors="coerce", format="mixed")
    return bool(parsed.notna().mean() > 0.95) or bool(re.search(r"time|date", name, re.I))


def _leaks(values: pd.Series, label: pd.Series) -> bool:
    """True when the column's values decide the label (nearly) alone."""
    if values.nunique(dropna=True) > MAX_CATEGORIES or label.nunique() < 2:
        return False
    joined = pd.DataFrame({"v": values.astype(str), "y": label.astype(str)})
    purity = joined.groupby("v")["y"].agg(lambda s: s.value_counts().iloc[0]).sum() / len(joined)
    majority = label.astype(str).value_counts().iloc[0] / len(label)
    return bool(purity >= LEAK_PURITY and purity > majority + 0.01)


def infer_column(name: str, values: pd.Series, label: pd.Series) -> Column:
    n = max(len(values), 1)
    distinct = values.nunique(dropna=True)
    if name.lower().startswith("unnamed") or name.lower() in ("index", "id", "row", "row_id"):
        return Column(name, "skip", "a row index or id: it carries no signal")
    if _is_time(values, name):
        return Column(name, "time", "a time: used for a time-based split")
    if _leaks(values, label):
        return Column(name, "skip", "predicts the label on its own: probably a leak")
    if pd.api.types.is_bool_dtype(values):
        return Column(name, "category", rule={"allowed": sorted({str(v) for v in values.dropna()})})
    if pd.api.types.is_numeric_dtype(values):
        low, high = values.min(), values.max()
        integer = pd.api.types.is_integer_dtype(values)
        if integer and distinct == n and n > MAX_CATEGORIES:
            return Column(name, "skip", "a different integer on every row: an id")
        kind = "int" if integer else "float"
        rule = {"min": _plain(low), "max": _plain(high)} if pd.notna(low) else {}
        return Column(name, kind, rule=rule)
    text = values.dropna().astype(str)
    if distinct <= MAX_CATEGORIES and distinct < max(2, 0.5 * n):
        return Column(name, "category", rule={"allowed": sorted(set(text))})
    if text.str.len().mean() >= 15 and text.str.contains(" ").mean() > 0.5:
        return Column(name, "text", rule={"max_length": int(max(text.str.len().max() * 2, 200))})
    return Column(name, "skip", "free strings that are neither text nor a category (an id?)")


def _plain(v: Any) -> Any:
    """numpy scalars -> int/float for the YAML."""
    v = v.item() if hasattr(v, "item") else v
    return int(v) if isinstance(v, float) and v.is_integer() else v


def infer_task(label: pd.Series, task: str | None) -> str:
    if task:
        if task not in ("binary", "multiclass", "regression"):
            raise CardError(
                f"--task {task!r} is not a task.", fix="use binary, multiclass or regression"
            )
        return task
    distinct = label.nunique(dropna=True)
    if distinct == 2:
        return "binary"
    if pd.api.types.is_numeric_dtype(label) and distinct > 20:
        return "regression"
    return "multiclass"


def label_mapping(label: pd.Series, task: str) -> tuple[dict[str, int], list[str]]:
    """Raw value (as written) -> class index, and the class names. Binary: the rarer class is
    the positive one (what a person usually wants to find), True/1/yes when the values say so."""
    values = [str(v) for v in label.dropna().unique()]
    if task == "binary":
        if len(values) != 2:
            raise CardError(
                f"--task binary, but the label has {len(values)} distinct values: "
                f"{sorted(values)[:10]}.",
                fix="choose --task multiclass, or map the values to two classes in the card",
            )
        positive_words = ("1", "true", "yes", "spam", "positive", "1.0")
        named = [v for v in values if v.lower() in positive_words]
        counts = label.astype(str).value_counts()
        positive = named[0] if len(named) == 1 else str(counts.index[-1])
        negative = next(v for v in values if v != positive)
        mapping = {negative: 0, positive: 1}
        if label.dtype == bool or {negative.lower(), positive.lower()} == {"true", "false"}:
            mapping = {"False": 0, "false": 0, "0": 0, "True": 1, "true": 1, "1": 1}
        return mapping, [_ident(negative, "negative"), _ident(positive, "positive")]
    ordered = sorted(values, key=lambda v: (float(v) if _number(v) else float("inf"), v))
    return {v: i for i, v in enumerate(ordered)}, [_ident(v, f"class_{v}") for v in ordered]


def _number(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _ident(value: str, fallback: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]+", "_", value).strip("_")
    return name if name and not name[0].isdigit() else fallback


# Writing --------------------------------------------------------------------------------
def _v(value: Any) -> str:
    """A YAML value: JSON is YAML, and quotes every string that needs it."""
    return json.dumps(value, ensure_ascii=False)


def build_card(
    frame: pd.DataFrame,
    *,
    data_uri: str,
    label: str,
    task: str | None = None,
    name: str | None = None,
    table: str | None = None,
) -> str:
    """The card's YAML text (with comments), not yet validated."""
    if label not in frame.columns:
        raise CardError(
            f"--label {label!r} is not a column of {data_uri!r}.",
            why=f"its columns are {list(frame.columns)}",
            fix="pass the column that holds the outcome to predict, e.g. --label "
            + str(frame.columns[-1]),
        )
    y = frame[label]
    if y.dropna().nunique() < 2:
        raise CardError(
            f"--label {label!r} has fewer than two distinct values in the sample.",
            fix="choose the column that holds the outcome, or read more rows",
        )
    task = infer_task(y, task)
    columns = [infer_column(c, frame[c], y) for c in frame.columns if c != label]
    texts = [c for c in columns if c.kind == "text"]
    times = [c for c in columns if c.kind == "time"]
    if len(texts) > 1:  # the text models read one text input: keep the longest
        longest = max(texts, key=lambda c: frame[c.name].astype(str).str.len().mean())
        for c in texts:
            if c is not longest:
                c.kind, c.note = "skip", f"a second text column; the models read {longest.name}"
        texts = [longest]
    if texts:  # a text card: the text models read that column only
        for c in columns:
            if c.kind in ("int", "float", "category"):
                c.kind, c.note = "skip", f"a tabular column; the text models read {texts[0].name}"
    inputs = [c for c in columns if c.kind in ("int", "float", "category", "text")]
    if not inputs:
        raise CardError(
            f"No usable input columns in {data_uri!r} besides the label {label!r}.",
            why="; ".join(f"{c.name}: {c.note}" for c in columns) or "no other columns",
        )
    name = name or _ident(Path(table or data_uri.split("?")[0]).stem.lower(), "my_system")
    mapping, classes = ({}, []) if task == "regression" else label_mapping(y, task)

    lines = [
        f"# Design card for {name}, written by `mlsd init` from {len(frame)} sampled rows of",
        f"# {data_uri}{f' (table {table})' if table else ''}. Review every TODO, then run it:",
        f"#   mlsd run {name}.yaml --workdir {name}-work",
        f"name: {name}",
        f"description: {_v(f'Predict {label} from the other columns of {Path(data_uri).name}.')}",
        "",
        "requirements:                       # 1. requirements",
        "  business_objective: TODO say what this model changes for the business",
        "  expected_qps: 10",
        "  latency_p99_ms: 300",
        "  priority: accuracy                 # or latency: the gate then enforces the p99",
        "",
        "framing:                            # 2. framing",
        f"  ml_objective: {_v(f'Predict {label} ({task}).')}",
        f"  category: {task}",
        "  inputs:                           # inferred from the sample",
    ]
    for c in columns:
        if c.kind in ("int", "float", "category", "text"):
            lines.append(f"    - {{name: {_v(c.name)}, type: {c.kind}}}")
        else:
            lines.append(f"    # {c.name}: left out, {c.note}")
    lines.append(f"  output: {_v('prediction' if task == 'regression' else 'probability')}")
    lines.append("  label:")
    lines.append(f"    column: {_v(label)}")
    if mapping:
        lines.append(f"    mapping: {_v(mapping)}   # raw value -> class index")
        lines.append(f"    classes: {_v(classes)}")

    lines += ["", "data:                               # 3. data preparation", "  sources:"]
    lines.append(f"    - uri: {_v(data_uri)}")
    if table:
        lines.append(f"      table: {_v(table)}")
    rules = {c.name: c.rule for c in inputs if c.rule}
    if rules:
        lines.append("  # Verification: rows outside what the sample showed are quarantined with")
        lines.append("  # the reason. Widen a range or add a category when new data needs it.")
        lines.append("  rules:")
        for col, rule in rules.items():
            lines.append(f"    {_v(col)}: {_v(rule)}")
    if times:
        t = times[0].name
        lines.append(
            "  # A time column exists: train on the past, validate and test on the future."
        )
        lines.append(
            f"  split: {{strategy: time, time_column: {_v(t)}, train: 0.7, validation: 0.15, "
            "test: 0.15}"
        )
    else:
        stratify = "false" if task == "regression" else "true"
        lines.append(
            "  split: {train: 0.7, validation: 0.15, test: 0.15, "
            f"stratify: {stratify}, seed: 0}}   # no time column found: a random split"
        )

    lines += ["", "models:                             # 4. model development"]
    lines += _ladder(task, texts[0].name if texts else None, len(frame))
    lines += ["", "evaluation:                         # 5. evaluation"]
    if task == "regression":
        lines.append("  gate: {metric: rmse, must_beat_baseline: true}  # TODO: add max_value")
    elif task == "binary":
        lines.append("  # The candidate is registered as champion only if every rule passes.")
        lines.append("  gate: {metric: roc_auc, min_value: 0.6, must_beat_baseline: true}")
        lines.append("  threshold_objective: {rule: best_f1}   # chosen on validation")
        lines.append("  bootstrap: {n_resamples: 200, confidence: 0.95, seed: 0}")
    else:
        lines.append("  gate: {metric: accuracy, min_value: 0.5, must_beat_baseline: true}")
    lines += [
        "",
        "deployment:                         # 6. deployment",
        "  host: 127.0.0.1                   # loopback; open it on purpose only",
        "  port: 8000",
        "  autoscaling: {min_replicas: 1, max_replicas: 2, target_ongoing_requests: 8}",
        "  batching: {max_batch_size: 16, batch_wait_timeout_s: 0.01}",
        "",
        "monitoring:                         # 7. monitoring",
        "  psi_warn: 0.1",
        "  psi_alert: 0.25",
    ]
    return "\n".join(lines) + "\n"


def _ladder(task: str, text: str | None, rows: int) -> list[str]:
    if text:
        return [
            "  baseline: {name: tfidf_logreg, kind: tfidf_logreg}",
            "  candidates:",
            "    - name: minilm                  # all-MiniLM-L6-v2 fine-tuned with Ray Train",
            "      kind: transformer",
            "      trainer: {pretrained: minilm, max_length: 64, epochs: 1, batch_size: 16, "
            "num_workers: 1}",
        ]
    if task == "regression":
        return [
            "  baseline: {name: mean, kind: mean}",
            "  candidates:",
            "    - {name: ridge, kind: ridge}",
            "    - name: xgboost                 # through Ray Train, early stopping on validation",
            "      kind: xgboost",
            "      params: {n_estimators: 200, max_depth: 4, learning_rate: 0.05}",
            "      trainer: {num_workers: 1}",
        ]
    small = rows < 2000
    trees = 100 if small else 300
    return [
        "  baseline: {name: majority, kind: majority}",
        "  # The ladder, simplest first; each rung is scored on the same validation split.",
        "  candidates:",
        "    - {name: logreg, kind: logreg, params: {C: 1.0, class_weight: balanced}}",
        "    - name: xgboost                 # through Ray Train, early stopping on validation",
        "      kind: xgboost",
        f"      params: {{n_estimators: {trees}, max_depth: 4, learning_rate: 0.05, "
        "early_stopping_rounds: 30, class_weight: balanced}",
        "      trainer: {num_workers: 1}",
    ]


def write_card(
    data: str,
    label: str,
    *,
    task: str | None = None,
    out: Path | None = None,
    name: str | None = None,
    table: str | None = None,
    rows: int = SAMPLE_ROWS,
) -> tuple[str, Any]:
    """Build, validate and (with ``out``) write the card; returns (text, DesignCard)."""
    import yaml

    from mlsd_ray.spec import card_from_dict

    uri = data if "://" in data else str(Path(data).resolve())
    frame = read_sample(uri, table, rows)
    if name is None and out is not None:
        name = _ident(out.stem, "my_system")
    text = build_card(frame, data_uri=uri, label=label, task=task, name=name, table=table)
    base = out.resolve().parent if out is not None else Path.cwd()
    card = card_from_dict(yaml.safe_load(text), where="the generated card", base_dir=base)
    if out is not None:
        text = text.replace(f"mlsd run {card.name}.yaml", f"mlsd run {out}")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    return text, card
