"""The ``mlsd`` command: a thin face over the library, one subcommand per stage.

    mlsd run [CARD]                 the whole pipeline (default: the harmful-content card)
    mlsd etl|train|evaluate|register|serve|monitor CARD
    mlsd registry CARD              versions, metrics and aliases
    mlsd promote CARD --version N   /   mlsd rollback CARD
    mlsd serve tune CARD            batching and replicas for requirements.latency_p99_ms
    mlsd serve reload CARD          re-point the running app at its aliases (also --reload)
    mlsd predict CARD --input URI   offline batch prediction on Ray Data, Parquet out
    mlsd validate CARD              check a card without data; print it resolved, or every error

Every command takes ``--workdir DIR`` and any number of ``--set KEY=VALUE`` card overrides.
The console stays quiet: stage lines, bars, the summary; Ray's and the libraries' logs go to
WORKDIR/logs/ (``-v`` shows them, ``-vv`` adds DEBUG). Exit codes: 0 ok, 1 failure, 2 bad card
or input, 3 the evaluation gate refused the candidate.

Adding a command: write it in its own module and register it here in a line or two, e.g.
``app.command("init")(init_cmd.init)``; call ``_setup`` (card + workdir) or
``console.setup`` (no card) first so that logging and errors look like the rest.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from mlsd_ray import console
from mlsd_ray.cli_lineage import lineage_command
from mlsd_ray.errors import MlsdError
from mlsd_ray.settings import DEFAULT_WORKDIR, Workdir
from mlsd_ray.spec import DesignCard, load_card

DEFAULT_CARD = Path(__file__).resolve().parents[1] / "systems" / "harmful_content.yaml"

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False
)

CardArg = Annotated[Path, typer.Argument(help="Design card (YAML).")]
WorkdirOpt = Annotated[
    Path, typer.Option("--workdir", "-w", help="Where every artifact of the run is written.")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a card field, e.g. --set data.split.seed=1"),
]


_verbosity = 0


@app.callback()
def _options(
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose", "-v", count=True, help="-v: every library's logs; -vv: DEBUG as well."
        ),
    ] = 0,
) -> None:
    global _verbosity
    _verbosity = max(verbose, _verbosity)


def _setup(
    card_path: Path, workdir: Path, overrides: list[str] | None
) -> tuple[DesignCard, Workdir]:
    verbosity = _verbosity or int(os.environ.get("MLSD_VERBOSITY", "0"))
    given = Workdir.of(workdir)
    if not given.remote:  # the log file from the first line on (a card error lands there too)
        console.setup(given.root, verbosity)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    c = load_card(card_path, overrides or [])
    w = Workdir.for_card(c, workdir)  # --workdir, else MLSD_WORKDIR, else storage.uri
    from mlsd_ray.runtime import configure

    configure(c)  # stages.runtime_env for the Ray this command starts or joins
    from mlsd_ray.workspace import open_for_command

    open_for_command(w)  # an s3:// workdir: checked, mirrored, published at exit
    if w.remote:  # only now: nothing is written for a bucket that failed its checks
        console.setup(w.root, verbosity)
    return c, w


def _emit(result: Any) -> None:
    typer.echo(json.dumps(result, indent=2, default=str))


@app.command()
def run(
    card: Annotated[
        Path, typer.Argument(help="Design card (default: harmful content).")
    ] = DEFAULT_CARD,
    workdir: WorkdirOpt = Path(DEFAULT_WORKDIR),
    set_: SetOpt = None,
    serve_requests: Annotated[
        int, typer.Option(help="Requests to send to the served model; 0 = no serving/monitoring.")
    ] = 1,
    no_cache: Annotated[
        bool,
        typer.Option(
            "--no-cache",
            help="Run every stage, even those whose inputs, card and code are unchanged.",
        ),
    ] = False,
) -> None:
    """Run every stage: ETL, verification, training, evaluation, gate + registry, serving
    (answering real HTTP requests) and drift monitoring. Stages whose inputs, card sections
    and code are unchanged since their last run are skipped (--no-cache runs them all)."""
    from mlsd_ray.pipeline import run_pipeline
    from mlsd_ray.runtime import check_port_free, ray_address

    c, w = _setup(card, workdir, set_)
    if serve_requests > 0 and not ray_address():  # fail before minutes of training
        check_port_free(c.deployment.host, c.deployment.port)
    result = run_pipeline(c, w, serve_requests=serve_requests, use_cache=not no_cache)
    reg = result["register"]
    lines = [("Model", reg["summary"])]
    if result.get("serve"):
        answer = result["serve"]["first_answer"] or {}
        shown = {k: answer[k] for k in ("predictions", "labels", "model_version") if k in answer}
        if isinstance(shown.get("predictions"), list):
            shown["predictions"] = [_short(p) for p in shown["predictions"]]
        lines.append(("Served", json.dumps(shown, default=str)[:160]))
    lines.append(("Report", str(result.get("html_report") or result["report"])))
    if result.get("monitor"):
        lines.append(("Drift", str(result["monitor"].get("report_md", ""))))
    console.done(lines)
    if not reg["promoted"]:
        raise typer.Exit(3)


def _short(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value


@app.command()
def etl(card: CardArg, workdir: WorkdirOpt = Path(DEFAULT_WORKDIR), set_: SetOpt = None) -> None:
    """Read the card's sources, verify and quarantine, write stratified Parquet splits."""
    from mlsd_ray import pipeline

    _emit(pipeline.etl(*_setup(card, workdir, set_)))


@app.command()
def train(
    card: CardArg,
    workdir: WorkdirOpt = Path(DEFAULT_WORKDIR),
    set_: SetOpt = None,
    only: Annotated[list[str] | None, typer.Option(help="Train only these model names.")] = None,
) -> None:
    """Train the baseline and the candidates (Ray tasks and Ray Train)."""
    from mlsd_ray import pipeline

    c, w = _setup(card, workdir, set_)
    _emit(pipeline.train(c, w, only=only))


@app.command()
def evaluate(
    card: CardArg,
    workdir: WorkdirOpt = Path(DEFAULT_WORKDIR),
    set_: SetOpt = None,
    data: Annotated[
        str | None, typer.Option(help="Evaluate the champion on this data set (card schema).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the metrics JSON here.")] = None,
    alias: str = "champion",
) -> None:
    """Without --data: every trained model and the champion on the test split, plus the gate.
    With --data: the model behind ALIAS on any data set with the card's schema."""
    c, w = _setup(card, workdir, set_)
    if data:
        from mlsd_ray.evaluate.external import evaluate_alias_on

        result = evaluate_alias_on(c, w, data, alias=alias)
    else:
        from mlsd_ray import pipeline

        result = pipeline.evaluate(c, w)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, default=str))
        typer.echo(f"wrote {out}")
    else:
        _emit(result)


@app.command()
def register(
    card: CardArg, workdir: WorkdirOpt = Path(DEFAULT_WORKDIR), set_: SetOpt = None
) -> None:
    """Register the evaluated candidate; move `champion` only if the gate passed (exit 3 if
    it did not)."""
    from mlsd_ray import pipeline

    result = pipeline.register(*_setup(card, workdir, set_))
    _emit(result)
    if not result["promoted"]:
        raise typer.Exit(3)


class _DefaultToRun(TyperGroup):
    """``mlsd serve CARD`` still means ``mlsd serve run CARD``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


serve_app = typer.Typer(
    cls=_DefaultToRun,
    no_args_is_help=True,
    help="Serve a card (`mlsd serve CARD`), tune its batching (`tune`), follow its aliases "
    "(`reload`).",
)
app.add_typer(serve_app, name="serve")


@serve_app.command("run")
def serve(
    card: CardArg,
    workdir: WorkdirOpt = Path(DEFAULT_WORKDIR),
    set_: SetOpt = None,
    alias: str | None = None,
) -> None:
    """Serve the model behind the alias over HTTP until interrupted (Ctrl-C)."""
    from mlsd_ray.runtime import check_port_free, ray_address
    from mlsd_ray.serve.app import run_server

    c, w = _setup(card, workdir, set_)
    if not ray_address():
        check_port_free(c.deployment.host, c.deployment.port)
    typer.echo(f"serving {c.name} on {c.deployment.host}:{c.deployment.port}; Ctrl-C to stop")
    # Blocking: on Ctrl-C the app is deleted gracefully, which flushes the prediction log.
    run_server(c, w, alias=alias, blocking=True)


@app.command()
def monitor(
    card: CardArg, workdir: WorkdirOpt = Path(DEFAULT_WORKDIR), set_: SetOpt = None
) -> None:
    """Compare logged predictions with the training reference: drift per feature."""
    from mlsd_ray import pipeline

    _emit(pipeline.monitor(*_setup(card, workdir, set_)))


@app.command("registry")
def registry_list(
    card: CardArg,
    workdir: WorkdirOpt = Path(DEFAULT_WORKDIR),
    set_: SetOpt = None,
    table: Annotated[
        bool, typer.Option("--table", help="A table: metrics with their intervals, aliases.")
    ] = False,
    metrics: Annotated[
        list[str] | None, typer.Option("--metric", help="Columns (default: the card's).")
    ] = None,
) -> None:
    """List registered versions, their metrics and which alias points where."""
    from mlsd_ray import registry

    c, w = _setup(card, workdir, set_)
    versions = registry.list_versions(c, w)
    if table:
        typer.echo(registry.format_versions(versions, metrics or list(c.evaluation.metrics)))
    else:
        _emit([{**v.as_dict(), "intervals": registry.metric_intervals(v)} for v in versions])


@app.command()
def promote(
    card: CardArg,
    version: Annotated[str, typer.Option(help="The version to point the alias at.")],
    workdir: WorkdirOpt = Path(DEFAULT_WORKDIR),
    set_: SetOpt = None,
    alias: str = "champion",
    reload: Annotated[
        bool, typer.Option(help="Also re-point the app running on RAY_ADDRESS (no downtime).")
    ] = False,
) -> None:
    """Point ALIAS (default champion) at VERSION, by hand."""
    from mlsd_ray import registry

    c, w = _setup(card, workdir, set_)
    registry.set_alias(c, w, alias, version)
    _emit(registry.get_alias(c, w, alias).as_dict())  # type: ignore[union-attr]
    if reload:
        _reload_serving(c, w)


@app.command()
def rollback(
    card: CardArg,
    workdir: WorkdirOpt = Path(DEFAULT_WORKDIR),
    set_: SetOpt = None,
    alias: str = "champion",
    reload: Annotated[
        bool, typer.Option(help="Also re-point the app running on RAY_ADDRESS (no downtime).")
    ] = False,
) -> None:
    """Point ALIAS back at the newest earlier version that held it."""
    from mlsd_ray import registry

    c, w = _setup(card, workdir, set_)
    _emit(registry.rollback(c, w, alias).as_dict())
    if reload:
        _reload_serving(c, w)


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


@serve_app.command("tune")
def serve_tune(
    card: CardArg,
    workdir: WorkdirOpt = Path(DEFAULT_WORKDIR),
    set_: SetOpt = None,
    alias: str | None = None,
    model_dir: Annotated[
        Path | None, typer.Option(help="Tune with this local package instead of the alias.")
    ] = None,
    batch_sizes: Annotated[str, typer.Option(help="max_batch_size values.")] = "1,8,16,32",
    waits: Annotated[str, typer.Option(help="batch_wait_timeout_s values.")] = "0.002,0.01",
    replicas: Annotated[str, typer.Option(help="Replica counts.")] = "1",
    ongoing_factors: Annotated[
        str, typer.Option(help="max_ongoing_requests as multiples of the batch size.")
    ] = "2",
    clients: Annotated[int, typer.Option(help="Concurrent connections of the load.")] = 16,
    requests: Annotated[int, typer.Option(help="Requests per setting (at most).")] = 200,
    max_seconds: Annotated[float, typer.Option(help="Seconds per setting (at most).")] = 15.0,
    config: Annotated[
        Path | None, typer.Option(help="Serve config to update (default serve_configs/CARD).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for the sweep table and plot.")] = None,
) -> None:
    """Sweep batching, concurrency and replicas on 127.0.0.1; keep the most throughput with
    p99 <= requirements.latency_p99_ms; write it into the Serve config. Exit 2 if none does."""
    from mlsd_ray.pipeline import own_stage
    from mlsd_ray.serve.tuner import tune

    c, w = _setup(card, workdir, set_)
    # A task with its own graph (ranking) says how to deploy and load it.
    graph = own(c, w) if (own := own_stage(c, "serve_tune")) else {}
    result = tune(
        c,
        w,
        batch_sizes=[int(x) for x in _floats(batch_sizes)],
        waits_s=_floats(waits),
        replicas=[int(x) for x in _floats(replicas)],
        ongoing_factors=_floats(ongoing_factors),
        config_path=config,
        out_dir=out,
        alias=alias,
        model_dir=model_dir,
        clients=clients,
        requests=requests,
        max_seconds=max_seconds,
        **graph,
    )
    _emit(result)


@serve_app.command("reload")
def serve_reload(
    card: CardArg,
    workdir: WorkdirOpt = Path(DEFAULT_WORKDIR),
    set_: SetOpt = None,
) -> None:
    """Re-point the running app (on RAY_ADDRESS) at the versions its aliases name now."""
    _reload_serving(*_setup(card, workdir, set_))


def _reload_serving(c: DesignCard, w: Workdir) -> None:
    from mlsd_ray.runtime import ensure_ray
    from mlsd_ray.serve.rollout import is_serving, refresh_serving

    os.environ.setdefault("RAY_ADDRESS", "auto")  # join the running cluster, never a new one
    ensure_ray()
    if not is_serving(c):
        raise MlsdError(
            f"No application {c.name!r} is running on this Ray cluster.",
            fix="start it with `mlsd serve CARD` or `serve run serve_configs/...`",
        )
    _emit(refresh_serving(c, w))


@app.command()
def predict(
    card: CardArg,
    input: Annotated[str, typer.Option(help="Parquet/CSV/JSONL file, folder or s3:// URI.")],
    output: Annotated[
        str | None, typer.Option(help="Parquet output (default WORKDIR/batch_predictions).")
    ] = None,
    workdir: WorkdirOpt = Path(DEFAULT_WORKDIR),
    set_: SetOpt = None,
    alias: str | None = None,
    model_dir: Annotated[Path | None, typer.Option(help="A local package instead.")] = None,
) -> None:
    """Offline batch prediction on Ray Data (the Predictor that Serve uses)."""
    from mlsd_ray.batch_predict import predict_dataset

    c, w = _setup(card, workdir, set_)
    _emit(predict_dataset(c, w, input, output, alias=alias, model_dir=model_dir))


@app.command()
def online(
    card: CardArg,
    feedback: Annotated[
        str, typer.Option(help="Feedback file (CSV/Parquet/JSONL) keyed by request_id.")
    ],
    workdir: WorkdirOpt = Path(DEFAULT_WORKDIR),
    set_: SetOpt = None,
    threshold: Annotated[
        float | None,
        typer.Option(help="Decision threshold (default: the champion's, else the card's)."),
    ] = None,
) -> None:
    """Online metrics named in the card, from the prediction log joined with feedback."""
    from mlsd_ray.monitor.log import read_prediction_log
    from mlsd_ray.monitor.online import online_metrics, read_feedback

    c, w = _setup(card, workdir, set_)
    if threshold is None:
        threshold = _champion_threshold(c, w)
    result = online_metrics(
        c.evaluation.online_metrics,
        read_prediction_log(w.prediction_log_uri(c)),
        read_feedback(feedback),
        threshold,
    )
    out = w.reports / "online" / "online_metrics.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    _emit(result)


def _champion_threshold(card: DesignCard, workdir: Workdir) -> float:
    from mlsd_ray import registry
    from mlsd_ray.models.package import read_manifest

    if registry.get_alias(card, workdir, registry.CHAMPION) is None:
        return card.evaluation.threshold
    _, path = registry.fetch_model(card, workdir, registry.CHAMPION)
    return read_manifest(path).threshold


app.command("lineage")(lineage_command)

from mlsd_ray import cli_cluster  # noqa: E402  (commands for clusters: mlflow-server, kuberay)

cli_cluster.register(app)


def _register_validate() -> None:
    from mlsd_ray.validate import validate

    app.command()(validate)


_register_validate()


@app.command()
def report(workdir: WorkdirOpt = Path(DEFAULT_WORKDIR)) -> None:
    """(Re)write WORKDIR/reports/index.html: every stage's report on one self-contained page."""
    from mlsd_ray.report_html import write_index

    w = Workdir.of(workdir)
    console.setup(w.root, _verbosity)
    typer.echo(str(write_index(w)))


@app.command("ui")
def ui_cmd(
    workdir: WorkdirOpt = Path(DEFAULT_WORKDIR),
    port: Annotated[int, typer.Option(help="MLflow UI's port.")] = 5000,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
) -> None:
    """MLflow's UI over the workdir's store, Ray's dashboard, the Grafana dashboard; Ctrl-C ends."""
    from mlsd_ray import ui

    w = Workdir.of(workdir)
    s = console.setup(w.root, _verbosity)
    proc = ui.start_mlflow(w, host, port, s.log_path)
    dashboard, what = ui.ray_dashboard()
    typer.echo(f"MLflow UI:       http://{host}:{port}  (store {w.tracking_uri})")
    typer.echo(f"Ray dashboard:   {dashboard or '-'}  ({what})")
    typer.echo(f"Grafana:         import {ui.GRAFANA_DASHBOARD}")
    typer.echo("Ctrl-C stops the MLflow UI.")
    try:
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@app.command()
def init(
    data: Annotated[str, typer.Option(help="CSV/TSV/JSONL/Parquet file, s3:// or postgresql://")],
    label: Annotated[str, typer.Option(help="The column to predict.")],
    task: Annotated[
        str | None, typer.Option(help="binary | multiclass | regression (default: inferred).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the card here (default: stdout).")] = None,
    table: Annotated[str | None, typer.Option(help="Database sources: the table.")] = None,
    name: Annotated[str | None, typer.Option(help="The system's name.")] = None,
    rows: Annotated[int, typer.Option(help="Rows sampled to infer types and rules.")] = 20_000,
) -> None:
    """Write a complete, commented design card for your data; `mlsd run` runs it as is."""
    from mlsd_ray.init_card import write_card

    console.setup(None, _verbosity)
    text, card = write_card(data, label, task=task, out=out, name=name, table=table, rows=rows)
    s = console.session()
    if out is None:
        typer.echo(text, nl=False)
    inputs = ", ".join(f"{f.name} ({f.type})" for f in card.framing.inputs)
    s.err.print(
        f"Card {card.name} ({card.framing.category}) is valid; inputs: {inputs}", markup=False
    )
    where = str(out) if out is not None else "CARD.yaml  # save the card above first"
    s.err.print(f"Run it:  mlsd run {where} --workdir {card.name}-work", markup=False)


VERBOSE_FLAGS = {"-v": 1, "--verbose": 1, "-vv": 2, "-vvv": 2}
# Recommendation: `mlsd ab CARD --feedback FILE`, `mlsd recommend CARD` (mlsd_ray/recsys/cli.py).
from mlsd_ray.recsys.cli import register as _register_recsys  # noqa: E402

_register_recsys(app)


def _register_monitor_commands() -> None:
    from mlsd_ray.cli_watch import register_commands

    register_commands(app, _setup, _emit)  # mlsd watch / hold / labels (issue 12)


_register_monitor_commands()


def main() -> None:
    """The ``mlsd`` entry point: -v anywhere on the line, errors as one block, exit codes."""
    global _verbosity
    args = sys.argv[1:]
    _verbosity = sum(VERBOSE_FLAGS.get(a, 0) for a in args)
    console.capture_fds = True  # only the real command points fd 2 at the log file
    try:
        app(args=[a for a in args if a not in VERBOSE_FLAGS], standalone_mode=False)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except (MlsdError, Exception) as err:
        if hasattr(err, "show") and not isinstance(err, MlsdError):
            err.show()  # a usage mistake (missing argument, bad option): click's own message
            sys.exit(int(getattr(err, "exit_code", 2)))
        sys.exit(console.show_error(err))


if __name__ == "__main__":
    main()
