"""A Ray cluster of several nodes on this one machine, each node a separate Linux host in all
that matters: its own network namespace and address, its own private tmpfs for working files.

Used by ``tests/e2e/test_multinode.py`` and ``bench/scale.py``; it imports nothing of
``mlsd_ray``. Needs root and ``ip`` (iproute2) and ``unshare`` (util-linux)::

    with NamespaceCluster(workers=2) as cluster:
        cluster.submit(["python", "jobs/pipeline.py", ...], working_dir=repo)
        cluster.nodes[1].kill()                   # SIGKILL every process of that node

Layout (an unusual private subnet, so nothing else on the machine collides with it):

- a bridge ``mlsd213br`` with the host side ``10.213.0.1/24``; the S3 server (moto) listens
  there, so every node reaches it and traffic stays between these test hosts;
- one network namespace per node (``mlsd213-head``, ``mlsd213-w1``, ...) joined to the bridge by a
  veth pair, at ``10.213.0.10``, ``.11``, ...; loopback up inside;
- inside each namespace, a private mount namespace with a tmpfs on ``/tmp/mlsdnode`` (the node's
  ``HOME``, ``TMPDIR``, Ray ``--temp-dir`` and ``MLSD_CACHE_DIR``) and on ``/dev/shm`` (the
  object store): the same path names a different, empty folder on every node, so a file that
  one node writes and another reads by path fails, as it would on real machines;
- ``ray start --block`` in each, with ``--node-ip-address``, a custom resource ``node_<name>``
  and token auth on (``RAY_AUTH_MODE=token``, one token handed to every node and client
  through ``RAY_AUTH_TOKEN``, never written to disk).

Teardown kills every process in the namespaces, deletes namespaces, veths and bridge, and runs
even when start-up fails half way.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PREFIX = "mlsd213"
BRIDGE = f"{PREFIX}br"
SUBNET = "10.213.0"
HOST_IP = f"{SUBNET}.1"
NODE_DIR = "/tmp/mlsdnode"  # one path, a different tmpfs in every node's mount namespace
GCS_PORT = 6380
DASHBOARD_PORT = 8265
BIN = Path(sys.executable).parent
NETNS_EXEC = ("ip", "netns", "exec")
PRIVATE_MOUNTS = ("unshare", "--mount", "--propagation", "private")


class NamespacesUnavailable(RuntimeError):
    """This machine cannot create network namespaces (not root, no iproute2, no permission)."""


def _sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


def check_namespaces() -> None:
    """Raise NamespacesUnavailable saying why, where a namespace cannot be created."""
    if os.geteuid() != 0:
        raise NamespacesUnavailable("network namespaces need root (euid is not 0)")
    for tool in ("ip", "unshare", "nsenter"):
        if shutil.which(tool) is None:
            raise NamespacesUnavailable(f"`{tool}` is not on PATH (iproute2 / util-linux)")
    probe = f"{PREFIX}-probe"
    made = _sh("ip", "netns", "add", probe, check=False)
    _sh("ip", "netns", "del", probe, check=False)
    if made.returncode != 0:
        raise NamespacesUnavailable(f"`ip netns add` failed: {made.stderr.strip()}")


@dataclass
class Node:
    """One Ray node: its namespace, address and the ``ray start --block`` process."""

    name: str
    ip: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def netns(self) -> str:
        return f"{PREFIX}-{self.name}"

    @property
    def resource(self) -> str:
        """The custom resource only this node has (1 unit): ``{"node_w1": 0.01}`` places there."""
        return f"node_{self.name}"

    @property
    def ifname(self) -> str:
        """The node's end of its veth pair, inside its namespace."""
        return f"{PREFIX}n{self.name}"

    def pids(self) -> list[int]:
        out = _sh("ip", "netns", "pids", self.netns, check=False).stdout
        return [int(p) for p in out.split()]

    def kill(self) -> None:
        """SIGKILL every process of the node (raylet, workers, agents): a machine lost."""
        for _ in range(5):  # processes forked while we kill: go round until none is left
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)

    def exec_argv(self, argv: list[str]) -> list[str]:
        """``argv`` run inside this node (its network and mount namespaces)."""
        assert self.proc is not None, f"node {self.name} is not started"
        return ["nsenter", "-t", str(self.proc.pid), "-n", "-m", "--", *argv]


@dataclass
class NamespaceCluster:
    """A head and ``workers`` worker nodes, each in its own namespaces (see the module doc)."""

    workers: int = 2
    head_cpus: int = 0  # a head that schedules no work, as on a real cluster
    worker_cpus: int = 1
    object_store_mb: int = 150
    s3: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)
    log_dir: Path = field(default_factory=lambda: Path("/tmp") / f"{PREFIX}-logs")
    nodes: list[Node] = field(default_factory=list)
    token: str = field(default_factory=lambda: secrets.token_hex(32))
    s3_endpoint: str = ""
    _s3_proc: subprocess.Popen[bytes] | None = None

    # Start and stop ------------------------------------------------------------------------
    def __enter__(self) -> NamespaceCluster:
        check_namespaces()
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self.close()  # leftovers of a run that was killed before its teardown
        self.log_dir.mkdir(parents=True, exist_ok=True)
        Path(NODE_DIR).mkdir(exist_ok=True)
        self._network()
        if self.s3:
            self._start_s3()
        names = ["head"] + [f"w{i}" for i in range(1, self.workers + 1)]
        self.nodes = [
            Node(n, f"{SUBNET}.{10 + i}", self.log_dir / f"{n}.log") for i, n in enumerate(names)
        ]
        for node in self.nodes:
            self._link(node)
        for node in self.nodes:  # one at a time: less load while each registers
            self._bring_up([node])

    def close(self) -> None:
        """Kill every process in our namespaces, then remove namespaces, veths, bridge."""
        for ns in _sh("ip", "netns", "list", check=False).stdout.split("\n"):
            name = ns.split(" ")[0]
            if name.startswith(f"{PREFIX}-"):
                Node(name[len(PREFIX) + 1 :], "", Path()).kill()
                _sh("ip", "netns", "del", name, check=False)
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.kill()
            if node.proc is not None:
                node.proc.wait(timeout=30)
        if self._s3_proc is not None:
            self._s3_proc.kill()
            self._s3_proc.wait(timeout=30)
            self._s3_proc = None
        _sh("ip", "link", "del", BRIDGE, check=False)  # its veths went with the namespaces

    def _network(self) -> None:
        _sh("ip", "link", "add", BRIDGE, "type", "bridge")
        _sh("ip", "addr", "add", f"{HOST_IP}/24", "dev", BRIDGE)
        _sh("ip", "link", "set", BRIDGE, "up")

    def _link(self, node: Node) -> None:
        host_end, node_end = f"{PREFIX}h{node.name}", node.ifname
        _sh("ip", "netns", "add", node.netns)
        _sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", node_end)
        _sh("ip", "link", "set", node_end, "netns", node.netns)
        _sh("ip", "link", "set", host_end, "master", BRIDGE)
        _sh("ip", "link", "set", host_end, "up")
        inside = ("ip", "netns", "exec", node.netns)
        _sh(*inside, "ip", "addr", "add", f"{node.ip}/24", "dev", node_end)
        _sh(*inside, "ip", "link", "set", node_end, "up")
        _sh(*inside, "ip", "link", "set", "lo", "up")

    def _start_s3(self) -> None:
        port = _free_port(HOST_IP)
        self._s3_proc = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", HOST_IP, "-p", str(port)],
            stdout=(self.log_dir / "moto.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.s3_endpoint = f"http://{HOST_IP}:{port}"
        _wait(lambda: _connects(HOST_IP, port), 30, "moto_server on the bridge")

    # The nodes -----------------------------------------------------------------------------
    @property
    def head(self) -> Node:
        return self.nodes[0]

    @property
    def gcs_address(self) -> str:
        return f"{self.head.ip}:{GCS_PORT}"

    @property
    def dashboard(self) -> str:
        return f"http://{self.head.ip}:{DASHBOARD_PORT}"

    def env(self) -> dict[str, str]:
        """What every node and every client gets: the venv first on PATH, token auth, S3."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "AWS_"))}
        env.update(
            PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
            RAY_USAGE_STATS_ENABLED="0",
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN=self.token,
            # GCS side of a node's registration; the loaded test machine needs more than 30 s
            RAY_raylet_start_wait_time_s="120",
        )
        if self.s3_endpoint:
            env.update(
                AWS_ENDPOINT_URL=self.s3_endpoint,
                AWS_ACCESS_KEY_ID="testing",
                AWS_SECRET_ACCESS_KEY="testing",
                AWS_DEFAULT_REGION="us-east-1",
            )
        env.update(self.extra_env)
        return env

    def _node_env(self, node: Node) -> dict[str, str]:
        env = self.env()
        env.pop("PYTHONPATH", None)  # jobs bring their code (runtime_env), not the host's path
        env.update(self.extra_env)  # ... unless the caller hands one on purpose (bench)
        env.update(
            HOME=f"{NODE_DIR}/home",
            TMPDIR=f"{NODE_DIR}/tmp",
            MLSD_CACHE_DIR=f"{NODE_DIR}/cache",
            # Every node has the machine's hostname, which resolves to loopback: gloo (torch
            # DDP) would advertise 127.0.0.1 to the other nodes. Name the interface, as on a
            # real host with several NICs.
            GLOO_SOCKET_IFNAME=node.ifname,
            # Ray's state API in Train's background threads finds "the" cluster by scanning
            # the machine's processes, and sees every node (and other users' Rays) here.
            RAY_ADDRESS=self.gcs_address,
        )
        return env

    def _start_node(self, node: Node) -> None:
        head = node is self.head
        ray = [
            str(BIN / "ray"),
            "start",
            "--block",
            f"--node-ip-address={node.ip}",
            f"--num-cpus={self.head_cpus if head else self.worker_cpus}",
            f"--resources={json.dumps({node.resource: 1})}",
            f"--temp-dir={NODE_DIR}/ray",
            f"--object-store-memory={self.object_store_mb * 1024 * 1024}",
            "--disable-usage-stats",
        ]
        if head:
            ray += [
                "--head",
                f"--port={GCS_PORT}",
                "--include-dashboard=true",
                f"--dashboard-host={node.ip}",
                f"--dashboard-port={DASHBOARD_PORT}",
            ]
        else:
            ray.append(f"--address={self.gcs_address}")
        # The private tmpfs mounts exist only in this node's mount namespace (unshare makes it
        # private); `exec` keeps one pid, the one `exec_argv` enters.
        script = (
            f"mount -t tmpfs -o size=4g tmpfs {NODE_DIR} && "
            "mount -t tmpfs -o size=2g tmpfs /dev/shm && "
            f"mkdir -p {NODE_DIR}/home {NODE_DIR}/tmp {NODE_DIR}/cache && exec "
            + " ".join(f"'{a}'" for a in ray)
        )
        node.proc = subprocess.Popen(
            [*NETNS_EXEC, node.netns, *PRIVATE_MOUNTS, "sh", "-c", script],
            env=self._node_env(node),
            stdout=node.log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    # Talking to the cluster ----------------------------------------------------------------
    def api(self, path: str) -> Any:
        """GET the head's dashboard API with the token (``/api/v0/nodes``, ...)."""
        req = urllib.request.Request(
            self.dashboard + path, headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def alive_nodes(self) -> list[dict[str, Any]]:
        rows = self.api("/api/v0/nodes?limit=100")["data"]["result"]["result"]
        return [r for r in rows if r["state"] == "ALIVE"]

    def _bring_up(self, nodes: list[Node], timeout_s: float = 600, tries: int = 5) -> None:
        """Start ``nodes`` and wait until each is ALIVE in the GCS. On a loaded machine a node
        can miss Ray's fixed 30 s start-up deadline and exit; it is started again."""
        started = dict.fromkeys((n.name for n in nodes), 1)
        for node in nodes:
            self._start_node(node)

        def ready() -> bool:
            for node in nodes:
                if node.proc is not None and node.proc.poll() is not None:
                    if started[node.name] >= tries:
                        raise RuntimeError(
                            f"ray start on {node.name} exited {node.proc.returncode} "
                            f"{tries} times: {node.log.read_text(errors='replace')[-2000:]}"
                        )
                    node.kill()
                    started[node.name] += 1
                    self._start_node(node)
            try:
                alive = {str(n["node_ip"]) for n in self.alive_nodes()}
            except (OSError, ValueError):  # the dashboard is starting, or restarts a module
                return False
            return all(n.ip in alive for n in nodes)

        _wait(ready, timeout_s, f"nodes {[n.name for n in nodes]}")

    def node_ip_of(self, node_id: str) -> str:
        rows = self.api("/api/v0/nodes?limit=100")["data"]["result"]["result"]
        return next(str(r["node_ip"]) for r in rows if r["node_id"] == node_id)

    def actors(self, class_name: str | None = None) -> list[dict[str, Any]]:
        """Every actor (alive or dead) the GCS still remembers, of ``class_name`` if given."""
        rows = self.api("/api/v0/actors?limit=10000&detail=1")["data"]["result"]["result"]
        return [a for a in rows if class_name in (None, a["class_name"])]

    def run_on(
        self, node: Node, argv: list[str], env: dict[str, str] | None = None, timeout_s: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside ``node`` (e.g. a driver on the head), output captured."""
        return subprocess.run(
            node.exec_argv(argv),
            env={**self._node_env(node), **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )

    def submit_argv(self, entrypoint: list[str], working_dir: Path) -> list[str]:
        """``ray job submit`` through the head's dashboard address, from this host."""
        return [
            str(BIN / "ray"),
            "job",
            "submit",
            "--address",
            self.dashboard,
            "--working-dir",
            str(working_dir),
            "--",
            *entrypoint,
        ]

    def submit(
        self, entrypoint: list[str], working_dir: Path, timeout_s: float = 1800
    ) -> subprocess.CompletedProcess[str]:
        """Submit and wait; retries while the head's job agent is still starting."""
        deadline = time.time() + 240
        while True:
            proc = subprocess.run(
                self.submit_argv(entrypoint, working_dir),
                env=self.env(),
                capture_output=True,
                text=True,
                timeout=timeout_s,
            )
            if "No available agent" not in proc.stdout + proc.stderr or time.time() > deadline:
                return proc
            time.sleep(5)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _connects(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _wait(ready: Any, timeout_s: float, what: str) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if ready():
            return
        time.sleep(1)
    raise TimeoutError(f"{what} not ready after {timeout_s:.0f} s")
