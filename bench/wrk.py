"""Closed-loop HTTP load from wrk, a C load generator, for the serving benchmarks.

The Python load generator (httpx on asyncio) spends about a millisecond of CPU per request in
the benchmark process, on the same 2 cores as the servers it measures. A user's clients are on
other machines. wrk (Debian package ``wrk``) sends the same requests from one epoll thread for a
small part of that, so the servers keep the cores. It keeps ``clients`` connections, each with
one request in flight, for a fixed number of seconds: the same closed loop as the httpx client.

Each request is a POST of one JSON body from ``bodies`` in turn (the Lua script reads them from
a file, one per line). wrk's own latency histogram gives the percentiles.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

# wrk runs `init` in each thread and `done` once at the end; `request` builds every request.
LUA = r"""
local bodies, n, i = {}, 0, 0
local headers = {["Content-Type"] = "application/json"}
local path = "/predict"

function init(args)
  path = args[2]
  for line in io.lines(args[1]) do
    n = n + 1
    bodies[n] = line
  end
  i = math.random(n) - 1
end

function request()
  i = i % n + 1
  return wrk.format("POST", path, headers, bodies[i])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def run(
    url: str, bodies: list[dict[str, Any]], clients: int, seconds: float, path: str = "/predict"
) -> dict[str, Any]:
    """One closed-loop level: ``clients`` connections for ``seconds``; rates and percentiles."""
    with tempfile.TemporaryDirectory(prefix="mlsd_wrk_") as tmp:
        script, lines = Path(tmp) / "load.lua", Path(tmp) / "bodies.jsonl"
        script.write_text(LUA)
        lines.write_text("".join(json.dumps(b) + "\n" for b in bodies))
        cmd = [
            "wrk",
            "-t1",
            f"-c{clients}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "60s",
            "-s",
            str(script),
            url,
            "--",
            str(lines),
            path,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 90)
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary: {out.stdout[-500:]} {out.stderr[-500:]}")
    r = json.loads(line.removeprefix("WRK_JSON "))
    seconds_run = r["duration_us"] / 1e6
    failed = r["status"] + r["connect"] + r["read"] + r["write"] + r["timeout"]
    ok = max(0, r["requests"] - r["status"])
    return {
        "requests_per_s": round(ok / seconds_run, 1) if seconds_run > 0 else 0.0,
        "p50_ms": round(r["p50_us"] / 1000, 1),
        "p95_ms": round(r["p95_us"] / 1000, 1),
        "p99_ms": round(r["p99_us"] / 1000, 1),
        "ok": ok,
        "statuses": {"2xx": ok, "non_2xx": r["status"], "socket_errors": failed - r["status"]},
        "seconds": round(seconds_run, 2),
        "client": "wrk",
    }
