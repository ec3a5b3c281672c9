"""The exploration and error-analysis notebooks run top to bottom on a sample of real data."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["harmful_content", "event_registration"])
def test_notebook_runs(name: str, shared_datasets: Path, monkeypatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("MLSD_DATASETS", str(shared_datasets))
    monkeypatch.setenv("MLSD_NOTEBOOK_ROWS", "4000")  # a sample keeps CI fast
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the kernel imports this tree
    nb = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert "threshold" in text  # the business threshold was chosen and printed
