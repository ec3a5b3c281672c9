"""cluster.yaml is accepted by Ray's own cluster-launcher schema and has a GPU worker type."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_cluster_yaml_matches_rays_schema(config: dict) -> None:
    schema_path = Path(os.path.dirname(ray.__file__)) / "autoscaler" / "ray-schema.json"
    jsonschema.validate(config, json.loads(schema_path.read_text()))
    validate_config(prepare_config(config))  # Ray's launcher does the same before `ray up`


def test_cluster_has_cpu_head_and_gpu_workers(config: dict) -> None:
    types = config["available_node_types"]
    assert "g5" in types["worker_gpu"]["node_config"]["InstanceType"]
    assert config["head_node_type"] == "head_cpu"
    # The head must not take Redis's port on machines that run one.
    assert all("--port=6379" not in c for c in config["head_start_ray_commands"])


def test_broken_config_is_rejected(config: dict) -> None:
    broken = dict(config, max_workers="many")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            broken,
            json.loads(
                (Path(os.path.dirname(ray.__file__)) / "autoscaler" / "ray-schema.json").read_text()
            ),
        )
