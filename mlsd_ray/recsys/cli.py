"""``mlsd ab CARD --feedback FILE``: each A/B arm's online metrics with intervals and the test
against the control arm; and ``mlsd recommend CARD``: publish features and serve the graph.

Registered on the main typer app by ``mlsd_ray/cli.py``. No ``from __future__ import
annotations``: typer reads the parameter annotations at run time.
"""

import json
import logging
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from mlsd_ray.errors import CardError, DataError
from mlsd_ray.settings import DEFAULT_WORKDIR

log = logging.getLogger(__name__)

FeedbackOpt = Annotated[
    Path,
    typer.Option(
        help="Feedback (CSV or Parquet): request_id, item_id and the card's ranking.ab_metrics "
        "columns (e.g. click 0/1, watch_s); rows absent from it count as 0."
    ),
]


def ab_report(card_path: Path, workdir: Path, feedback: Path, overrides: list[str] | None) -> dict:
    from mlsd_ray.monitor.log import read_prediction_log
    from mlsd_ray.recsys.ab import report
    from mlsd_ray.settings import Workdir
    from mlsd_ray.spec import load_card

    card = load_card(card_path, overrides=overrides)
    if card.ranking is None or card.ranking.ab is None:
        raise CardError(
            f"{card_path}: ranking.ab is not set.",
            fix="add ranking.ab: {salt: ..., arms: [...]} to the card",
        )
    w = Workdir.of(workdir)
    shown = read_prediction_log(w.prediction_log_uri(card))
    fb = (
        pd.read_parquet(feedback)
        if feedback.suffix == ".parquet"
        else pd.read_csv(feedback, dtype={"item_id": str})
    )
    metrics = card.ranking.ab_metrics
    missing = [c for c in ("request_id", "item_id", *metrics) if c not in fb.columns]
    if missing:
        raise DataError(
            f"{feedback}: missing column(s) {missing}.", fix="add them to the feedback file"
        )
    fb = fb.groupby(["request_id", "item_id"], as_index=False)[list(metrics)].max()
    joined = shown.merge(fb, on=["request_id", "item_id"], how="left")
    joined[list(metrics)] = joined[list(metrics)].fillna(0.0)
    out = report(joined, card.ranking.ab, [(m, m, kind) for m, kind in metrics.items()])
    target = w.reports / "ab"
    target.mkdir(parents=True, exist_ok=True)
    (target / "ab_report.json").write_text(json.dumps(out, indent=2))
    out["report"] = str(target / "ab_report.json")
    return out


def _logging() -> None:
    """What ``mlsd_ray.cli`` sets up for its own commands (this module must not import it:
    the CLI sits above every other layer)."""
    import os

    logging.basicConfig(
        level=os.environ.get("MLSD_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def register(app: typer.Typer) -> None:
    """Add ``ab`` to the ``mlsd`` app."""

    @app.command()
    def ab(
        card: Annotated[Path, typer.Argument(help="Design card (YAML).")],
        feedback: FeedbackOpt,
        workdir: Annotated[
            Path, typer.Option("--workdir", "-w", help="Where the run's artifacts are.")
        ] = Path(DEFAULT_WORKDIR),
        set_: Annotated[
            list[str] | None, typer.Option("--set", "-s", help="Override a card field.")
        ] = None,
    ) -> None:
        """A/B test report: each arm's online metrics (CTR, watch time) with 95 % intervals and
        a significance test against the control arm (reports/ab/ab_report.json)."""
        _logging()
        typer.echo(json.dumps(ab_report(card, workdir, feedback, set_), indent=2))

    @app.command()
    def recommend(
        card: Annotated[Path, typer.Argument(help="A ranking card (YAML).")],
        workdir: Annotated[
            Path, typer.Option("--workdir", "-w", help="Where the run's artifacts are.")
        ] = Path(DEFAULT_WORKDIR),
        set_: Annotated[
            list[str] | None, typer.Option("--set", "-s", help="Override a card field.")
        ] = None,
    ) -> None:
        """Serve a ranking card: publish its features to Redis, deploy the retrieval + ranking
        graph (POST /<card>/recommend) until Ctrl-C."""
        from mlsd_ray.recsys.stage import serve_ranking
        from mlsd_ray.settings import Workdir
        from mlsd_ray.spec import load_card

        _logging()
        serve_ranking(load_card(card, overrides=set_), Workdir.of(workdir), blocking=True)
