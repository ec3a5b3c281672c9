"""Versions that stay: three ETL runs on a real Ray, a real sqlite MLflow registry in the
workdir, pruning that spares the version a registered model points to, and `mlsd lineage`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from mlsd_ray import pipeline, registry
from mlsd_ray.cli import app
from mlsd_ray.data import versions as dv
from mlsd_ray.data.etl import read_split
from mlsd_ray.lineage import card_digest, lineage
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard, load_card

pytestmark = pytest.mark.integration

CARD = Path(__file__).resolve().parents[2] / "systems" / "harmful_content.yaml"


def card_for(seed: int, keep: int = 5) -> DesignCard:
    return load_card(
        CARD,
        overrides=[
            f"data.sources.0.uri=synthetic://harmful_content?rows=300&seed={seed}",
            "data.report=false",
            "data.checks.reference=none",
            f"data.versions.keep={keep}",
        ],
    )


def test_versions_stay_prune_spares_registered_and_lineage(
    ray_cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the workdir's sqlite store
    workdir = Workdir(tmp_path / "work")
    first = pipeline.etl(card_for(1), workdir)
    v1 = first["dataset_version"]
    out = workdir.data_uri(card_for(1))
    assert workdir.split_uri(card_for(1), "train") == f"{out}/versions/{v1}/train"

    # A model registered on v1, its run the child of a (tuning) parent run.
    card = card_for(1)
    with registry.tracked_run(card, workdir, "sweep") as parent:
        parent_id = parent.info.run_id
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "mlsd_model.json").write_text("{}")
    tags = pipeline._lineage_tags(
        card, {"tuning": {"parent_run_id": parent_id}}, tmp_path / "reports"
    )
    info = registry.log_and_register(
        card,
        workdir,
        "logreg",
        package,
        params={},
        metrics={},
        artifacts=[tmp_path / "reports"],
        tags={"mlsd.dataset_version": v1, **tags},
    )

    second = pipeline.etl(card_for(2), workdir)
    v2 = second["dataset_version"]
    assert v2 != v1
    assert dv.current(out) == {"dataset_version": v2, "path": f"versions/{v2}"}
    # The later run deleted nothing; readers find the current version.
    assert {v["dataset_version"] for v in dv.list_versions(out)} == {v1, v2}
    current = read_split(card_for(2), workdir, "train")
    at_v2 = pd.read_parquet(f"{out}/versions/{v2}/train")
    assert sorted(current["text"]) == sorted(at_v2["text"])
    assert set(current["_source"]) == {"synthetic://harmful_content?rows=300&seed=2"}

    third = pipeline.etl(card_for(3, keep=1), workdir)
    v3 = third["dataset_version"]
    # v1 is registered, v3 is current
    assert third["data_versions"]["pruned"] == [v2], third["data_versions"]
    assert v1 in third["data_versions"]["protected"]
    assert {v["dataset_version"] for v in dv.list_versions(out)} == {v1, v3}
    assert (Path(out) / "versions" / v1 / "train").is_dir()

    got = lineage(card, workdir, info.version)
    assert got["data"]["dataset_version"] == v1 and got["data"]["exists"] is True
    assert got["data"]["sources"] == ["synthetic://harmful_content?rows=300&seed=1"]
    assert got["card"]["sha256"] == card_digest(card)[1]
    git = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=CARD.parent, check=False
    ).stdout.strip()
    assert got["code_version"] == (git or "0.1.0")
    assert [p["run_id"] for p in got["parents"]] == [parent_id]
    card_json = Path(got["card"]["artifact"].removeprefix("file://"))
    assert card_digest(card)[0] == card_json.read_text()

    shown = CliRunner().invoke(
        app, ["lineage", info.version, "--card", str(CARD), "--workdir", str(workdir.root)]
    )
    assert shown.exit_code == 0, shown.output
    assert v1 in shown.output and "present" in shown.output and parent_id in shown.output
