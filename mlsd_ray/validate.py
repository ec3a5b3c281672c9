"""``mlsd validate CARD``: check a card without touching data.

Everything checkable without data is checked by the pydantic model of the card when it loads
(kind params, trainer options, ensembles, gate metrics and classes, slices, serving options),
so validating is loading: on success the resolved card (every default filled in) is printed as
YAML; on failure every error, each with its key path, what was given and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml

from mlsd_ray.errors import CardError
from mlsd_ray.spec import load_card


def resolved_yaml(card_path: Path, overrides: list[str] | None = None) -> str:
    """The resolved card as YAML; raises CardError listing every problem."""
    card = load_card(card_path, overrides or [])
    return yaml.safe_dump(card.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def validate(
    card: Annotated[Path, typer.Argument(help="Design card (YAML).")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Override a card field, e.g. --set data.split.seed=1"),
    ] = None,
) -> None:
    """Check CARD without data: print the resolved card, or every error with its key path."""
    try:
        text = resolved_yaml(card, set_)
    except CardError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from None
    typer.echo(text, nl=False)
