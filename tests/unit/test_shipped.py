"""evaluate/shipped.py: a package folder travels as bytes and is unpacked on a node without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlsd_ray.evaluate.shipped import on_this_node, pack


def _package(root: Path) -> Path:
    pkg = root / "models" / "xgboost"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "mlsd_model.json").write_text('{"kind": "xgboost"}')
    (pkg / "sub" / "weights.bin").write_bytes(b"\x00\x01weights")
    return pkg


def test_a_node_without_the_folder_gets_an_identical_copy(tmp_path, monkeypatch) -> None:
    pkg = _package(tmp_path / "driver")
    digest, files = pack(pkg)
    assert set(files) == {"mlsd_model.json", "sub/weights.bin"}
    monkeypatch.setenv("MLSD_CACHE_DIR", str(tmp_path / "node-cache"))
    elsewhere = str(tmp_path / "not-on-this-node" / "xgboost")

    copy = on_this_node(elsewhere, digest, files)

    assert copy == tmp_path / "node-cache" / "shipped" / digest
    assert (copy / "sub" / "weights.bin").read_bytes() == b"\x00\x01weights"
    assert on_this_node(elsewhere, digest, files) == copy  # unpacked once per node
    assert not list(copy.parent.glob(".*"))  # no half-written folder left beside it


def test_the_node_that_has_the_folder_uses_it(tmp_path, monkeypatch) -> None:
    pkg = _package(tmp_path)
    monkeypatch.setenv("MLSD_CACHE_DIR", str(tmp_path / "cache"))
    assert on_this_node(str(pkg), *pack(pkg)) == pkg
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("change", ["content", "name"])
def test_the_digest_follows_names_and_contents(tmp_path, change) -> None:
    pkg = _package(tmp_path)
    before, _ = pack(pkg)
    if change == "content":
        (pkg / "sub" / "weights.bin").write_bytes(b"other")
    else:
        (pkg / "sub" / "weights.bin").rename(pkg / "sub" / "w.bin")
    assert pack(pkg)[0] != before
