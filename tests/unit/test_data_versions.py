"""Dataset versions on a real local folder: pointer, listing, pruning that spares what it must."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlsd_ray.data import versions as dv
from mlsd_ray.settings import current_data_uri


def make_version(root: Path, name: str, created_at: str, complete: bool = True) -> Path:
    folder = root / "versions" / name
    (folder / "train").mkdir(parents=True)
    (folder / "train" / "part-0.parquet").write_bytes(b"x")
    if complete:
        (folder / "manifest.json").write_text(json.dumps({"created_at": created_at}))
    return folder


def test_pointer_resolves_splits_and_legacy_layout_still_reads(tmp_path: Path) -> None:
    out = str(tmp_path)
    assert dv.current(out) is None
    assert current_data_uri(out) == out  # data written before versions: splits at the top
    make_version(tmp_path, "aaa", "2026-01-01T00:00:00")
    dv.write_current(out, "aaa")
    assert dv.current(out) == {"dataset_version": "aaa", "path": "versions/aaa"}
    assert current_data_uri(out) == f"{out}/versions/aaa"


def test_prune_keeps_recent_current_and_protected(tmp_path: Path) -> None:
    out = str(tmp_path)
    for i, name in enumerate(["v1", "v2", "v3", "v4", "v5"]):
        make_version(tmp_path, name, f"2026-01-0{i + 1}T00:00:00")
    make_version(tmp_path, "half", "", complete=False)  # a run that crashed mid-write
    dv.write_current(out, "v2")  # e.g. a rollback of the pointer
    assert [v["dataset_version"] for v in dv.list_versions(out)] == ["v1", "v2", "v3", "v4", "v5"]

    deleted = dv.prune(out, keep=2, protected={"v1"})

    assert deleted == ["v3"]
    left = sorted(p.name for p in (tmp_path / "versions").iterdir())
    assert left == ["half", "v1", "v2", "v4", "v5"]  # unfinished folders are left alone
    assert dv.prune(out, keep=2, protected={"v1"}) == []  # idempotent
    with pytest.raises(ValueError):
        dv.prune(out, keep=0, protected=set())


def test_nothing_is_pruned_when_the_registry_cannot_be_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlsd_ray.lineage import prune_data_versions
    from mlsd_ray.settings import Workdir
    from mlsd_ray.spec import load_card
    from tests.conftest import REPO, free_port

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")  # nobody there
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    card = load_card(REPO / "systems" / "harmful_content.yaml", ["data.versions.keep=1"])
    workdir = Workdir(tmp_path / "work")
    root = Path(workdir.data_uri(card))
    for i, name in enumerate(["old", "older", "new"]):
        make_version(root, name, f"2026-01-0{3 - i}T00:00:00")
    dv.write_current(str(root), "new")

    result = prune_data_versions(card, workdir)

    assert result["pruned"] == [] and "registry unreadable" in result["reason"]
    assert sorted(p.name for p in (root / "versions").iterdir()) == ["new", "old", "older"]
