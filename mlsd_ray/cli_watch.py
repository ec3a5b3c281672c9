"""``mlsd watch``, ``mlsd hold`` and ``mlsd labels`` (issue 12), registered by ``cli.py``."""

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from mlsd_ray.settings import DEFAULT_WORKDIR

CardArg = Annotated[Path, typer.Argument(help="Design card (YAML).")]
WorkdirOpt = Annotated[
    Path, typer.Option("--workdir", "-w", help="Where every artifact of the run is written.")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a card field, e.g. --set data.split.seed=1"),
]


def register_commands(
    app: typer.Typer, _setup: Callable[..., Any], _emit: Callable[[Any], None]
) -> None:
    """Add the commands to ``app``; ``_setup``/``_emit`` are the CLI's (card + workdir, JSON)."""

    @app.command()
    def watch(
        card: CardArg,
        workdir: WorkdirOpt = Path(DEFAULT_WORKDIR),
        set_: SetOpt = None,
        once: Annotated[bool, typer.Option(help="One step (for a scheduler), then exit.")] = False,
        port: Annotated[
            int | None, typer.Option(help="Serve Prometheus metrics on 127.0.0.1:PORT.")
        ] = None,
    ) -> None:
        """Watch drift and decay; retrain, gate, canary, promote or roll back (see the card's
        monitoring.loop). Every decision goes to <workdir>/watch/decisions.jsonl."""
        from mlsd_ray.monitor import watch as w
        from mlsd_ray.watch_loop import default_stages

        c, wd = _setup(card, workdir, set_)
        on_decision: Callable[[dict[str, Any], dict[str, Any]], None] | None = None
        if port is not None:
            from mlsd_ray.monitor.metrics import MonitorMetrics

            metrics = MonitorMetrics(c)
            metrics.start(port)
            on_decision = metrics.observe_decision
        if once:
            decision = w.step(c, wd, default_stages())
            if on_decision is not None:
                on_decision(decision, w.read_state(c, wd))
            _emit(decision)
        else:
            w.run(c, wd, default_stages(), on_decision=on_decision)

    @app.command()
    def hold(
        card: CardArg,
        workdir: WorkdirOpt = Path(DEFAULT_WORKDIR),
        set_: SetOpt = None,
        release: Annotated[bool, typer.Option(help="Lift the hold.")] = False,
        reason: Annotated[str, typer.Option(help="Why (goes to the decision log).")] = "",
    ) -> None:
        """Stop the watch loop from acting (retrain, promote, roll back) until released."""
        from mlsd_ray.monitor.watch import set_hold

        c, wd = _setup(card, workdir, set_)
        _emit(set_hold(c, wd, not release, reason))

    @app.command()
    def labels(
        card: CardArg, workdir: WorkdirOpt = Path(DEFAULT_WORKDIR), set_: SetOpt = None
    ) -> None:
        """Join delayed labels (monitoring.loop.feedback) to the prediction log; online metrics
        per model version and arm -> reports/online/delayed_metrics.json."""
        from mlsd_ray.monitor.delayed import run_delayed

        c, wd = _setup(card, workdir, set_)
        _emit(run_delayed(c, wd))
