"""Lineage of a registered model, and pruning of dataset versions that keeps it intact.

Both need the registry (which versions exist, what they were trained on) and the data layer
(where versions live), so they sit above both. ``mlsd lineage VERSION --card CARD`` prints
``lineage``; the ETL stage of the pipeline calls ``prune_data_versions`` after each run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from mlsd_ray import registry, storage
from mlsd_ray.data import versions as dv
from mlsd_ray.errors import MlsdError
from mlsd_ray.models.package import MANIFEST, read_manifest
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard

log = logging.getLogger(__name__)


def versions_in_workdir(workdir: Workdir) -> set[str]:
    """Dataset versions the workdir's trained packages were fitted on (not registered yet, but
    the next evaluation reads them)."""
    found = set()
    if workdir.models.is_dir():
        for folder in workdir.models.iterdir():
            if (folder / MANIFEST).exists():
                found.add(str(read_manifest(folder).metadata.get("dataset_version")))
    return found - {"None", ""}


def prune_data_versions(card: DesignCard, workdir: Workdir) -> dict[str, Any]:
    """Apply ``data.versions``: delete old dataset versions except those a registered model
    or a trained package points to. When the registry cannot be read nothing is deleted."""
    setting = card.data.versions
    output = workdir.data_uri(card)
    if not setting.prune:
        return {"pruned": [], "protected": [], "reason": "data.versions.prune: false"}
    if len(dv.list_versions(output)) <= setting.keep:  # nothing to prune: leave MLflow alone
        return {"pruned": [], "protected": [], "keep": setting.keep}
    try:
        protected = set()
        if _has_registry(workdir):
            protected = registry.dataset_versions_in_use(card, workdir)
    except MlsdError as err:
        log.warning("data versions: not pruned, the registry is unreadable: %s", err)
        return {"pruned": [], "protected": [], "reason": f"registry unreadable: {err}"}
    protected |= versions_in_workdir(workdir)
    pruned = dv.prune(output, setting.keep, protected)
    return {"pruned": pruned, "protected": sorted(protected), "keep": setting.keep}


def _has_registry(workdir: Workdir) -> bool:
    """False only for the default sqlite store that was never created (no model registered
    yet): asking would create it, and mlflow takes seconds to import."""
    uri = workdir.tracking_uri
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).exists()
    return True


def lineage(card: DesignCard, workdir: Workdir, version: str) -> dict[str, Any]:
    """The data version (and whether its splits still exist), the card, the code version and
    the parent runs of registered ``version``."""
    found = registry.version_lineage(card, workdir, version)
    tags = {**found["run"]["tags"], **found["version"]["tags"]}
    data_version = tags.get("mlsd.dataset_version")
    data_uri = workdir.data_uri(card)
    data: dict[str, Any] = {"dataset_version": data_version, "output_uri": data_uri}
    if data_version and data_version != "None":
        folder = dv.version_uri(data_uri, data_version)
        manifest = storage.join(folder, dv.MANIFEST)
        data["uri"] = folder
        data["exists"] = storage.exists(manifest)
        if data["exists"]:
            m = storage.read_json(manifest)
            data["created_at"] = m.get("created_at")
            data["sources"] = [s.get("uri") for s in m.get("sources", [])]
            data["rows_written"] = m.get("rows", {}).get("written")
    return {
        "model": card.registered_model_name,
        "version": version,
        "model_name": found["version"]["model_name"],
        "aliases": found["version"]["aliases"],
        "data": data,
        "card": {
            "name": tags.get("mlsd.card"),
            "sha256": tags.get("mlsd.card_sha256"),
            "artifact": f"{found['run']['artifact_uri']}/reports/card.json",
        },
        "code_version": tags.get("mlsd.code_version"),
        "run": {k: found["run"][k] for k in ("run_id", "run_name")},
        "parents": found["parents"],
    }


def format_lineage(result: dict[str, Any]) -> str:
    """A short readable block; ``--json`` gives everything."""
    data = result["data"]
    state = "present" if data.get("exists") else "MISSING (pruned or never versioned)"
    lines = [
        f"{result['model']} v{result['version']} ({result['model_name']}) "
        f"aliases: {', '.join(result['aliases']) or '-'}",
        f"  data:    {data.get('dataset_version')} at {data.get('uri', data['output_uri'])}"
        f" [{state}]",
        f"  card:    {result['card']['name']} sha256 {result['card']['sha256']}",
        f"  code:    {result['code_version']}",
        f"  run:     {result['run']['run_id']} ({result['run']['run_name']})",
    ]
    for p in result["parents"]:
        lines.append(f"  parent:  {p['run_id']} ({p.get('run_name', '')})")
    if not result["parents"]:
        lines.append("  parent:  none")
    return "\n".join(lines)


def card_digest(card: DesignCard) -> tuple[str, str]:
    """(resolved card as JSON text, its SHA-256): what lineage records about the card."""
    import hashlib

    text = json.dumps(card.model_dump(mode="json"), indent=1, sort_keys=True)
    return text, hashlib.sha256(text.encode()).hexdigest()
