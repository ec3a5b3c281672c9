"""deploy/kuberay manifests: valid against the KubeRay v1.7.0 CRDs and in step with the cards."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from mlsd_ray import kuberay
from mlsd_ray.spec import load_card

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO.parent / "shared" / "schemas" / "kuberay-v1.7.0"
DEPLOY = REPO / "deploy" / "kuberay"
CRDS = {"RayJob": "ray.io_rayjobs.yaml", "RayService": "ray.io_rayservices.yaml"}


def _strict(node: Any) -> Any:
    """The CRD's schema as `kubectl apply --validate=strict` applies it: an object with listed
    properties takes no others (unless the CRD keeps unknown fields)."""
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


@pytest.fixture(scope="module")
def schemas() -> dict[str, dict[str, Any]]:
    if not SCHEMAS.is_dir():
        pytest.skip(f"KubeRay CRD schemas not found at {SCHEMAS} (../shared is absent)")
    out = {}
    for kind, name in CRDS.items():
        # The C loader: the CRDs are 20k lines each, which the pure-Python one reads slowly.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        crd = yaml.load((SCHEMAS / name).read_text(), Loader=loader)
        v1 = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
        out[kind] = _strict(v1["schema"]["openAPIV3Schema"])
    return out


def _manifests() -> list[Path]:
    return sorted(DEPLOY.glob("*.yaml"))


def test_there_is_a_rayjob_and_a_rayservice_per_card() -> None:
    kinds = {yaml.safe_load(p.read_text())["kind"] for p in _manifests()}
    assert kinds == {"RayJob", "RayService"}


@pytest.mark.parametrize("path", _manifests(), ids=lambda p: p.name)
def test_manifest_matches_the_crd(path: Path, schemas) -> None:
    manifest = yaml.safe_load(path.read_text())
    jsonschema.validate(manifest, schemas[manifest["kind"]])
    spec = manifest["spec"]
    cluster = spec.get("rayClusterSpec") or spec["rayClusterConfig"]
    assert cluster["authOptions"]["mode"] == "token"  # Ray token auth stays on
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    envs = [e for g in groups for c in g["template"]["spec"]["containers"] for e in c["env"]]
    secret = {"AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "MLFLOW_TRACKING_PASSWORD"}
    assert {e["name"] for e in envs} >= secret
    for e in envs:  # secrets come from a Kubernetes Secret, never a literal value
        if e["name"] in secret:
            assert "value" not in e and e["valueFrom"]["secretKeyRef"]["name"]


def test_a_wrong_field_is_caught(schemas) -> None:
    manifest = yaml.safe_load(next(DEPLOY.glob("*.rayjob.yaml")).read_text())
    bad = copy.deepcopy(manifest)
    bad["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replica"] = 2  # typo: replicas
    with pytest.raises(jsonschema.ValidationError, match="replica"):
        jsonschema.validate(bad, schemas["RayJob"])
    bad = copy.deepcopy(manifest)
    bad["spec"]["rayClusterSpec"]["authOptions"]["mode"] = "password"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schemas["RayJob"])


@pytest.mark.parametrize("name", ["harmful_content", "event_registration"])
def test_checked_in_manifests_are_what_the_card_generates(name: str, tmp_path: Path) -> None:
    """serveConfigV2 comes from the card: regenerate and compare (a stale file fails)."""
    card_path = f"systems/{name}.yaml"
    card = load_card(REPO / card_path)
    paths = kuberay.write_manifests(
        tmp_path,
        card,
        card_path,
        f"s3://mlsd-artifacts/{name}",
        tracking_uri="http://mlflow.mlsd.svc.cluster.local:5000",
    )
    for p in paths:
        assert p.read_text() == (DEPLOY / p.name).read_text(), p.name
    service = yaml.safe_load((DEPLOY / f"{name}.rayservice.yaml").read_text())
    serve = yaml.safe_load(service["spec"]["serveConfigV2"])
    app = serve["applications"][0]
    assert app["import_path"] == "mlsd_ray.serve.app:build_app"
    assert app["args"] == {"card": card_path, "workdir": f"s3://mlsd-artifacts/{name}"}
    assert serve["http_options"]["port"] == card.deployment.port
