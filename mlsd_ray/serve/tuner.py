"""The latency-target tuner: find the batching and scaling with the most throughput whose
p99 stays at or under the card's ``requirements.latency_p99_ms``.

    mlsd serve tune CARD [--batch-sizes 1,8,16,32] [--waits 0.002,0.01] [--replicas 1,2]

For every point of a small grid (``max_batch_size`` x ``batch_wait_timeout_s`` x
``max_ongoing_requests`` x replica count) the card's graph is deployed on this machine's
Serve (loopback only) and a bounded load test is run against it: ``clients`` concurrent
connections, ``requests`` calls at most, ``max_seconds`` at most. The winner is written into
the system's Serve config as card overrides; the sweep is saved as CSV, Markdown and a PNG
(throughput and p99 against batch size). When no point meets the target, ``TuneError`` says so
and nothing is written to the config.
"""

from __future__ import annotations

import csv
import itertools
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlsd_ray.errors import MlsdError
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard

log = logging.getLogger(__name__)

#: Card keys the tuner sets, in the order they are written to the Serve config.
TUNED_KEYS = (
    "deployment.batching.max_batch_size",
    "deployment.batching.batch_wait_timeout_s",
    "deployment.max_ongoing_requests",
    "deployment.autoscaling.min_replicas",
    "deployment.autoscaling.max_replicas",
)


class TuneError(MlsdError):
    """No setting of the sweep meets the latency target (or the sweep cannot run)."""


@dataclass(frozen=True)
class Setting:
    max_batch_size: int
    batch_wait_timeout_s: float
    max_ongoing_requests: int
    replicas: int

    def overrides(self) -> list[str]:
        values = (
            self.max_batch_size,
            self.batch_wait_timeout_s,
            self.max_ongoing_requests,
            self.replicas,
            self.replicas,
        )
        return [f"{k}={v}" for k, v in zip(TUNED_KEYS, values, strict=True)]


@dataclass
class Point:
    setting: Setting
    requests_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    ok: int
    failed: int
    meets_target: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return {
            **asdict(self.setting),
            "requests_per_s": self.requests_per_s,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "ok": self.ok,
            "failed": self.failed,
            "meets_target": self.meets_target,
        }


def grid(
    batch_sizes: Sequence[int],
    waits_s: Sequence[float],
    replicas: Sequence[int],
    ongoing_factors: Sequence[float] = (2.0,),
) -> list[Setting]:
    """Every combination; ``max_ongoing_requests`` = factor x batch size (at least 1), so a
    replica admits enough requests for its batches to fill (factor >= 1)."""
    if not (batch_sizes and waits_s and replicas and ongoing_factors):
        raise TuneError("the sweep grid is empty", fix="give at least one value for each knob")
    out = {
        Setting(int(b), float(w), max(1, round(f * b)), int(r))
        for b, w, r, f in itertools.product(batch_sizes, waits_s, replicas, ongoing_factors)
    }
    return sorted(out, key=lambda s: (s.replicas, s.max_batch_size, s.batch_wait_timeout_s))


def choose(points: Sequence[Point], target_p99_ms: float) -> Point | None:
    """The most throughput among points with p99 <= target and no failed request."""
    for p in points:
        p.meets_target = p.failed == 0 and p.p99_ms is not None and p.p99_ms <= target_p99_ms
    ok = [p for p in points if p.meets_target]
    return max(ok, key=lambda p: p.requests_per_s) if ok else None


def tuned_card(card: DesignCard, setting: Setting) -> DesignCard:
    """``card`` with the setting's batching, concurrency and a fixed replica count."""
    data = card.model_dump()
    d = data["deployment"]
    d["batching"].update(
        max_batch_size=setting.max_batch_size, batch_wait_timeout_s=setting.batch_wait_timeout_s
    )
    d["max_ongoing_requests"] = setting.max_ongoing_requests
    d["autoscaling"].update(min_replicas=setting.replicas, max_replicas=setting.replicas)
    return DesignCard.model_validate(data)


def sample_instances(card: DesignCard, workdir: Workdir, n: int = 64) -> list[Any]:
    """Request bodies for the load: a few posts for a text card, else rows of the card's
    train split (run the ETL first)."""
    from mlsd_ray.serve.loadtest import DEFAULT_INSTANCES

    inputs = card.framing.inputs
    if len(inputs) == 1 and inputs[0].type in ("text", "string"):
        return list(DEFAULT_INSTANCES)
    from mlsd_ray.data.layout import read_split

    try:
        frame = read_split(workdir.split_uri(card, "train"))
    except MlsdError as err:
        raise TuneError(
            "the tuner sends rows of the train split to a tabular card, and there is none",
            why=str(err),
            fix="run `mlsd etl CARD` with the same --workdir first",
        ) from None
    rows = frame[card.feature_names].head(n)
    return list(rows.astype(object).where(rows.notna(), None).to_dict(orient="records"))


def run_sweep(
    card: DesignCard,
    workdir: Workdir,
    settings: Sequence[Setting],
    *,
    alias: str | None = None,
    model_dir: str | Path | None = None,
    instances: Sequence[Any] | None = None,
    clients: int = 16,
    requests: int = 200,
    max_seconds: float = 15.0,
    deploy: Callable[[DesignCard, Setting], Any] | None = None,
    path: str = "/predict",
    bodies: Sequence[dict[str, Any]] | None = None,
) -> list[Point]:
    """Deploy each setting under ``<card>_tune`` on loopback and load-test it. A task with its
    own graph (ranking) gives ``deploy`` (card, setting -> Serve application), the ``path`` it
    answers on and the request ``bodies`` to send."""
    import httpx
    from ray import serve

    from mlsd_ray.runtime import ensure_ray
    from mlsd_ray.serve.app import _running_http, base_url, build_application
    from mlsd_ray.serve.loadtest import load_test
    from mlsd_ray.serve.proxy import prepare

    # The sweep measures the proxy the card serves behind: its variables go in before a local
    # Ray starts (without them the tuner measured Serve's Python proxy, about a third of the
    # HAProxy rate on 2 cores).
    prepare(card)
    ensure_ray()
    serve.start(http_options={"host": "127.0.0.1", "port": card.deployment.port})
    host, port = _running_http("127.0.0.1", card.deployment.port)
    name, prefix = f"{card.name}_tune", f"/{card.name}_tune"
    url = base_url(host, port, prefix)
    if bodies:
        sample: list[Any] = list(bodies)
    else:
        sample = list(instances) if instances else sample_instances(card, workdir)
    points: list[Point] = []
    try:
        for setting in settings:
            tuned = tuned_card(card, setting)
            # Rollouts stay off: the sweep measures the alias's model alone.
            tuned.deployment.rollout.mode = "none"
            app = (
                deploy(tuned, setting)
                if deploy
                else build_application(tuned, workdir, alias, model_dir)
            )
            if name in serve.status().applications:
                # A clean start per point: no surge copies competing for CPUs, and no
                # replica of the previous setting still answering during the measurement.
                serve.delete(name)
            serve.run(app, name=name, route_prefix=prefix)
            with httpx.Client(base_url=url, timeout=30) as client:  # warm-up: new replicas
                for inst in sample[: max(2, setting.replicas * 2)]:
                    client.post(path, json=inst if bodies else {"instances": [inst]})
            result = load_test(url, sample, clients=clients, requests=requests,
                               max_seconds=max_seconds, path=path, bodies=bodies)  # fmt: skip
            point = Point(
                setting,
                requests_per_s=result["requests_per_s"],
                p50_ms=result["p50_ms"],
                p99_ms=result["p99_ms"],
                ok=result["ok"],
                failed=result["requests"] - result["ok"],
                extra={"statuses": result["statuses"]},
            )
            log.info("sweep %s -> %s", setting, point.row())
            points.append(point)
    finally:
        if name in serve.status().applications:
            serve.delete(name)
    return points


def write_sweep(points: Sequence[Point], target_p99_ms: float, out_dir: Path) -> dict[str, Path]:
    """``sweep.csv``, ``sweep.md`` and ``sweep.png`` (throughput and p99 vs batch size)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [p.row() for p in points]
    csv_path = out_dir / "sweep.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    md = [
        f"# Serving sweep (target p99 <= {target_p99_ms} ms)",
        "",
        f"Machine load average (1, 5, 15 min) when written: {load}. Other processes share the",
        "CPUs: compare the rows of one sweep with each other, not with another run.",
        "",
        "| " + " | ".join(rows[0]) + " |",
        "|" + "---|" * len(rows[0]),
        *("| " + " | ".join(str(v) for v in r.values()) + " |" for r in rows),
    ]
    md_path = out_dir / "sweep.md"
    md_path.write_text("\n".join(md) + "\n")
    return {"csv": csv_path, "md": md_path, "png": _plot(points, target_p99_ms, out_dir)}


def _plot(points: Sequence[Point], target_p99_ms: float, out_dir: Path) -> Path:
    from mlsd_ray.plots import pyplot

    plt = pyplot()
    fig, (ax_t, ax_p) = plt.subplots(1, 2, figsize=(10, 4))
    groups: dict[tuple[float, int, float], list[Point]] = {}
    for p in points:
        s = p.setting
        groups.setdefault(
            (s.batch_wait_timeout_s, s.replicas, s.max_ongoing_requests / s.max_batch_size), []
        ).append(p)
    for (wait, replicas, factor), ps in sorted(groups.items()):
        ps = sorted(ps, key=lambda p: p.setting.max_batch_size)
        xs = [p.setting.max_batch_size for p in ps]
        label = f"wait {wait * 1000:g} ms, {replicas} replica(s), ongoing {factor:g}x"
        ax_t.plot(xs, [p.requests_per_s for p in ps], marker="o", label=label)
        ax_p.plot(xs, [p.p99_ms or float("nan") for p in ps], marker="o", label=label)
    ax_p.axhline(target_p99_ms, color="red", ls="--", lw=1, label="target p99")
    ax_t.set(xlabel="max_batch_size", ylabel="requests/s", title="throughput", xscale="log")
    ax_p.set(xlabel="max_batch_size", ylabel="ms", title="p99 latency", xscale="log")
    ax_p.legend(fontsize=7)
    fig.tight_layout()
    path = out_dir / "sweep.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_serve_config(config_path: Path, card_name: str, setting: Setting) -> Path:
    """Put the setting into the app's ``args.overrides`` (replacing earlier tuned values);
    the leading comment block of the file is kept."""
    text = config_path.read_text()
    header = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    config = yaml.safe_load(text)
    apps = [a for a in config.get("applications", []) if a.get("name") == card_name]
    if not apps:
        raise TuneError(
            f"{config_path} has no application named {card_name!r}",
            fix="pass --config with the Serve config of this card",
        )
    args = apps[0].setdefault("args", {})
    keep = [o for o in args.get("overrides", []) if o.split("=", 1)[0] not in TUNED_KEYS]
    args["overrides"] = keep + setting.overrides()
    body = yaml.safe_dump(config, sort_keys=False)
    config_path.write_text("\n".join(header) + ("\n" if header else "") + body)
    return config_path


def tune(
    card: DesignCard,
    workdir: Workdir,
    *,
    batch_sizes: Sequence[int] = (1, 8, 16, 32),
    waits_s: Sequence[float] = (0.002, 0.01),
    replicas: Sequence[int] = (1,),
    ongoing_factors: Sequence[float] = (2.0,),
    config_path: str | Path | None = None,
    out_dir: str | Path | None = None,
    target_p99_ms: float | None = None,
    **sweep: Any,
) -> dict[str, Any]:
    """Sweep, choose, write the config and the report; raises ``TuneError`` if nothing meets
    the target (after writing the report, so the sweep can still be read)."""
    target = target_p99_ms or card.requirements.latency_p99_ms
    settings = grid(batch_sizes, waits_s, replicas, ongoing_factors)
    points = run_sweep(card, workdir, settings, **sweep)
    best = choose(points, target)
    out = Path(out_dir) if out_dir else workdir.reports / "serve_tune"
    files = write_sweep(points, target, out)
    summary: dict[str, Any] = {
        "target_p99_ms": target,
        "points": [p.row() for p in points],
        "report": {k: str(v) for k, v in files.items()},
        "chosen": best.row() if best else None,
        "loadavg": list(os.getloadavg()),
    }
    if best is None:
        fastest = min((p.p99_ms for p in points if p.p99_ms is not None), default=None)
        raise TuneError(
            f"No setting of the sweep meets the latency target p99 <= {target} ms "
            f"(requirements.latency_p99_ms); the best p99 measured was {fastest} ms.",
            why=f"{len(points)} settings tried; see {files['md']}",
            fix="relax the target, add replicas or CPUs, or use a faster model",
        )
    path = Path(config_path) if config_path else _default_config(card)
    summary["config"] = str(write_serve_config(path, card.name, best.setting))
    log.info(
        "chosen %s (p99 %s ms, %s req/s) -> %s",
        best.setting,
        best.p99_ms,
        best.requests_per_s,
        path,
    )
    return summary


def _default_config(card: DesignCard) -> Path:
    return Path(__file__).resolve().parents[2] / "serve_configs" / f"{card.name}.yaml"
