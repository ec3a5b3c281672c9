"""KubeRay manifests from a card: a RayJob for the pipeline, a RayService for serving.

``mlsd kuberay CARD --workdir s3://bucket/prefix --out deploy/kuberay`` writes both. The
RayService's ``serveConfigV2`` is the same Serve config ``serve run`` takes, generated from the
card (``mlsd_ray.serve.app:build_app`` with the card and the workdir), so the cluster serves
what the laptop served. Secrets (Ray's auth token, S3 and MLflow credentials) are referenced
from Kubernetes Secrets by name, never written into a manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mlsd_ray.spec import DesignCard
from mlsd_ray.spec_cluster import looks_secret

RAY_VERSION = "2.60.0"
DEFAULT_IMAGE = f"mlsd-ray:{RAY_VERSION}"  # built from this repository (docs/cluster.md)
SECRET = "mlsd-secrets"  # keys: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, MLFLOW_TRACKING_*


def job_runtime_env(card: DesignCard) -> dict[str, Any]:
    """The card's ``stages.runtime_env`` as the pods' Ray gets it, secrets left out (they come
    from the ``mlsd-secrets`` Secret, see ``_env``); a local ``working_dir`` is left out too:
    the image holds the code, and only a remote one (``s3://...zip``, ``https://``) is fetched."""
    env = card.stages.runtime_env
    out = {k: v for k, v in env.to_ray().items() if k != "env_vars"}
    if "working_dir" in out and "://" not in out["working_dir"]:
        del out["working_dir"]
    plain = {k: v for k, v in env.env_vars.items() if not looks_secret(k, v)}
    if plain:
        out["env_vars"] = plain
    return out


def _card_secrets(card: DesignCard) -> list[str]:
    env = card.stages.runtime_env.env_vars
    return sorted(k for k, v in env.items() if looks_secret(k, v))


def _env(
    tracking_uri: str | None, s3_endpoint: str | None, secrets: tuple[str, ...] | list[str] = ()
) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": k, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": k, "optional": opt}}}
        for k, opt in (
            ("AWS_ACCESS_KEY_ID", False),
            ("AWS_SECRET_ACCESS_KEY", False),
            ("MLFLOW_TRACKING_USERNAME", True),
            ("MLFLOW_TRACKING_PASSWORD", True),
            *((name, False) for name in secrets),  # the card's secret env_vars: the Secret's
        )
    ]
    if tracking_uri:
        env.append({"name": "MLFLOW_TRACKING_URI", "value": tracking_uri})
    if s3_endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": s3_endpoint})
    env.append({"name": "MLSD_CACHE_DIR", "value": "/tmp/mlsd-cache"})  # node-local cache
    return env


def _container(
    name: str, image: str, cpu: str, memory: str, env: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "env": env,
        "resources": {
            "requests": {"cpu": cpu, "memory": memory},
            "limits": {"cpu": cpu, "memory": memory},
        },
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True},
    }


def cluster_spec(
    image: str, env: list[dict[str, Any]], workers: int, *, serve: bool = False
) -> dict[str, Any]:
    """Head (no work scheduled on it: ``num-cpus: 0``) + a CPU worker group; token auth on."""
    head = _container("ray-head", image, "2", "8Gi", env)
    head["ports"] = [
        {"containerPort": 6379, "name": "gcs"},
        {"containerPort": 8265, "name": "dashboard"},
        {"containerPort": 10001, "name": "client"},
    ] + ([{"containerPort": 8000, "name": "serve"}] if serve else [])
    return {
        "rayVersion": RAY_VERSION,
        "authOptions": {"mode": "token"},
        "headGroupSpec": {
            "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
            "template": {"spec": {"containers": [head]}},
        },
        "workerGroupSpecs": [
            {
                "groupName": "cpu",
                "replicas": workers,
                "minReplicas": 1,
                "maxReplicas": max(workers, 1) * 2,
                "rayStartParams": {},
                "template": {
                    "spec": {"containers": [_container("ray-worker", image, "4", "16Gi", env)]}
                },
            }
        ],
    }


def serve_config(card: DesignCard, card_path: str, workdir: str) -> dict[str, Any]:
    """The Serve config of the card (what ``serve run`` takes). On Kubernetes the proxy listens
    on the pod's address so the Service can reach it; the Service decides who can."""
    d = card.deployment
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": "0.0.0.0", "port": d.port},
        "applications": [
            {
                "name": card.name,
                "route_prefix": d.route_prefix,
                "import_path": "mlsd_ray.serve.app:build_app",
                "args": {"card": card_path, "workdir": workdir},
                **({"runtime_env": env} if (env := job_runtime_env(card)) else {}),
            }
        ],
    }


def ray_job(
    card: DesignCard,
    card_path: str,
    workdir: str,
    *,
    image: str = DEFAULT_IMAGE,
    tracking_uri: str | None = None,
    s3_endpoint: str | None = None,
    workers: int = 2,
) -> dict[str, Any]:
    env = _env(tracking_uri, s3_endpoint, _card_secrets(card))
    runtime_env = job_runtime_env(card)
    spec: dict[str, Any] = {
        "entrypoint": f"python jobs/pipeline.py --card {card_path} --workdir {workdir}",
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": 600,
        "backoffLimit": 1,
        "rayClusterSpec": cluster_spec(image, env, workers),
    }
    if runtime_env:  # stages.runtime_env: the job's packages and variables
        spec["runtimeEnvYAML"] = yaml.safe_dump(runtime_env, sort_keys=False)
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": f"{card.name.replace('_', '-')}-pipeline"},
        "spec": spec,
    }


def ray_service(
    card: DesignCard,
    card_path: str,
    workdir: str,
    *,
    image: str = DEFAULT_IMAGE,
    tracking_uri: str | None = None,
    s3_endpoint: str | None = None,
    workers: int = 2,
) -> dict[str, Any]:
    env = _env(tracking_uri, s3_endpoint, _card_secrets(card))
    config = serve_config(card, card_path, workdir)
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": card.name.replace("_", "-")},
        "spec": {
            "serveConfigV2": yaml.safe_dump(config, sort_keys=False),
            "rayClusterConfig": cluster_spec(image, env, workers, serve=True),
        },
    }


class _Dumper(yaml.SafeDumper):
    """Plain YAML for people: no anchors, multi-line strings (serveConfigV2) as ``|`` blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(manifest: dict[str, Any]) -> str:
    return yaml.dump(manifest, Dumper=_Dumper, sort_keys=False)


def write_manifests(
    out_dir: Path, card: DesignCard, card_path: str, workdir: str, **kw: Any
) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    head = (
        f"# Generated by `mlsd kuberay {card_path} --workdir {workdir}` from the card; "
        "edit the card and regenerate.\n"
    )
    written = []
    for suffix, manifest in (
        ("rayjob", ray_job(card, card_path, workdir, **kw)),
        ("rayservice", ray_service(card, card_path, workdir, **kw)),
    ):
        path = out_dir / f"{card.name}.{suffix}.yaml"
        path.write_text(head + dump(manifest))
        written.append(path)
    return written
