"""Where things live: workdir, tracking store, object-store endpoint, Ray address.

Nothing here touches the disk or the network at import; callers ask for paths when needed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mlsd_ray import storage
from mlsd_ray.spec import DesignCard

DEFAULT_WORKDIR = "mlsd-work"
#: The file under ``data.output_uri`` naming the current dataset version's folder (written
#: last by ETL; see ``mlsd_ray.data.versions``).
CURRENT_DATA = "CURRENT"


def current_data_uri(data_uri: str) -> str:
    """The folder of the current dataset version (``<data_uri>/versions/<v>``), or
    ``data_uri`` itself for data written before versions existed."""
    pointer = storage.join(data_uri, CURRENT_DATA)
    if storage.exists(pointer):
        return storage.join(data_uri, str(storage.read_json(pointer)["path"]))
    return data_uri.rstrip("/")


@dataclass(frozen=True)
class Workdir:
    """The folder that holds every artifact of one system's runs."""

    root: Path

    @classmethod
    def of(cls, path: str | Path | None = None) -> Workdir:
        return cls(Path(path or os.environ.get("MLSD_WORKDIR", DEFAULT_WORKDIR)).resolve())

    def resolve(self, uri: str) -> str:
        """Relative URIs (card defaults such as ``data``) live under the workdir."""
        if "://" in uri or Path(uri).is_absolute():
            return uri
        return str(self.root / uri)

    def data_uri(self, card: DesignCard) -> str:
        return self.resolve(card.data.output_uri)

    def split_uri(self, card: DesignCard, split: str) -> str:
        """``split`` is one of train, validation, test, quarantine."""
        return f"{current_data_uri(self.data_uri(card))}/{split}"

    @property
    def models(self) -> Path:
        return self.root / "models"

    def model_dir(self, model_name: str) -> Path:
        return self.models / model_name

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    def prediction_log_uri(self, card: DesignCard) -> str:
        return self.resolve(card.monitoring.prediction_log_uri)

    def summary_path(self, stage: str) -> Path:
        """Each stage writes ``<stage>_summary.json`` here so runs can be scripted."""
        return self.root / f"{stage}_summary.json"

    @property
    def tracking_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def artifact_root(self) -> str:
        return str(self.root / "mlartifacts")


def ray_address() -> str | None:
    """``RAY_ADDRESS`` when set (a cluster or ``ray job submit``); None = start a local Ray."""
    return os.environ.get("RAY_ADDRESS") or None
