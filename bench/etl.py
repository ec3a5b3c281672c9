"""ETL throughput: mlsd-ray's ETL on Ray Data against one process doing the same with pandas.

    python bench/etl.py [--sizes 10000,100000,2000000] [--files 8] [--json OUT]

Data: the real Online Shoppers rows (``../shared/datasets/ad_click/online_shoppers_dev.csv``,
9,864 rows, 17 inputs + label), resampled with replacement (seed 0) to each size and written as
``--files`` CSV files (a partitioned folder), so that both sides read the same bytes.

Both sides run the same steps with the same rules (``systems/event_registration.yaml``):

* Ray: ``run_etl`` as the pipeline calls it: read and verify fused in one Ray task per file
  (row-level error handling; good rows and quarantine; ``read_verify``), split (seeded,
  stratified), write Parquet per split; plus what only it does: the column profile, the content
  hash and manifest. The data report is off. ``ray_core_s`` leaves out the profile step.
* pandas: one process; ``pyarrow.csv`` reads every column as a string, the same verify
  function runs on 100k-row chunks, the same split plan, ``pyarrow.parquet`` writes.

Ray starts once before the first size, then one ETL of 1,000 rows per CPU, one file per CPU,
warms up every worker process (both reported apart; a cold worker spends 1-2 s importing).
Ray workers run at nice 0 like the pandas process (``RAY_worker_niceness``; Ray's default is
15). Each size's files are flushed to disk (``os.sync``) before the timed runs. Timings are
wall seconds of one run each; rows/s = input rows / seconds; the load average is printed with
the figures (the machine is shared).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlsd_ray.data.split import SPLITS, plan_split, row_hash  # noqa: E402
from mlsd_ray.data.verify import (  # noqa: E402
    LABEL,
    ROW,
    SOURCE,
    good_schema,
    quarantine_schema,
    split_part,
    verify_rows,
)
from mlsd_ray.settings import Workdir  # noqa: E402
from mlsd_ray.spec import DesignCard, load_card  # noqa: E402

DATA = ROOT.parent / "shared" / "datasets" / "ad_click" / "online_shoppers_dev.csv"
CARD = ROOT / "systems" / "event_registration.yaml"
CHUNK = 100_000


def _as_strings(path: Path) -> pacsv.ConvertOptions:
    """Every column as text, as the ETL reads it (empty cells stay empty strings)."""
    with path.open(encoding="utf-8", newline="") as f:
        header = next(csv.reader(f))
    return pacsv.ConvertOptions(column_types={c: pa.string() for c in header})


def make_data(rows: int, files: int, out: Path) -> list[Path]:
    """``rows`` resampled rows of the real data as ``files`` CSV files under ``out``."""
    base = pacsv.read_csv(DATA, convert_options=_as_strings(DATA))
    picks = np.random.default_rng(0).integers(0, base.num_rows, rows)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, part in enumerate(np.array_split(picks, files)):
        path = out / f"part-{i:03d}.csv"
        # as the original file: no quotes anywhere, the header included
        options = pacsv.WriteOptions(quoting_style="none", include_header=False)
        with path.open("wb") as out_file:
            out_file.write((",".join(base.column_names) + "\n").encode())
            pacsv.write_csv(base.take(pa.array(part)), out_file, write_options=options)
        paths.append(path)
    return paths


def card_for(source: Path, output: Path) -> DesignCard:
    return load_card(
        CARD,
        overrides=[
            f"data.sources.0.uri={source}",
            "data.sources.0.format=csv",
            f"data.output_uri={output}",
            "data.report=false",
            "data.checks.reference=none",
        ],
    )


def run_pandas(card: DesignCard, paths: list[Path], output: Path) -> dict[str, float]:
    """Read, verify, split and write in this process."""
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    frames = []
    for path in paths:
        frame = pacsv.read_csv(path, convert_options=_as_strings(path)).to_pandas()
        frame[SOURCE] = str(path)
        frame[ROW] = np.arange(1, len(frame) + 1)
        frame["_reason"] = None
        frame["_raw"] = None
        frames.append(frame)
    raw = pd.concat(frames, ignore_index=True)
    seconds["read"] = time.perf_counter() - t

    t = time.perf_counter()
    columns = [c for c in raw.columns if not c.startswith("_")]
    good_parts, bad_parts = [], []
    for start in range(0, len(raw), CHUNK):
        both = verify_rows(raw.iloc[start : start + CHUNK], card, columns)
        good_parts.append(split_part(both, "good"))
        bad_parts.append(split_part(both, "bad"))
    good = pa.concat_tables(good_parts)
    bad = pa.concat_tables(bad_parts)
    seconds["verify"] = time.perf_counter() - t

    t = time.perf_counter()
    labels = good[LABEL].to_numpy()
    hashes = row_hash(good[SOURCE].to_pylist(), good[ROW].to_pylist(), card.data.split.seed)
    plan = plan_split(labels, hashes, card.data.split, card.data.split.stratify)
    assigned = plan.assign(labels, hashes)
    parts = {s: good.filter(pa.array(assigned == s)) for s in SPLITS}
    seconds["split"] = time.perf_counter() - t

    t = time.perf_counter()
    shutil.rmtree(output, ignore_errors=True)
    for s, part in parts.items():
        (output / s).mkdir(parents=True)
        pq.write_table(part.cast(good_schema(card)), output / s / "part-0.parquet")
    (output / "quarantine").mkdir(parents=True)
    pq.write_table(bad.cast(quarantine_schema(columns)), output / "quarantine" / "part-0.parquet")
    seconds["write"] = time.perf_counter() - t
    seconds["rows_ok"] = good.num_rows
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="10000,100000,2000000")
    ap.add_argument("--files", type=int, default=8, help="CSV files per size (max)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args()
    if not DATA.is_file():
        print(f"real data not found at {DATA}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray starts its workers at nice 15; on a machine shared with other work that alone
    # would starve them against the pandas process (nice 0). Same priority for both sides.
    os.environ.setdefault("RAY_worker_niceness", "0")
    from ray.data import DataContext

    from mlsd_ray.data.etl import run_etl
    from mlsd_ray.runtime import ensure_ray

    root = Path(args.workdir or tempfile.mkdtemp(prefix="mlsd-bench-etl-"))
    t = time.perf_counter()
    ensure_ray()
    DataContext.get_current().enable_progress_bars = False
    ray_start = time.perf_counter() - t
    # The first ETL in a fresh Ray pays for its workers importing pyarrow, pandas and mlsd_ray
    # (seconds); timed apart, so that the per-size figures show the ETL's own fixed cost.
    # One file per CPU, so that every worker process has imported them, not only the first.
    import ray

    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    t = time.perf_counter()
    warm = root / "warmup"
    make_data(1_000 * cpus, cpus, warm / "in")
    run_etl(card_for(warm / "in", warm / "out"), Workdir(warm / "work"))
    first_etl = time.perf_counter() - t

    results: list[dict[str, Any]] = []
    for size in [int(s) for s in args.sizes.split(",")]:
        files = max(1, min(args.files, size // 50_000))
        source = root / f"in-{size}"
        shutil.rmtree(source, ignore_errors=True)
        paths = make_data(size, files, source)
        # The files just written are dirty pages; flushed now, not by the kernel during the
        # first timed run (the Ray one), so both sides read the same clean page cache.
        os.sync()
        card = card_for(source, root / f"out-ray-{size}")

        t = time.perf_counter()
        summary = run_etl(card, Workdir(root / f"work-{size}"))
        ray_s = time.perf_counter() - t
        steps = summary.seconds
        core = sum(
            steps.get(k, 0.0) for k in ("read", "verify", "read_verify", "keys", "split", "write")
        )

        t = time.perf_counter()
        pandas_steps = run_pandas(card, paths, root / f"out-pandas-{size}")
        pandas_s = time.perf_counter() - t
        assert pandas_steps["rows_ok"] == summary.rows_ok, (pandas_steps, summary.rows_ok)
        results.append(
            {
                "rows": size,
                "files": files,
                "rows_ok": summary.rows_ok,
                "ray_s": round(ray_s, 2),
                "ray_core_s": round(core, 2),
                "ray_steps_s": steps,
                "pandas_s": round(pandas_s, 2),
                "pandas_steps_s": {
                    k: round(v, 3) for k, v in pandas_steps.items() if k != "rows_ok"
                },
                "ray_rows_per_s": round(size / ray_s),
                "ray_core_rows_per_s": round(size / core),
                "pandas_rows_per_s": round(size / pandas_s),
                "dataset_version": summary.dataset_version,
                "loadavg_1m": round(os.getloadavg()[0], 2),
            }
        )
        shutil.rmtree(source, ignore_errors=True)

    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    print(
        f"ETL read -> verify -> split -> write Parquet; {machine}; Ray start {ray_start:.1f} s; "
        f"first ETL (1,000 rows per CPU, cold workers) {first_etl:.1f} s"
    )
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")
    print(
        "| rows | files | Ray run_etl s | rows/s | Ray w/o profile s | rows/s | pandas s | rows/s "
        "| Ray / pandas | load 1m |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['rows']:,} | {r['files']} | {r['ray_s']} | {r['ray_rows_per_s']:,} | "
            f"{r['ray_core_s']} | {r['ray_core_rows_per_s']:,} | {r['pandas_s']} | "
            f"{r['pandas_rows_per_s']:,} | {r['pandas_s'] / r['ray_s']:.2f}x | "
            f"{r['loadavg_1m']} |"
        )
    for r in results:
        print(f"{r['rows']:,} rows, Ray steps (s): {r['ray_steps_s']}")
        print(f"{r['rows']:,} rows, pandas steps (s): {r['pandas_steps_s']}")
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps(
                {
                    "machine": machine,
                    "ray_start_s": round(ray_start, 2),
                    "first_etl_1k_rows_per_cpu_s": round(first_etl, 2),
                    "results": results,
                },
                indent=2,
            )
            + "\n"
        )
    if not args.workdir:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
