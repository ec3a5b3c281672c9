from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
CARD = REPO / "systems" / "harmful_content.yaml"


def fast_overrides(port: int | None = None, rows: int = 600) -> list[str]:
    """The shipped card, shrunk to run in seconds: fewer rows, a tiny random transformer."""
    return [
        f"data.sources.0.uri=synthetic://harmful_content?rows={rows}&seed=3",
        "models.candidates.0.trainer.pretrained=tiny",
        "models.candidates.0.trainer.max_steps=30",
        "models.candidates.0.trainer.batch_size=16",
        "models.candidates.0.trainer.learning_rate=0.001",
        "models.candidates.0.trainer.cpus_per_worker=1",
        "evaluation.gate.min_value=0.5",
        f"deployment.port={port or free_port()}",
        "deployment.autoscaling.max_replicas=1",
    ]


@pytest.fixture
def fast_card_overrides() -> list[str]:
    return fast_overrides()
