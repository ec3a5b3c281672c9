"""The walking skeleton as a user runs it: one card through every stage, then the gate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsd_ray import pipeline, registry
from mlsd_ray.data.etl import read_split
from mlsd_ray.models.package import read_manifest, save_package
from mlsd_ray.models.simple import MajorityClass
from mlsd_ray.predict import Predictor
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import load_card
from tests.e2e.conftest import CARD, fast_overrides

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ran(ray_cluster, tmp_path_factory):
    """The whole pipeline once (tiny transformer, 600 generated posts), serving included."""
    card = load_card(CARD, fast_overrides())
    workdir = Workdir.of(tmp_path_factory.mktemp("work"))
    result = pipeline.run_pipeline(card, workdir, serve_requests=2)
    yield card, workdir, result
    from ray import serve

    serve.shutdown()  # later tests start Serve on ports of their own


def test_every_stage_wrote_its_summary(ran) -> None:
    _card, workdir, _result = ran
    for stage in ("etl", "train", "evaluate", "register", "serve", "monitor", "pipeline"):
        assert workdir.summary_path(stage).is_file(), stage
    etl = json.loads(workdir.summary_path("etl").read_text())
    assert etl["rows_in"] == etl["rows_ok"] + etl["rows_quarantined"] == 600
    assert sum(etl["rows_per_split"].values()) == etl["rows_ok"]


def test_report_plots_and_champion(ran) -> None:
    card, workdir, result = ran
    report_dir = workdir.reports / "evaluation"
    for name in ("report.md", "report.json", "roc.png"):
        assert (report_dir / name).stat().st_size > 0
    report = json.loads((report_dir / "report.json").read_text())
    assert set(report["metrics"]) == {"tfidf_logreg", "minilm"}
    for m in report["metrics"].values():
        assert set(m) >= {"precision", "recall", "f1", "accuracy", "roc_auc", "pr_auc"}
        assert np.asarray(m["confusion_matrix"]).sum() == m["n"]
    assert report["gate"]["passed"]
    champion = registry.get_alias(card, workdir, "champion")
    assert champion is not None and champion.version == result["register"]["registered_version"]
    # Lineage: the registered model names the dataset version ETL wrote.
    dataset = json.loads(workdir.summary_path("etl").read_text())["dataset_version"]
    assert champion.tags["mlsd.dataset_version"] == dataset
    assert read_manifest(workdir.model_dir("minilm")).metadata["dataset_version"] == dataset
    assert "champion" in (report_dir / "report.md").read_text()


def test_served_answer_matches_offline_prediction(ran) -> None:
    card, workdir, result = ran
    answer = result["serve"]["first_answer"]
    version, path = registry.fetch_model(card, workdir, "champion")
    assert answer["model_version"] == version
    test = read_split(card, workdir, "test").head(4)
    # deployment.inference: auto: the path evaluation recorded in the package, which the
    # registry's copy carries and the replica runs.
    offline = Predictor(path, version, inference=card.deployment.inference)
    np.testing.assert_allclose(
        answer["predictions"], offline.predict(test["text"].tolist()), atol=1e-5
    )
    report = json.loads((workdir.reports / "evaluation" / "report.json").read_text())
    choice = report["inference"]["minilm"]
    assert set(choice["paths"]) == {"fp32", "onnx", "int8", "bf16"} and choice["reason"]
    assert read_manifest(workdir.model_dir("minilm")).metadata["inference_choice"] == choice
    assert report["inference"]["tfidf_logreg"]["path"] == "fp32"
    if read_manifest(path).kind == "transformer":
        assert read_manifest(path).metadata["inference_choice"]["path"] == choice["path"]
        assert offline.inference == choice["path"]


def test_predictions_were_logged_and_monitored(ran) -> None:
    card, workdir, result = ran
    from mlsd_ray.monitor.log import read_prediction_log

    logged = read_prediction_log(workdir.prediction_log_uri(card))
    assert len(logged) == 8  # 2 requests x 4 instances
    assert set(logged["model_version"]) == {result["register"]["registered_version"]}
    assert result["monitor"]["features"]


def test_worse_model_does_not_move_the_champion(ran) -> None:
    card, workdir, _ = ran
    before = registry.get_alias(card, workdir, "champion")
    # A majority-class model (ROC-AUC 0.5) put forward as the only candidate.
    train = read_split(card, workdir, "train")
    worse = MajorityClass(["text"]).fit(train[["text"]], train["label"].to_numpy())
    manifest = read_manifest(workdir.model_dir("tfidf_logreg")).model_copy(
        update={"name": "minilm", "kind": "majority", "params": {}, "metadata": {}}
    )
    save_package(worse, workdir.model_dir("minilm"), manifest)
    (workdir.model_dir("tfidf_logreg") / "mlsd_model.json").unlink()  # only the worse one left
    report = pipeline.evaluate(card, workdir)
    assert not report["gate"]["passed"]
    assert any(
        r["rule"] in ("beats_champion", "min_value")
        for r in report["gate"]["rules"]
        if not r["passed"]
    )
    result = pipeline.register(card, workdir, report)
    assert result["promoted"] is False
    after = registry.get_alias(card, workdir, "champion")
    assert after is not None and before is not None and after.version == before.version
    challenger = registry.get_alias(card, workdir, "challenger")
    assert challenger is not None and challenger.version == result["registered_version"]
    assert "stays `champion`" in result["summary"]
    md = (workdir.reports / "evaluation" / "report.md").read_text()
    assert "FAILED" in md and "FAIL `" in md


def test_evaluate_champion_on_user_data(ran, tmp_path: Path) -> None:
    card, workdir, _ = ran
    from mlsd_ray.evaluate.external import evaluate_alias_on

    test = read_split(card, workdir, "test")
    frame = pd.DataFrame(
        {"text": test["text"], "label": np.where(test["label"] == 1, "harmful", "ok")}
    )
    frame.loc[len(frame)] = ["", "ok"]  # an empty post: quarantined, not scored
    path = tmp_path / "holdout.csv"
    frame.to_csv(path, index=False)
    out = evaluate_alias_on(card, workdir, str(path))
    assert out["rows_in"] == len(frame) and out["rows_quarantined"] == 1
    assert out["metrics"]["n"] == len(test)
    assert out["metrics"]["roc_auc"] > 0.5


def test_cli_registry_promote_rollback_and_evaluate(ran, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mlsd_ray.cli import app

    card, workdir, _ = ran
    # One more version (the champion's package again), so there is something to promote.
    _, champion_dir = registry.fetch_model(card, workdir, "champion")
    registry.log_and_register(card, workdir, "copy", champion_dir, {}, {})
    common = [str(CARD), "--workdir", str(workdir.root)]
    for o in fast_overrides():
        common += ["--set", o]
    runner = CliRunner()
    listed = runner.invoke(app, ["registry", *common])
    assert listed.exit_code == 0, listed.output
    versions = json.loads(listed.output[listed.output.index("[") :])
    assert [v["version"] for v in versions] == [str(i + 1) for i in range(len(versions))]
    champion = next(v for v in versions if "champion" in v["aliases"])
    # Promote the newest version by hand, then roll back to the earlier champion.
    newest = versions[-1]["version"]
    assert runner.invoke(app, ["promote", *common, "--version", newest]).exit_code == 0
    assert registry.get_alias(card, workdir, "champion").version == newest
    back = runner.invoke(app, ["rollback", *common])
    assert back.exit_code == 0, back.output
    assert registry.get_alias(card, workdir, "champion").version == champion["version"]

    test = read_split(card, workdir, "test")
    data = tmp_path / "holdout.csv"
    pd.DataFrame(
        {"text": test["text"], "label": np.where(test["label"] == 1, "harmful", "ok")}
    ).to_csv(data, index=False)
    out = tmp_path / "metrics.json"
    done = runner.invoke(app, ["evaluate", *common, "--data", str(data), "--out", str(out)])
    assert done.exit_code == 0, done.output
    metrics = json.loads(out.read_text())
    assert metrics["model_version"] == champion["version"]
    assert metrics["rows_ok"] == len(test)


def test_html_report_renders_in_chromium(ran, tmp_path: Path) -> None:
    """reports/index.html: every section, every image embedded, nothing from the network;
    headless Chromium (Debian's `chromium`, installed by .ci/run) renders it to a screenshot."""
    import base64
    import io
    import re
    import shutil
    import subprocess

    from PIL import Image

    from mlsd_ray.report_html import SECTIONS

    _card, workdir, result = ran
    page = Path(result["html_report"])
    assert page == workdir.reports / "index.html"
    text = page.read_text()
    for key, title in SECTIONS:
        body = re.search(rf'<section id="{key}"><h2>{title}</h2>(.*?)</section>', text, re.S)
        assert body is not None, key
        assert 'class="none"' not in body.group(1), key  # every stage ran, so none is empty
    assert not re.search(r'(src|href)="(https?:)?//', text) and "url(http" not in text
    sources = re.findall(r'<img [^>]*src="([^"]+)"', text)
    pngs = [
        p for f in ("data", "evaluation", "monitor") for p in (workdir.reports / f).glob("*.png")
    ]
    referenced = [
        p
        for p in pngs
        if p.name
        in "".join(
            (workdir.reports / f / n).read_text()
            for f, n in (
                ("data", "data_report.md"),
                ("evaluation", "report.md"),
                ("monitor", "drift_report.md"),
            )
        )
    ]
    assert len(sources) >= len(referenced) + 1  # + the minilm loss curve
    for src in sources:
        assert src.startswith("data:image/png;base64,"), src[:60]
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    assert "training loss" not in text or "training curve minilm" in text

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    shot = tmp_path / "report.png"
    flags = [
        chromium,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
        # no network at all: a page that needed it would show holes
        "--host-resolver-rules=MAP * ~NOTFOUND",
    ]
    url = page.as_uri()
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for key, _ in SECTIONS:
        assert f'id="{key}"' in dom.stdout, key
    assert dom.stdout.count("<img ") == len(sources)
    done = subprocess.run(
        [*flags, "--window-size=1280,4000", f"--screenshot={shot}", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 4000)
    colours = image.resize((160, 500)).getcolors(maxcolors=100_000) or []
    assert len(colours) > 50  # plots and tables, not a blank or error page
