"""What a person sees: error blocks, exit codes, stage figures; the `mlsd` command as run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mlsd_ray import console, progress
from mlsd_ray.errors import CardError, GateError, MlsdError, ServiceError, SourceError

REPO = Path(__file__).resolve().parents[2]
CARD = REPO / "systems" / "harmful_content.yaml"
MLSD = [sys.executable, "-c", "from mlsd_ray.cli import main; main()"]


def mlsd(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MLSD, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        # A Ray this pytest process started (integration tests) must not be joined by the CLI.
        env={**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **env},
    )


def test_exit_codes_by_kind() -> None:
    assert MlsdError("x").exit_code == 1
    assert ServiceError("x").exit_code == 1
    assert CardError("x").exit_code == SourceError("x").exit_code == 2
    assert GateError("x").exit_code == 3


def test_progress_is_a_no_op_without_a_display() -> None:
    progress.install(None)
    assert not progress.active()
    with progress.stage("etl") as done, progress.task("rows", total=3) as bar:
        bar.advance(2, loss=0.5)
        done.set({"rows_in": 1})


def test_stage_figures_name_the_numbers_and_warn_on_quarantine() -> None:
    line, warnings = console.stage_figures(
        "etl",
        {
            "rows_in": 10,
            "rows_ok": 8,
            "rows_quarantined": 2,
            "quarantine_by_reason": {"empty text": 2},
            "rows_per_split": {"train": 6, "validation": 1, "test": 1},
            "outputs": {"quarantine": "/w/data/quarantine"},
            "dataset_version": "abc",
        },
    )
    assert "10 rows in, 8 ok, 2 quarantined" in line and "train 6" in line
    assert warnings == ["2 rows quarantined (empty text: 2), kept in /w/data/quarantine"]
    line, warnings = console.stage_figures(
        "evaluate",
        {
            "candidate": "m",
            "metrics": {"m": {"roc_auc": 0.61}},
            "gate": {"passed": False, "failed": ["roc_auc 0.61 < 0.75"], "config": {}},
        },
    )
    assert "gate FAILED" in line and warnings == ["gate failed: roc_auc 0.61 < 0.75"]


def test_a_wrong_card_path_is_one_block_with_exit_2(tmp_path: Path) -> None:
    done = mlsd("etl", str(tmp_path / "nope.yaml"), "--workdir", str(tmp_path / "w"))
    assert done.returncode == 2, done.stderr
    assert "error: Design card" in done.stderr and "does not exist" in done.stderr
    assert "fix:" in done.stderr and "Traceback" not in done.stderr + done.stdout
    log = next((tmp_path / "w" / "logs").glob("mlsd-*.log")).read_text()
    assert "Traceback" in log  # kept for whoever asks, in the log file the block names
    assert str(tmp_path / "w" / "logs") in done.stderr
    verbose = mlsd("etl", str(tmp_path / "nope.yaml"), "--workdir", str(tmp_path / "w"), "-v")
    assert verbose.returncode == 2 and "Traceback" in verbose.stderr


def test_a_misspelt_key_names_the_key(tmp_path: Path) -> None:
    card = tmp_path / "card.yaml"
    card.write_text(CARD.read_text().replace("threshold_objective:", "treshold_objective:"))
    done = mlsd("etl", str(card), "--workdir", str(tmp_path / "w"))
    assert done.returncode == 2, done.stderr
    assert "evaluation.treshold_objective" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_port_in_use_fails_before_any_work(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = mlsd(
            "run", str(CARD), "--workdir", str(tmp_path / "w"), "--set", f"deployment.port={port}"
        )
    assert done.returncode == 1, done.stderr
    assert f"Port {port} on 127.0.0.1 is in use" in done.stderr
    assert f"--set deployment.port={port + 1}" in done.stderr
    assert not (tmp_path / "w" / "etl_summary.json").exists()  # nothing ran


def test_a_missing_label_column_at_init(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_text("text,outcome\nhello there,1\nbye now,0\n")
    done = mlsd("init", "--data", str(data), "--label", "label")
    assert done.returncode == 2, done.stderr
    assert "--label 'label' is not a column" in done.stderr and "outcome" in done.stderr
    missing = mlsd("init", "--data", str(tmp_path / "nope.csv"), "--label", "label")
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_usage_mistakes_exit_2() -> None:
    done = mlsd("etl")  # no card
    assert done.returncode == 2 and "Missing argument" in done.stderr


@pytest.mark.parametrize("flag", ["-v", "-vv"])
def test_verbose_flags_are_accepted_anywhere(flag: str, tmp_path: Path) -> None:
    done = mlsd("init", flag, "--data", str(tmp_path / "x.csv"), "--label", "y")
    assert done.returncode == 2 and "Traceback" in done.stderr
