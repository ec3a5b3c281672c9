"""Wall time of `mlsd run` (the embedded default) and of each stage, on this machine.

    python bench/pipeline.py [--workdir DIR] [--json OUT] [--set KEY=VALUE ...]

Runs the CLI as a user would (a fresh process, a fresh local Ray) and reads the per-stage
seconds that the pipeline records in ``pipeline_summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", dest="json_out", default=None)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="mlsd-bench-"))
    shutil.rmtree(workdir, ignore_errors=True)
    mlsd = Path(sys.executable).with_name("mlsd")
    cmd = [str(mlsd), "run", "--workdir", str(workdir)]
    for o in args.overrides:
        cmd += ["--set", o]
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "MLSD_LOG_LEVEL": "WARNING"}
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        return proc.returncode
    summary = json.loads((workdir / "pipeline_summary.json").read_text())
    result = {
        "command": " ".join(["mlsd run", *[f"--set {o}" for o in args.overrides]]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "wall_s": round(wall, 1),
        "stages_s": summary["seconds"],
        "process_overhead_s": round(wall - sum(summary["seconds"].values()), 1),
        "train_rows": summary["etl"]["rows_per_split"]["train"]
        if "rows_per_split" in summary["etl"]
        else None,
    }
    print(f"mlsd run (default card) wall time: {result['wall_s']} s on {result['machine']}")
    print("| stage | seconds |\n|---|---|")
    for k, v in result["stages_s"].items():
        print(f"| {k} | {v} |")
    print(f"| start-up, Ray init, imports | {result['process_overhead_s']} |")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
