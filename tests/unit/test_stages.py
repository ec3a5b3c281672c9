"""The card's ``stages:`` section, secrets kept out of dumps, cache keys, stage retries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlsd_ray import pipeline, runtime, stage_cache
from mlsd_ray.errors import CardError
from mlsd_ray.kuberay import job_runtime_env, ray_job
from mlsd_ray.lineage import card_digest
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import load_card

REPO = Path(__file__).resolve().parents[2]
CARD = REPO / "systems" / "event_registration.yaml"


def _card(tmp_path: Path, *overrides: str, rows: int = 3):
    data = tmp_path / "data.csv"
    if not data.exists():
        data.write_text("a,Revenue\n" + "".join(f"{i},0\n" for i in range(rows)))
    return load_card(CARD, [f"data.sources.0.uri={data}", *overrides])


def test_stage_resources_become_ray_options() -> None:
    card = load_card(
        CARD,
        [
            "stages.train={num_cpus: 2, num_gpus: 1, memory_gb: 1.5, resources: {big: 1}}",
            "stages.serve.num_cpus=0.5",
        ],
    )
    assert card.stages.train.ray_options(num_cpus=1) == {
        "num_cpus": 2,
        "num_gpus": 1,
        "memory": int(1.5 * 2**30),
        "resources": {"big": 1},
    }
    assert card.stages.train.worker_resources(1)["GPU"] == 1
    assert card.stages.etl.ray_options(num_cpus=1) == {"num_cpus": 1}  # unset: the default
    assert card.stages.of("serve").ray_options(num_cpus=1)["num_cpus"] == 0.5
    assert card.stages.train.cluster_needs()["big"] == ("resources.big", 1)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("stages.train.cpus=2", "cpus"),
        ("stages.etl.memory_gb=0", "memory_gb"),
        ("stages.train.retries=-1", "retries"),
        ("stages.runtime_env={pip: [a==1], uv: [b==2]}", "uv"),
    ],
)
def test_bad_stage_settings_are_refused_naming_the_key(override: str, key: str) -> None:
    with pytest.raises(CardError, match=key):
        load_card(CARD, [override])


def test_secret_env_values_never_reach_a_dump_but_reach_ray() -> None:
    card = load_card(
        CARD,
        [
            "stages.runtime_env.env_vars="
            "{API_TOKEN: s3cr3t-v4lue, OTHER: AKIAABCDEFGHIJKLMNOP, MODE: fast}"
        ],
    )
    dumped = json.dumps(card.model_dump(mode="json"))
    text, _ = card_digest(card)  # what lineage writes as reports/card.json
    for out in (dumped, text):
        assert "s3cr3t-v4lue" not in out and "AKIAABCDEFGHIJKLMNOP" not in out and "fast" in out
    runtime.configure(card)
    try:
        env = runtime.runtime_env({"HF_HUB_OFFLINE": "1"})
    finally:
        runtime.configure(load_card(CARD))
    assert env is not None
    assert env["env_vars"] == {
        "HF_HUB_OFFLINE": "1",
        "API_TOKEN": "s3cr3t-v4lue",
        "OTHER": "AKIAABCDEFGHIJKLMNOP",
        "MODE": "fast",
    }
    # KubeRay: plain variables inline, secrets by name from the Secret, never their values
    job = ray_job(card, "systems/event_registration.yaml", "s3://b/p")
    manifest = json.dumps(job)
    assert "s3cr3t-v4lue" not in manifest and "AKIAABCDEFGHIJKLMNOP" not in manifest
    assert job_runtime_env(card) == {"env_vars": {"MODE": "fast"}}
    assert "MODE: fast" in job["spec"]["runtimeEnvYAML"]
    head_env = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    refs = {e["name"] for e in head_env["env"] if "valueFrom" in e}
    assert {"API_TOKEN", "OTHER"} <= refs


def test_cache_keys_follow_sources_sections_and_upstream(tmp_path: Path) -> None:
    card = _card(tmp_path)
    keys = {}
    upstream = None
    for stage in stage_cache.CACHEABLE:
        keys[stage] = upstream = stage_cache.stage_key(card, stage, upstream)
    assert all(keys.values()) and len(set(keys.values())) == 4
    assert stage_cache.stage_key(_card(tmp_path), "etl", None) == keys["etl"]  # stable
    assert stage_cache.stage_key(card, "serve", keys["register"]) is None  # live: always runs

    retrained = _card(tmp_path, "models.candidates.0.params.C=0.5")
    assert stage_cache.stage_key(retrained, "etl", None) == keys["etl"]
    assert stage_cache.stage_key(retrained, "train", keys["etl"]) != keys["train"]
    resized = _card(tmp_path, "stages.train.num_cpus=2")  # resources do not change results
    assert stage_cache.stage_key(resized, "train", keys["etl"]) == keys["train"]

    (tmp_path / "data.csv").write_text("a,Revenue\n1,0\n2,1\n")  # new data: everything re-runs
    assert stage_cache.stage_key(card, "etl", None) != keys["etl"]
    # --no-cache gives no key, and no key never finds a cached summary
    assert stage_cache.cached_summary(card, Workdir.of(tmp_path / "w"), "etl", None) is None


def test_a_database_source_is_never_cached() -> None:
    card = load_card(CARD, ["data.sources.0={uri: 'postgresql://postgres@127.0.0.1/db', table: t}"])
    assert stage_cache.stage_key(card, "etl", None) is None
    assert stage_cache.stage_key(card, "train", None) is None


def test_a_failed_stage_is_retried_and_its_attempts_counted() -> None:
    card = load_card(CARD, ["stages.evaluate.retries=2"])
    calls = []

    def flaky() -> dict:
        calls.append(1)
        if len(calls) < 2:
            raise RuntimeError("node lost")
        return {"ok": True}

    assert pipeline._with_retries(card, "evaluate", flaky) == ({"ok": True}, 2)

    def bad_card() -> dict:
        calls.append(1)
        raise CardError("bad")

    calls.clear()
    with pytest.raises(CardError):
        pipeline._with_retries(card, "evaluate", bad_card)
    assert len(calls) == 1  # a card error is not retried

    def always() -> dict:
        calls.append(1)
        raise RuntimeError("down")

    calls.clear()
    with pytest.raises(RuntimeError):
        pipeline._with_retries(card, "evaluate", always)
    assert len(calls) == 3
