"""The latency-target tuner on real Serve and real HTTP (tiny sweeps, a TF-IDF package)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from mlsd_ray.serve.app import ServeArgs
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import load_card
from tests.conftest import REPO, free_port
from tests.integration.serve_fixtures import tfidf_package

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OVERRIDES = [
    "name=serve_tune_test",
    "deployment.num_cpus_per_replica=0.25",
]


@pytest.fixture(scope="module")
def setup(ray_cluster, tmp_path_factory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("serve_tune")
    config = tmp / "serve_tune_test.yaml"
    raw = yaml.safe_load((REPO / "serve_configs" / "harmful_content.yaml").read_text())
    raw["applications"][0]["name"] = "serve_tune_test"
    config.write_text("# tuned below\n" + yaml.safe_dump(raw))
    return {"tmp": tmp, "package": tfidf_package(tmp / "pkg"), "config": config}


def test_a_loose_target_gets_the_fastest_setting_that_meets_it(setup):
    from mlsd_ray.serve.tuner import tune

    card = load_card(
        REPO / "systems" / "harmful_content.yaml",
        overrides=[
            *OVERRIDES,
            f"deployment.port={free_port()}",
            "requirements.latency_p99_ms=20000",
        ],
    )
    out = setup["tmp"] / "report"
    result = tune(
        card,
        Workdir.of(setup["tmp"] / "work"),
        batch_sizes=[1, 8],
        waits_s=[0.005],
        replicas=[1],
        config_path=setup["config"],
        out_dir=out,
        model_dir=setup["package"],
        clients=8,
        requests=40,
        max_seconds=20,
    )
    points = result["points"]
    assert len(points) == 2 and all(p["ok"] >= 40 and p["failed"] == 0 for p in points)
    chosen = result["chosen"]
    assert chosen["p99_ms"] <= 20000 and chosen["meets_target"]
    assert chosen["requests_per_s"] == max(p["requests_per_s"] for p in points)
    # The choice is in the Serve config, as card overrides that load.
    args = ServeArgs.model_validate(
        yaml.safe_load(setup["config"].read_text())["applications"][0]["args"]
    )
    tuned = load_card(REPO / args.card, overrides=args.overrides)
    assert tuned.deployment.batching.max_batch_size == chosen["max_batch_size"]
    assert tuned.deployment.effective_max_ongoing_requests == chosen["max_ongoing_requests"]
    assert setup["config"].read_text().startswith("# tuned below\n")
    for name in ("sweep.csv", "sweep.md", "sweep.png"):
        assert (out / name).stat().st_size > 0


def test_an_impossible_target_fails_clearly(setup):
    from mlsd_ray.cli import app

    before = setup["config"].read_text()
    result = CliRunner().invoke(
        app,
        [
            "serve",
            "tune",
            str(REPO / "systems" / "harmful_content.yaml"),
            "--workdir",
            str(setup["tmp"] / "work"),
            *(x for o in OVERRIDES for x in ("--set", o)),
            "--set",
            f"deployment.port={free_port()}",
            "--set",
            "requirements.latency_p99_ms=0.01",
            "--model-dir",
            str(setup["package"]),
            "--batch-sizes",
            "4",
            "--waits",
            "0.005",
            "--requests",
            "20",
            "--clients",
            "4",
            "--config",
            str(setup["config"]),
            "--out",
            str(setup["tmp"] / "impossible"),
        ],
    )
    assert result.exit_code != 0
    assert "No setting of the sweep meets the latency target" in str(result.exception)
    assert setup["config"].read_text() == before  # nothing written
    assert (setup["tmp"] / "impossible" / "sweep.md").is_file()  # the sweep is still readable
