"""``mlsd lineage VERSION --card CARD``: where a registered model version came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mlsd_ray.settings import DEFAULT_WORKDIR, Workdir
from mlsd_ray.spec import load_card


def lineage_command(
    version: Annotated[str, typer.Argument(help="Registered model version, e.g. 3.")],
    card: Annotated[Path, typer.Option("--card", "-c", help="The design card (YAML).")],
    workdir: Annotated[
        Path, typer.Option("--workdir", "-w", help="Where every artifact of the run is written.")
    ] = Path(DEFAULT_WORKDIR),
    as_json: Annotated[bool, typer.Option("--json", help="Everything, as JSON.")] = False,
) -> None:
    """Show a registered version's data version (and whether its splits still exist), the
    card, the code version and the parent runs."""
    from mlsd_ray.lineage import format_lineage, lineage

    result = lineage(load_card(card), Workdir.of(workdir), version.removeprefix("v"))
    typer.echo(json.dumps(result, indent=2, default=str) if as_json else format_lineage(result))
