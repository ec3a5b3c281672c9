"""What every ``jobs/*.py`` entry point shares: arguments, logging and exit codes."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from mlsd_ray.errors import MlsdError
from mlsd_ray.settings import DEFAULT_WORKDIR, Workdir
from mlsd_ray.spec import DesignCard, load_card

log = logging.getLogger("mlsd_ray.job")


def job_main(
    description: str,
    stage: Callable[[DesignCard, Workdir], Any],
    argv: list[str] | None = None,
) -> int:
    """Parse ``--card --workdir --set``, run ``stage``, print its JSON summary; 0 ok, 2 on a
    known error (the message says what to change), 1 on anything unexpected."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--card", default="systems/harmful_content.yaml")
    parser.add_argument("--workdir", default=os.environ.get("MLSD_WORKDIR", DEFAULT_WORKDIR))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        card = load_card(args.card, args.overrides)
        from mlsd_ray.runtime import configure

        configure(card)  # stages.runtime_env for the Ray this job joins
        result = stage(card, Workdir.for_card(card, args.workdir))
    except MlsdError as err:
        log.error("%s", err)
        return 2
    # The job's result on stdout (what `ray job logs` shows); progress went to the log.
    sys.stdout.write(json.dumps(result, indent=2, default=str) + "\n")
    return 0
