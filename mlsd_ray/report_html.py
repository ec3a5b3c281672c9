"""One page per run: ``WORKDIR/reports/index.html`` brings every stage's report together.

Sections, always in this order and always present (a stage that did not run says so): overview,
data, training (with loss curves), leaderboard, evaluation (plots, intervals, slices,
behaviour), gate, serving, drift. The page is self-contained: images are embedded as data URIs
and there is no script, font or style sheet from the network, so it opens offline and can be
mailed. The stages' Markdown files stay as they are (they diff well); this page is rendered
from them with markdown-it (already installed with rich) and from the stages' JSON summaries.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import re
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt

from mlsd_ray.settings import Workdir

log = logging.getLogger(__name__)

SECTIONS = (
    ("overview", "Overview"),
    ("data", "Data"),
    ("training", "Training"),
    ("leaderboard", "Leaderboard"),
    ("evaluation", "Evaluation"),
    ("gate", "Gate decision"),
    ("serving", "Serving"),
    ("drift", "Drift"),
)

STYLE = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2430}
header{background:#1d2430;color:#fff;padding:14px 28px}header h1{margin:0;font-size:22px}
nav{position:sticky;top:0;background:#f3f5f8;border-bottom:1px solid #d9dee6;padding:8px 28px}
nav a{margin-right:16px;color:#2456a6;text-decoration:none}
main{padding:8px 28px 40px;max-width:1200px}section{border-bottom:1px solid #e4e7ec;padding:8px 0}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #d9dee6;padding:3px 8px;
text-align:left;font-size:13px}th{background:#f3f5f8}img{max-width:560px;margin:6px;
border:1px solid #e4e7ec;vertical-align:top}.pass{color:#18794e;font-weight:600}
.fail{color:#c62828;font-weight:600}.none{color:#777;font-style:italic}
pre{background:#f6f8fa;padding:8px;overflow:auto}
"""


def _md() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def data_uri(path: Path) -> str:
    kind = "svg+xml" if path.suffix == ".svg" else path.suffix.lstrip(".").replace("jpg", "jpeg")
    return f"data:image/{kind};base64," + base64.b64encode(path.read_bytes()).decode()


def markdown_file(path: Path) -> str:
    """A Markdown report as HTML, its relative images embedded; '' when there is none."""
    if not path.is_file():
        return ""
    body = _md().render(path.read_text(encoding="utf-8"))

    def embed(match: re.Match[str]) -> str:
        src = html.unescape(match.group(1))
        target = (path.parent / src).resolve()
        if "://" in src or not target.is_file():
            return match.group(0)
        return f'src="{data_uri(target)}"'

    body = re.sub(r"<(/?)h([1-4])>", lambda m: f"<{m.group(1)}h{int(m.group(2)) + 2}>", body)
    return re.sub(r'src="([^"]+)"', embed, body)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape("" if value is None else str(value))


def _json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def _none(what: str) -> str:
    return f'<p class="none">{html.escape(what)}</p>'


# Sections --------------------------------------------------------------------------------
def _overview(w: Workdir) -> str:
    pipe = _json(w.summary_path("pipeline"))
    reg = _json(w.summary_path("register"))
    rows = [[k, v] for k, v in (pipe.get("seconds") or {}).items()]
    parts = [f"<p><b>{html.escape(str(reg.get('summary', 'Not registered yet.')))}</b></p>"]
    if rows:
        parts.append(_table(["stage", "seconds"], rows))
    parts.append(f"<p>Workdir: <code>{html.escape(str(w.root))}</code></p>")
    return "".join(parts)


def _training(w: Workdir) -> str:
    summary = _json(w.summary_path("train"))
    models = summary.get("models") or {}
    if not models:
        return _none("The training stage has not run.")
    rows = [
        [name, m.get("kind"), m.get("train_seconds"), m.get("validation_roc_auc")]
        for name, m in models.items()
    ]
    parts = [_table(["model", "kind", "train seconds", "validation ROC-AUC"], rows)]
    for name in models:
        curve = loss_curve(w.root / "train" / name / "progress.jsonl", name)
        if curve:
            parts.append(f'<img alt="training curve {html.escape(name)}" src="{curve}">')
    folder = w.reports / "training"
    for md in sorted(folder.glob("*.md")) if folder.is_dir() else []:
        parts.append(markdown_file(md))
    return "".join(parts)


def loss_curve(path: Path, name: str) -> str | None:
    """Loss per step of a watched training run (``train/watch.py``), as an embedded PNG."""
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("rank", 0) == 0]
    if len(rows) < 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows])
    ax.set(xlabel="step", ylabel="train loss", title=f"{name}: training loss")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _leaderboard(report: dict[str, Any]) -> str:
    metrics = report.get("metrics") or {}
    if not metrics:
        return _none("The evaluation stage has not run.")
    names = [k for k in ("roc_auc", "pr_auc", "f1", "precision", "recall", "accuracy", "rmse")]
    shown = [n for n in names if any(n in m for m in metrics.values())]
    validation = report.get("validation_leaderboard") or {}
    rows = [
        [
            name + (" (candidate)" if name == report.get("candidate") else ""),
            validation.get(name),
            *[m.get(k) for k in shown],
        ]
        for name, m in metrics.items()
    ]
    rows.sort(key=lambda r: -(r[1] if isinstance(r[1], (int, float)) else float("-inf")))
    return "<p>Ranked on validation; test metrics alongside.</p>" + _table(
        ["model", "validation (gate metric)", *[f"test {k}" for k in shown]], rows
    )


def _gate(report: dict[str, Any]) -> str:
    gate = report.get("gate") or {}
    if not gate:
        return _none("No gate decision yet.")
    verdict = "PASSED" if gate.get("passed") else "FAILED"
    css = "pass" if gate.get("passed") else "fail"
    rows = [
        [r.get("rule"), "pass" if r.get("passed") else "FAIL", r.get("detail")]
        for r in gate.get("rules") or []
    ]
    promo = (report.get("promotion") or {}).get("summary", "")
    return (
        f'<p class="{css}">Gate {verdict} for {html.escape(str(report.get("candidate")))}</p>'
        + _table(["rule", "result", "detail"], rows)
        + (f"<p>{html.escape(promo)}</p>" if promo else "")
    )


def _serving(w: Workdir) -> str:
    served = _json(w.summary_path("serve"))
    parts = []
    if served:
        parts.append(
            _table(
                ["url", "requests", "first answer"],
                [
                    [
                        served.get("url"),
                        served.get("requests"),
                        json.dumps(served.get("first_answer")),
                    ]
                ],
            )
        )
    for folder in (w.reports / "serving", w.reports / "serve"):
        for md in sorted(folder.glob("*.md")) if folder.is_dir() else []:
            parts.append(markdown_file(md))
    return "".join(parts) or _none("The model has not been served in this workdir.")


def build(w: Workdir, card_name: str | None = None) -> str:
    """The page's HTML."""
    report = _json(w.reports / "evaluation" / "report.json")
    name = card_name or report.get("card") or _json(w.summary_path("pipeline")).get("card", "")
    bodies = {
        "overview": _overview(w),
        "data": markdown_file(w.reports / "data" / "data_report.md")
        or _none("The ETL stage has not written a data report."),
        "training": _training(w),
        "leaderboard": _leaderboard(report),
        "evaluation": markdown_file(w.reports / "evaluation" / "report.md")
        or _none("The evaluation stage has not run."),
        "gate": _gate(report),
        "serving": _serving(w),
        "drift": markdown_file(w.reports / "monitor" / "drift_report.md")
        or _none("No drift report yet (the monitor stage runs after serving)."),
    }
    nav = "".join(f'<a href="#{key}">{title}</a>' for key, title in SECTIONS)
    sections = "".join(
        f'<section id="{key}"><h2>{title}</h2>{bodies[key]}</section>' for key, title in SECTIONS
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>mlsd report: {html.escape(str(name))}</title>"
        f'<meta name="viewport" content="width=device-width"><style>{STYLE}</style></head>'
        f"<body><header><h1>mlsd report: {html.escape(str(name))}</h1></header>"
        f"<nav>{nav}</nav><main>{sections}</main></body></html>"
    )


def write_index(w: Workdir, card_name: str | None = None) -> Path:
    path = w.reports / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(build(w, card_name), encoding="utf-8")
    tmp.replace(path)  # never a half-written page
    log.info("html report: %s", path)
    return path
