"""Card sections for running on a cluster: where artifacts live (``storage:``).

Kept out of ``spec.py`` so the cluster options read as one unit; ``spec.DesignCard`` holds one
field per section defined here.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True)


class Storage(_Strict):
    """Where every artifact of the system lives. ``--workdir`` on the command line wins."""

    #: A local folder or ``s3://bucket/prefix``: splits, manifests, packages, Ray Train/Tune
    #: results, reports, prediction logs. None = ``--workdir`` (default ``./mlsd-work``).
    uri: str | None = None
    #: An MLflow tracking server every node reaches (``http://host:5000``); None = a sqlite
    #: file beside the workdir (the embedded default). ``MLFLOW_TRACKING_URI`` wins.
    tracking_uri: str | None = None
    #: Node-local caches (the mirror of a remote workdir, downloaded packages), keyed by
    #: content hash and rebuilt when missing. None = ``$MLSD_CACHE_DIR`` or ``~/.cache/mlsd``.
    cache_dir: str | None = None
    #: Check the bucket and the tracking server before a stage starts (fail fast).
    preflight: bool = True
    preflight_timeout_s: float = Field(10.0, gt=0)

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, v: str | None) -> str | None:
        if v is not None and "://" in v and not v.startswith("s3://"):
            raise ValueError(f"got {v!r}; expected a local path or an s3://bucket/prefix URI")
        return v
