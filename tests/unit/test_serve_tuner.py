"""The tuner's pure parts: grid, choice under the latency target, reports, config rewrite."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from mlsd_ray.serve.app import ServeArgs
from mlsd_ray.serve.tuner import (
    TUNED_KEYS,
    Point,
    Setting,
    TuneError,
    choose,
    grid,
    tuned_card,
    write_serve_config,
    write_sweep,
)
from mlsd_ray.spec import load_card
from tests.conftest import REPO


def _point(batch: int, rps: float, p99: float | None, failed: int = 0) -> Point:
    return Point(Setting(batch, 0.01, 2 * batch, 1), rps, p99, p99, ok=10, failed=failed)


def test_grid_ties_concurrency_to_the_batch_size():
    settings = grid([1, 8], [0.002, 0.01], [1, 2], ongoing_factors=[2.0])
    assert len(settings) == 8
    assert all(s.max_ongoing_requests == 2 * s.max_batch_size for s in settings)
    assert grid([4], [0.0], [1], [0.1])[0].max_ongoing_requests == 1  # never below 1
    with pytest.raises(TuneError):
        grid([], [0.01], [1])


def test_choose_takes_the_fastest_point_within_the_target():
    points = [_point(1, 100, 20), _point(8, 400, 80), _point(16, 500, 150), _point(32, 900, 90, 1)]
    best = choose(points, target_p99_ms=100)
    assert best is not None and best.setting.max_batch_size == 8
    # The faster batch-16 point misses the target; batch 32 lost a request.
    assert [p.meets_target for p in points] == [True, True, False, False]
    assert choose(points, target_p99_ms=0.01) is None
    assert choose([_point(1, 10, None)], target_p99_ms=1e9) is None  # nothing answered


def test_tuned_card_fixes_batching_and_replicas():
    card = load_card(REPO / "systems" / "harmful_content.yaml")
    tuned = tuned_card(card, Setting(8, 0.005, 16, 2))
    d = tuned.deployment
    assert (d.batching.max_batch_size, d.batching.batch_wait_timeout_s) == (8, 0.005)
    assert d.effective_max_ongoing_requests == 16
    assert (d.autoscaling.min_replicas, d.autoscaling.max_replicas) == (2, 2)
    assert card.deployment.batching.max_batch_size == 16  # the original is untouched


def test_sweep_report_and_config_rewrite(tmp_path):
    points = [_point(1, 100, 20), _point(8, 400, 80)]
    choose(points, 100)
    files = write_sweep(points, 100, tmp_path / "sweep")
    assert files["csv"].read_text().splitlines()[0].startswith("max_batch_size,")
    assert "| 8 |" in files["md"].read_text()
    assert files["png"].stat().st_size > 1000

    config = tmp_path / "harmful_content.yaml"
    shutil.copy(REPO / "serve_configs" / "harmful_content.yaml", config)
    raw = yaml.safe_load(config.read_text())
    raw["applications"][0]["args"]["overrides"] = ["deployment.port=8000"]
    config.write_text("# header kept\n" + yaml.safe_dump(raw))
    for setting in (Setting(4, 0.01, 8, 1), Setting(8, 0.002, 16, 2)):  # twice: replaced
        write_serve_config(config, "harmful_content", setting)
    text = config.read_text()
    assert text.startswith("# header kept\n")
    args = ServeArgs.model_validate(yaml.safe_load(text)["applications"][0]["args"])
    assert args.overrides[0] == "deployment.port=8000"
    assert len(args.overrides) == 1 + len(TUNED_KEYS)
    card = load_card(REPO / args.card, overrides=args.overrides)
    assert card.deployment.batching.max_batch_size == 8
    assert card.deployment.autoscaling.min_replicas == 2
    with pytest.raises(TuneError, match="no application named"):
        write_serve_config(config, "other_card", Setting(1, 0.0, 2, 1))


def test_load_samples_text_posts_or_train_rows(tmp_path):
    import pandas as pd

    from mlsd_ray.serve.tuner import sample_instances
    from mlsd_ray.settings import Workdir

    workdir = Workdir.of(tmp_path)
    text = load_card(REPO / "systems" / "harmful_content.yaml")
    assert all(isinstance(x, str) for x in sample_instances(text, workdir))

    tabular = load_card(REPO / "systems" / "event_registration.yaml")
    with pytest.raises(TuneError, match="mlsd etl"):
        sample_instances(tabular, workdir)
    split = tmp_path / "split"
    split.mkdir()
    row = {f.name: (1.5 if f.type == "float" else "2") for f in tabular.framing.inputs}
    pd.DataFrame([row] * 5).assign(label=1).to_parquet(split / "part-0.parquet")
    uri = workdir.split_uri(tabular, "train")
    Path(uri).parent.mkdir(parents=True, exist_ok=True)
    split.rename(uri)
    rows = sample_instances(tabular, workdir, n=3)
    assert len(rows) == 3 and set(rows[0]) == set(tabular.feature_names)  # no label
