"""Closed-loop HTTP load from wrk, a C load generator (Debian package ``wrk``).

A load generator on the machine it measures takes CPU from the server. httpx on asyncio spends
0.4-0.9 ms of Python per request (BENCHMARKS.md, "The load generator was the limit"); wrk sends
the same requests from one epoll thread for a small part of that. It keeps ``clients``
connections, each with one request in flight, for a fixed time: the same closed loop as
:mod:`mlsd_ray.serve.loadtest`, which uses it when it is installed.

Each request is a POST of the next JSON body of ``bodies`` (the Lua script reads them from a
file, one per line). Percentiles come from wrk's own latency histogram. wrk cannot resend a
request with the same id, so a load with retries stays on httpx.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mlsd_ray.errors import ServiceError

# wrk runs `setup` per thread in the main state, `init` and `request`/`response` in each thread,
# and `done` once at the end, where it reads each thread's `codes` (answers by status code).
LUA = r"""
local bodies, n, i = {}, 0, 0
local headers = {["Content-Type"] = "application/json"}
local path = "/predict"
codes = {}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  path = args[2]
  for line in io.lines(args[1]) do
    n = n + 1
    bodies[n] = line
  end
end

function request()
  i = i % n + 1
  return wrk.format("POST", path, headers, bodies[i])
end

function response(status, hdrs, body)
  local key = tostring(status)
  codes[key] = (codes[key] or 0) + 1
end

function done(summary, latency, requests)
  local e = summary.errors
  local parts = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("codes")) do
      table.insert(parts, string.format('"%s": %d', k, v))
    end
  end
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"timeout": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d, "codes": {%s}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max,
    table.concat(parts, ", ")))
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def run(
    url: str,
    bodies: Sequence[dict[str, Any]],
    clients: int,
    max_seconds: float,
    requests: int | None = None,
    path: str = "/predict",
) -> dict[str, Any]:
    """One closed-loop load; the figures of :func:`mlsd_ray.serve.loadtest.load_test`.

    wrk runs for a fixed time. With a ``requests`` budget, a 1 s probe (also the warm-up)
    measures the rate, and the load then lasts about ``requests`` answers: at least 2 s (wrk
    counts whole seconds), at most ``max_seconds``."""
    seconds = max(1, round(max_seconds))
    if requests is not None:
        probe = _wrk(url, bodies, clients, 1, path)
        answered_per_s = probe["requests"] / max(probe["seconds"], 1e-9)  # errors count too
        seconds = min(seconds, max(2, round(requests / max(answered_per_s, 1e-9))))
    return _wrk(url, bodies, clients, seconds, path)


def _wrk(
    url: str, bodies: Sequence[dict[str, Any]], clients: int, seconds: int, path: str
) -> dict[str, Any]:
    if not available():
        raise ServiceError(
            "wrk is not installed",
            why="the C load generator runs as the `wrk` program",
            fix="apt-get install wrk, or use the httpx client",
        )
    # wrk sends the path the script gives, so a route prefix in the URL goes into it.
    parts = urlsplit(url)
    path = parts.path.rstrip("/") + path
    base = f"{parts.scheme}://{parts.netloc}"
    with tempfile.TemporaryDirectory(prefix="mlsd_wrk_") as tmp:
        script, lines = Path(tmp) / "load.lua", Path(tmp) / "bodies.jsonl"
        script.write_text(LUA)
        lines.write_text("".join(json.dumps(b) + "\n" for b in bodies))
        cmd = ["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--timeout", "30s", "-s",
               str(script), base, "--", str(lines), path]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 90)
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise ServiceError(
            f"wrk failed against {url}",
            why=(out.stderr or out.stdout)[-500:].strip(),
            fix="check that the server answers POST on that URL",
        )
    r = json.loads(line.removeprefix("WRK_JSON "))
    elapsed = r["duration_us"] / 1e6
    statuses = {k: int(v) for k, v in sorted(r["codes"].items())}
    socket_errors = r["connect"] + r["read"] + r["write"] + r["timeout"]
    if socket_errors:
        statuses["-1"] = socket_errors
    ok = statuses.get("200", 0)
    return {
        "clients": clients,
        "requests": int(sum(statuses.values())),
        "ok": ok,
        "statuses": statuses,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(ok / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": round(r["p50_us"] / 1000, 1),
        "p95_ms": round(r["p95_us"] / 1000, 1),
        "p99_ms": round(r["p99_us"] / 1000, 1),
        "retried": 0,
        "timeline": [],
        "client": "wrk",
    }
