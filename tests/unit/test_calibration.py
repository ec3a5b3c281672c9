"""Probability calibration: Platt and isotonic maps (scikit-learn), chosen by out-of-fold log loss,
stored as JSON in the package and applied by the Predictor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.isotonic import IsotonicRegression

from mlsd_ray.errors import ModelError
from mlsd_ray.metrics import expected_calibration_error as ece
from mlsd_ray.models.calibration import FILE, Calibrator
from mlsd_ray.models.package import InputSchema, ModelManifest, save_package
from mlsd_ray.models.simple import TabularLogReg
from mlsd_ray.predict import Predictor
from mlsd_ray.train.calibrate import choose


def overconfident(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scores whose true probability is p**3: far too high, but well ranked."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.01, 0.99, n)
    y = (rng.uniform(size=n) < p**3).astype(np.int64)
    return p, y


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_a_map_fixes_overconfident_scores_and_round_trips(method: str, tmp_path: Path) -> None:
    p, y = overconfident()
    cal = Calibrator.fit(method, p, y)
    fresh, y_fresh = overconfident(seed=1)
    before, after = ece(y_fresh, fresh), ece(y_fresh, cal.apply(fresh))
    assert before > 0.15 and after < 0.04, (before, after)
    assert np.all(np.diff(cal.apply(np.linspace(0, 1, 50))) >= -1e-12)  # monotone
    cal.save(tmp_path)
    assert "pickle" not in (tmp_path / FILE).read_text()
    again = Calibrator.load(tmp_path)
    assert again is not None
    np.testing.assert_allclose(again.apply(fresh), cal.apply(fresh))


def test_isotonic_state_is_what_scikit_learn_predicts() -> None:
    p, y = overconfident(500)
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(p, y)
    grid = np.linspace(-0.2, 1.2, 101)
    np.testing.assert_allclose(Calibrator.fit("isotonic", p, y).apply(grid), iso.predict(grid))


def test_auto_picks_by_out_of_fold_log_loss() -> None:
    p, y = overconfident()
    cal, report = choose("auto", p, y)
    assert cal is not None and report["chosen"] == cal.method
    losses = {m: s["log_loss"] for m, s in report["out_of_fold"].items()}
    assert set(losses) == {"none", "platt", "isotonic"}
    assert losses[cal.method] == min(losses.values()) < losses["none"]
    assert report["ece_after"] < report["ece_before"]
    # Already calibrated scores: no map beats none by much; whatever is chosen is recorded.
    rng = np.random.default_rng(3)
    q = rng.uniform(size=3000)
    _, report = choose("auto", q, (rng.uniform(size=3000) < q).astype(np.int64))
    assert report["ece_before"] < 0.05
    assert choose("none", p, y) == (None, {})
    with pytest.raises(ModelError, match="sigmoid"):
        choose("sigmoid", p, y)


def test_predictor_applies_the_package_calibration(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.normal(size=600)})
    y = (X["x"] + rng.normal(size=600) > 0).astype(np.int64).to_numpy()
    model = TabularLogReg(["x"], numeric=["x"], categorical=[]).fit(X, y)
    manifest = ModelManifest(
        name="m",
        kind="logreg",
        category="binary",
        inputs=[InputSchema(name="x", type="float")],
        classes=["n", "p"],
        params={"numeric": ["x"], "categorical": []},
    )
    folder = save_package(model, tmp_path / "pkg", manifest)
    raw = Predictor(folder).predict_frame(X)
    cal = Calibrator("platt", {"slope": 0.5, "intercept": -1.0})
    cal.save(folder)
    predictor = Predictor(folder)
    np.testing.assert_allclose(predictor.predict_frame(X), cal.apply(raw))
    assert predictor.predict([{"x": 0.3}])[0] == pytest.approx(
        float(cal.apply(model.predict_proba(pd.DataFrame({"x": [0.3]}))[:, 1])[0])
    )
    (folder / FILE).write_text(json.dumps({"method": "beta", "state": {}}))
    with pytest.raises(ModelError, match="beta"):
        Predictor(folder)
