"""Where things live: workdir, tracking store, object-store endpoint, Ray address.

A workdir is a local folder (the embedded default) or an ``s3://bucket/prefix`` URI. With a
remote workdir every artifact lives in the bucket: splits, prediction logs and Ray Train/Tune
results are written there directly (by whichever node does the work); the driver's small
artifacts (packages, reports, summaries) are written into a node-local mirror (``root``) and
published by ``mlsd_ray.workspace`` when a stage ends. ``root`` is only a cache: it is rebuilt
from the bucket, checked file by file against content hashes.

Nothing here touches the disk or the network at import; callers ask for paths when needed.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mlsd_ray import storage
from mlsd_ray.storage import check_uri, is_remote

if TYPE_CHECKING:
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


def cache_dir(configured: str | None = None) -> Path:
    """The node-local cache root: the card's ``storage.cache_dir``, ``$MLSD_CACHE_DIR``, or
    ``~/.cache/mlsd``."""
    raw = configured or os.environ.get("MLSD_CACHE_DIR") or str(Path.home() / ".cache" / "mlsd")
    return Path(raw).expanduser().resolve()


def _normalise(raw: str) -> str:
    # Typer hands a ``Path`` option over, and Path("s3://b/p") is "s3:/b/p": put the slash back.
    if raw.startswith("s3:/") and not raw.startswith("s3://"):
        raw = "s3://" + raw[len("s3:/") :]
    return raw


@dataclass(frozen=True)
class Workdir:
    """Every artifact of one system's runs: ``uri`` is where they live, ``root`` the local
    folder the driver writes to (the workdir itself, or the node's mirror of a remote one)."""

    root: Path
    uri: str = ""
    #: The card's ``storage.tracking_uri`` (``MLFLOW_TRACKING_URI`` wins over it).
    tracking: str | None = field(default=None, compare=False)
    preflight_timeout_s: float = field(default=10.0, compare=False)

    def __post_init__(self) -> None:
        if not self.uri:
            object.__setattr__(self, "uri", str(self.root))

    @classmethod
    def of(cls, path: str | Path | None = None, *, cache: str | None = None) -> Workdir:
        raw = _normalise(str(path or os.environ.get("MLSD_WORKDIR", DEFAULT_WORKDIR)))
        if is_remote(raw):
            uri = check_uri(raw).rstrip("/")
            key = hashlib.sha256(uri.encode()).hexdigest()[:16]
            return cls(root=cache_dir(cache) / "workdirs" / key, uri=uri)
        return cls(Path(raw).resolve())

    @classmethod
    def for_card(cls, card: DesignCard, path: str | Path | None = None) -> Workdir:
        """The workdir for a card: an explicit ``path`` (not the default), else ``MLSD_WORKDIR``,
        else the card's ``storage.uri``, else ``./mlsd-work``."""
        s = card.storage
        given = None if path is None or str(path) == DEFAULT_WORKDIR else path
        chosen = given or os.environ.get("MLSD_WORKDIR") or s.uri or DEFAULT_WORKDIR
        wd = cls.of(chosen, cache=s.cache_dir)
        object.__setattr__(wd, "tracking", s.tracking_uri)
        object.__setattr__(wd, "preflight_timeout_s", s.preflight_timeout_s)
        return wd

    @property
    def remote(self) -> bool:
        return is_remote(self.uri)

    def resolve(self, uri: str) -> str:
        """Relative URIs (card defaults such as ``data``) live under the workdir."""
        if "://" in uri or Path(uri).is_absolute():
            return check_uri(uri) if is_remote(uri) else uri
        if self.remote:
            return check_uri(f"{self.uri}/{uri.strip('/')}")
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
        from mlsd_ray.storage import safe_join

        return Path(safe_join(str(self.models), model_name))

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def ray_results_uri(self) -> str:
        """Ray Train/Tune ``storage_path``: in the bucket for a remote workdir, so a worker on
        any node writes checkpoints every other node can read."""
        return self.resolve("ray_results")

    @property
    def cache(self) -> Path:
        """Node-local caches that may be deleted at any time (downloaded packages, staging)."""
        return self.root if not self.remote else self.root.parent.parent

    def prediction_log_uri(self, card: DesignCard) -> str:
        return self.resolve(card.monitoring.prediction_log_uri)

    def summary_path(self, stage: str) -> Path:
        """Each stage writes ``<stage>_summary.json`` here so runs can be scripted."""
        return self.root / f"{stage}_summary.json"

    @property
    def tracking_uri(self) -> str:
        return (
            os.environ.get("MLFLOW_TRACKING_URI")
            or self.tracking
            or f"sqlite:///{self.root / 'mlflow.db'}"
        )

    @property
    def artifact_root(self) -> str:
        return self.resolve("mlartifacts") if self.remote else str(self.root / "mlartifacts")


def ray_address() -> str | None:
    """``RAY_ADDRESS`` when set (a cluster or ``ray job submit``); None = start a local Ray."""
    return os.environ.get("RAY_ADDRESS") or None
