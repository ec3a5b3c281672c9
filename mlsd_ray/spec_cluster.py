"""Card sections for running on a cluster: where artifacts live (``storage:``), and what each
stage asks of Ray, its retries, the jobs' runtime env and step caching (``stages:``).

Kept out of ``spec.py`` so the cluster options read as one unit; ``spec.DesignCard`` holds one
field per section defined here.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)


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


#: The pipeline's stages, in order; each has a ``stages.<name>`` entry.
STAGE_NAMES = ("etl", "train", "evaluate", "register", "serve", "monitor")

#: Environment variable names whose values are secrets: never logged, dumped or reported.
_SECRET_NAME = re.compile(r"SECRET|PASSW|TOKEN|KEY|CREDENTIAL|AUTH|PRIVATE|SESSION", re.I)
#: Values that look like a credential whatever the name (AWS key ids, GitHub/OpenAI/Slack tokens).
_SECRET_VALUE = re.compile(r"^(AKIA|ASIA)[A-Z0-9]{12,}$|^(ghp_|gho_|github_pat_|sk-|xox[abp]-)")
REDACTED = "<redacted>"


def looks_secret(name: str, value: str) -> bool:
    """True for a variable whose value must never be logged or written (by name or by look)."""
    return bool(_SECRET_NAME.search(name) or _SECRET_VALUE.search(value))


def redact_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` with every secret-looking value replaced by ``<redacted>``."""
    return {k: REDACTED if looks_secret(k, v) else v for k, v in env.items()}


class StageResources(_Strict):
    """What one stage's Ray work asks for, and how often the stage is re-run when it fails.

    None leaves the stage's own default (e.g. ``cpus_per_worker`` of a model, the replica's
    ``deployment.num_cpus_per_replica``)."""

    num_cpus: float | None = Field(None, ge=0)
    num_gpus: float | None = Field(None, ge=0)
    memory_gb: float | None = Field(None, gt=0)
    #: Custom Ray resources (``ray start --resources``), e.g. ``{accelerator_big: 1}``.
    resources: dict[str, float] = Field(default_factory=dict)
    #: Re-runs of the whole stage after a failure (bad card or data is never retried).
    retries: int = Field(0, ge=0, le=10)

    @property
    def requested(self) -> bool:
        return any(v is not None for v in (self.num_cpus, self.num_gpus, self.memory_gb)) or bool(
            self.resources
        )

    def ray_options(self, **defaults: Any) -> dict[str, Any]:
        """``.options()`` / ``@ray.remote`` / ``ray_actor_options`` keywords: ``defaults``
        (e.g. ``num_cpus=1``) overridden by what the card sets."""
        out = dict(defaults)
        if self.num_cpus is not None:
            out["num_cpus"] = self.num_cpus
        if self.num_gpus is not None:
            out["num_gpus"] = self.num_gpus
        if self.memory_gb is not None:
            out["memory"] = int(self.memory_gb * 2**30)
        if self.resources:
            out["resources"] = {**out.get("resources", {}), **self.resources}
        return out

    def worker_resources(self, cpus: float) -> dict[str, float]:
        """Ray Train's ``ScalingConfig.resources_per_worker``: ``cpus`` unless the card sets
        ``num_cpus``, plus GPUs, memory (bytes) and custom resources."""
        out: dict[str, float] = {"CPU": cpus if self.num_cpus is None else self.num_cpus}
        if self.num_gpus:
            out["GPU"] = self.num_gpus
        if self.memory_gb is not None:
            out["memory"] = float(int(self.memory_gb * 2**30))
        return {**out, **self.resources}

    def cluster_needs(self) -> dict[str, tuple[str, float]]:
        """Ray resource name -> (the card key that asks for it, the amount) for a preflight."""
        out: dict[str, tuple[str, float]] = {}
        if self.num_cpus:
            out["CPU"] = ("num_cpus", self.num_cpus)
        if self.num_gpus:
            out["GPU"] = ("num_gpus", self.num_gpus)
        if self.memory_gb is not None:
            out["memory"] = ("memory_gb", self.memory_gb * 2**30)
        out |= {name: (f"resources.{name}", n) for name, n in self.resources.items() if n > 0}
        return out


class RuntimeEnv(_Strict):
    """Ray's ``runtime_env`` for ``ray.init`` and submitted jobs, so that code running on any
    node finds this repository and its packages. Secret-looking ``env_vars`` values (by name:
    ``*TOKEN*``, ``*PASSWORD*``, ``*KEY*``...) are sent to Ray but never logged or written
    into summaries, reports or manifests: prefer the environment (``runtime.FORWARDED_ENV``)."""

    #: A local folder (or a remote zip URI) Ray uploads and makes the workers' cwd.
    working_dir: str | None = None
    #: Packages installed into the workers' environment, pinned (``name==1.2.3``).
    pip: list[str] = Field(default_factory=list)
    #: The same through uv (faster); give either ``pip`` or ``uv``.
    uv: list[str] = Field(default_factory=list)
    env_vars: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_installer(self) -> RuntimeEnv:
        if self.pip and self.uv:
            raise ValueError("give either pip or uv packages, not both (uv is the faster one)")
        return self

    @field_serializer("env_vars")
    def _hide_secrets(self, env: dict[str, str]) -> dict[str, str]:
        # Every dump of the card (reports, card.json, MLflow params, summaries) goes through here.
        return redact_env(env)

    def to_ray(self) -> dict[str, Any]:
        """The ``runtime_env`` dict Ray takes, with the real values (never log it)."""
        out: dict[str, Any] = {}
        if self.working_dir:
            out["working_dir"] = self.working_dir
        if self.pip:
            out["pip"] = list(self.pip)
        if self.uv:
            out["uv"] = list(self.uv)
        if self.env_vars:
            out["env_vars"] = dict(self.env_vars)
        return out


# ``register`` is also ABCMeta.register, which the model's class keeps; instances read the field.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message='Field name "register"', category=UserWarning)

    class Stages(_Strict):
        """``stages:``: per-stage Ray resources and retries, the jobs' runtime env, step caching."""

        etl: StageResources = Field(default_factory=StageResources)
        train: StageResources = Field(default_factory=StageResources)
        evaluate: StageResources = Field(default_factory=StageResources)
        register: StageResources = Field(default_factory=StageResources)
        serve: StageResources = Field(default_factory=StageResources)
        monitor: StageResources = Field(default_factory=StageResources)
        runtime_env: RuntimeEnv = Field(default_factory=RuntimeEnv)
        #: Skip a stage of ``mlsd run`` whose inputs, card sections and code are unchanged since
        #: its last successful run (``--no-cache`` forces every stage).
        cache: bool = True

        def of(self, stage: str) -> StageResources:
            resources: StageResources = getattr(self, stage)
            return resources
