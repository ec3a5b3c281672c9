"""Keep what is serving equal to what the registry alias says, without downtime.

``refresh_serving`` redeploys the card's application with the packages the aliases point at
now. The model deployments get the package through ``user_config`` and start their new
replicas before the old ones stop (``max_surge_percent: 100``), so requests keep being answered
during the switch.

``promote`` and ``rollback`` move the alias in the registry, then refresh the running app.
"""

from __future__ import annotations

import logging
from typing import Any

from mlsd_ray import registry
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard

log = logging.getLogger(__name__)


def is_serving(card: DesignCard) -> bool:
    """Whether an application named after the card runs on the connected Ray."""
    from ray import serve

    try:
        return card.name in serve.status().applications
    except Exception:  # no Serve controller on this cluster
        return False


def refresh_serving(card: DesignCard, workdir: Workdir, alias: str | None = None) -> dict[str, Any]:
    """Re-point the running app's model deployments at the aliases' current versions."""
    from ray import serve

    from mlsd_ray.serve.app import build_application

    app = build_application(card, workdir, alias)
    serve.run(app, name=card.name, route_prefix=card.deployment.route_prefix)
    info = registry.get_alias(card, workdir, alias or card.deployment.alias)
    version = info.version if info else None
    log.info("%s now serves version %s", card.name, version)
    return {"app": card.name, "alias": alias or card.deployment.alias, "version": version}


def promote(
    card: DesignCard, workdir: Workdir, version: str, alias: str | None = None
) -> dict[str, Any]:
    """Point ``alias`` (default: the card's serving alias) at ``version``; refresh the app if
    it is running on the connected Ray."""
    alias = alias or card.deployment.alias
    registry.set_alias(card, workdir, alias, version)
    if is_serving(card):
        return refresh_serving(card, workdir, alias)
    return {"app": None, "alias": alias, "version": version}


def rollback(card: DesignCard, workdir: Workdir, alias: str | None = None) -> dict[str, Any]:
    """Point ``alias`` back at the newest earlier version that held it; refresh the app."""
    alias = alias or card.deployment.alias
    info = registry.rollback(card, workdir, alias)
    if is_serving(card):
        return refresh_serving(card, workdir, alias)
    return {"app": None, "alias": alias, "version": info.version}
