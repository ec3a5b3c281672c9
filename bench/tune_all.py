"""`mlsd serve tune` for every card with a deployment; winners into serve_configs/, a table
and each sweep's plot under docs/serve_tune/.

    PYTHONPATH=$PWD .venv/bin/python bench/tune_all.py            # on a quiet machine

For each card (``systems/*.yaml`` but the ranking graph, which is tuned with its own graph):

1. ``mlsd run CARD --serve-requests 0`` in ``<workdirs>/<card>`` (ETL, training, evaluation,
   gate, registry), unless that workdir already has an evaluation report;
2. ``mlsd serve tune CARD --model-dir <evaluated candidate>`` with the grid given here: the
   candidate the evaluation put forward, so a card whose gate failed is still tuned;
   The load: ``--clients`` concurrent clients, by default the concurrency the card's own
   requirements imply (``expected_qps x latency_p99_ms``, Little's law; 16 in earlier runs,
   which on 2 cores only measured queueing);
3. the sweep (CSV, Markdown, PNG) lands in ``<out>/<card>/``; the winner is written into
   ``<config-dir>/<card>.yaml``. A card whose p99 target no setting meets keeps its config
   and the table says so, with the best p99 reached.

``<out>/README.md`` gets one row per card, with its command; rows of cards not in this run
stay from earlier runs (``summary.json``). Each subprocess starts and ends its own local Ray
(the card's proxy), so nothing is left running. ``--set KEY=VALUE`` goes to every card (e.g.
smaller synthetic data for a quick proof; only the tuned keys reach the config, so a proof
run's winners, measured under its overrides, belong in ``--config-dir`` of a scratch folder);
``--cards`` picks some.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: Ranking cards are tuned by another path (the recsys graph has its own stages and load:
#: ``mlsd serve tune`` on the ranking graph).
EXCLUDED_CATEGORIES = {"ranking"}


def cards_with_a_deployment() -> list[str]:
    import yaml

    names = []
    for path in sorted((REPO / "systems").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        if not isinstance(raw, dict) or not raw.get("deployment"):
            continue
        if (raw.get("framing") or {}).get("category") not in EXCLUDED_CATEGORIES:
            names.append(path.stem)
    return names


def mlsd(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "mlsd_ray.cli", *args]
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=REPO, text=True, capture_output=True, check=False)


def train(card: str, workdir: Path, sets: list[str]) -> Path:
    """The evaluated candidate's package (running the pipeline first when needed)."""
    report = workdir / "reports" / "evaluation" / "report.json"
    if not report.is_file():
        done = mlsd("run", f"systems/{card}.yaml", "--workdir", str(workdir),
                    "--serve-requests", "0", *sets)  # fmt: skip
        if not report.is_file():  # exit 3 (gate failed) still leaves a report
            raise RuntimeError(f"{card}: the pipeline failed:\n{done.stdout}\n{done.stderr}")
    candidate = json.loads(report.read_text())["candidate"]
    return workdir / "models" / candidate


def card_clients(card: str) -> int:
    """The concurrency the card's requirements imply (Little's law): requests in flight when
    ``expected_qps`` arrive and each takes the target p99, ``expected_qps x latency_p99_ms``."""
    from mlsd_ray.spec import load_card

    req = load_card(REPO / "systems" / f"{card}.yaml").requirements
    return max(1, math.ceil(req.expected_qps * req.latency_p99_ms / 1000))


def tune(card: str, model_dir: Path, workdir: Path, out: Path, config: Path, args: Any) -> dict:
    clients = card_clients(card) if args.clients == "card" else int(args.clients)
    grid = ["--batch-sizes", args.batch_sizes, "--waits", args.waits, "--replicas",
            args.replicas, "--clients", str(clients), "--requests", str(args.requests),
            "--max-seconds", str(args.max_seconds)]  # fmt: skip
    done = mlsd("serve", "tune", f"systems/{card}.yaml", "--workdir", str(workdir),
                "--model-dir", str(model_dir), "--out", str(out), "--config", str(config),
                *grid, *args.sets)  # fmt: skip
    row: dict[str, Any] = {"card": card, "exit": done.returncode, "plot": f"{card}/sweep.png",
                           "clients": clients}  # fmt: skip
    points = _sweep(out / "sweep.csv")
    if done.returncode == 0:
        result = json.loads(done.stdout[done.stdout.index("{") :])
        row |= {"target_p99_ms": result["target_p99_ms"], "chosen": result["chosen"]}
    elif points:  # TuneError: nothing met the target; the sweep was still written
        said = [ln.strip() for ln in (done.stderr + done.stdout).splitlines() if "No setting" in ln]
        target = re.search(r"p99 <= ([\d.]+) ms", said[0]) if said else None
        row |= {"chosen": None, "error": said[:1], "target_p99_ms": target and target.group(1)}
    else:
        raise RuntimeError(f"{card}: the tuner failed:\n{done.stdout}\n{done.stderr}")
    ok = [p for p in points if p.get("p99_ms") not in ("", "None")]
    row["best_p99_ms"] = min((float(p["p99_ms"]) for p in ok), default=None)
    row["points"] = len(points)
    return row


def _sweep(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


def merged(rows: list[dict[str, Any]], out: Path) -> list[dict[str, Any]]:
    """This run's rows after the rows of earlier runs for the other cards (``summary.json``):
    a run over some cards keeps the table of the rest."""
    path = out / "summary.json"
    earlier = json.loads(path.read_text()) if path.is_file() else []
    mine = {r["card"] for r in rows}
    return [r for r in earlier if r["card"] not in mine] + rows


def write_table(rows: list[dict[str, Any]], out: Path) -> Path:
    lines = [
        "# Tuned Serve configs (`mlsd serve tune` for every card)",
        "",
        "Written by `bench/tune_all.py`; each card's row comes from the command listed under the",
        "table, with the load average (1, 5, 15 min) at its end. Each card's sweep is in its",
        "folder (sweep.md, sweep.csv, sweep.png).",
        "",
        "| card | target p99 ms | clients | chosen (batch, wait s, ongoing, replicas) | req/s "
        "| p99 ms | best p99 ms of the sweep | settings |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c = r.get("chosen")
        if c:
            chosen = (f"{c['max_batch_size']}, {c['batch_wait_timeout_s']}, "
                      f"{c['max_ongoing_requests']}, {c['replicas']}")  # fmt: skip
            rate, p99 = c["requests_per_s"], c["p99_ms"]
        else:
            chosen, rate, p99 = "**target not met**: config unchanged", "", ""
        lines.append(f"| {r['card']} | {r.get('target_p99_ms', '')} | {r.get('clients', 16)} "
                     f"| {chosen} | {rate} | {p99} "
                     f"| {r['best_p99_ms']} | {r['points']} |")  # fmt: skip
    lines += ["", "Commands:", ""]
    lines += [f"- {r['card']}: `{r.get('command', '')}` (load {r.get('load', '?')})" for r in rows]
    lines += ["", *(f"![{r['card']}]({r['plot']})" for r in rows)]
    path = out / "README.md"
    path.write_text("\n".join(lines) + "\n")
    (out / "summary.json").write_text(json.dumps(rows, indent=2, default=str) + "\n")
    return path


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", help="comma-separated card names (default: all)")
    parser.add_argument("--workdirs", type=Path, default=REPO / "mlsd-work" / "tune_all")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "serve_tune")
    parser.add_argument("--config-dir", type=Path, default=REPO / "serve_configs")
    parser.add_argument("--batch-sizes", default="1,8,16,32")
    parser.add_argument("--waits", default="0.002,0.01")
    parser.add_argument("--replicas", default="1,2")
    parser.add_argument(
        "--clients", default="card", help="clients at once; `card`: expected_qps x p99 (default)"
    )
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--max-seconds", type=float, default=20.0)
    parser.add_argument("--set", dest="sets_raw", action="append", default=[],
                        help="card override KEY=VALUE for every card")  # fmt: skip
    args = parser.parse_args(argv)
    args.sets = [x for s in args.sets_raw for x in ("--set", s)]
    cards = args.cards.split(",") if args.cards else cards_with_a_deployment()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for card in cards:
        workdir = args.workdirs / card
        config = args.config_dir / f"{card}.yaml"
        if not config.is_file():  # a card without a config gets the template's
            shutil.copy(REPO / "serve_configs" / f"{card}.yaml", config)
        row = tune(card, train(card, workdir, args.sets), workdir, args.out / card, config, args)
        row["command"] = "python bench/tune_all.py " + " ".join(argv)
        row["load"] = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(json.dumps(row, default=str), flush=True)
        rows.append(row)
    print("table:", write_table(merged(rows, args.out), args.out))
    return rows


if __name__ == "__main__":
    main()
