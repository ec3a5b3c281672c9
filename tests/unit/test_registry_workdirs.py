"""Two workdirs in one process keep their own MLflow stores."""

from __future__ import annotations

import os
from pathlib import Path

from mlsd_ray import registry
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import load_card

REPO = Path(__file__).resolve().parents[2]


def test_second_workdir_does_not_inherit_the_first_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    card = load_card(REPO / "systems" / "harmful_content.yaml")
    first, second = Workdir(tmp_path / "a"), Workdir(tmp_path / "b")

    registry.list_versions(card, first)  # touches the first store
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert second.tracking_uri.endswith(str(tmp_path / "b" / "mlflow.db"))
    registry.list_versions(card, second)
    assert (tmp_path / "b" / "mlflow.db").is_file()


def test_a_user_tracking_uri_is_kept(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'shared.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    card = load_card(REPO / "systems" / "harmful_content.yaml")
    registry.list_versions(card, Workdir(tmp_path / "a"))
    assert os.environ["MLFLOW_TRACKING_URI"] == uri
    assert Workdir(tmp_path / "b").tracking_uri == uri
