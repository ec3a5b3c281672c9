"""A registered blend served as a graph: the combiner's config comes from the blend package
(nothing fitted at deploy time), and combining the members' own answers with it gives what the
blend's Predictor gives, probabilities and labels alike. No Ray."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlsd_ray.errors import CardError
from mlsd_ray.models.calibration import Calibrator
from mlsd_ray.predict import Predictor
from mlsd_ray.serve.ensemble import combined_answer, combiner_config
from tests.integration.serve_fixtures import blend_package, tfidf_package, toy_posts

TEXTS = ["you stupid idiot", "lovely photo thanks", "see you tonight", "shut up loser", "nice"]


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("members")
    small = tfidf_package(tmp / "small", seed=0, name="small", c=0.05)
    wide = tfidf_package(tmp / "wide", seed=1, name="wide", c=10.0)
    # One member calibrated, as the training stage leaves it: the graph's member deployment
    # applies it, as the blend's own member does.
    posts = toy_posts(seed=3, n=60)
    raw = Predictor(wide).predict_frame(posts[["text"]])
    Calibrator.fit("platt", raw, posts["label"].to_numpy()).save(wide)
    return {"small": small, "wide": wide}


@pytest.mark.parametrize("method", ["stacking", "weighted"])
def test_the_graph_answers_what_the_blend_package_answers(
    members: dict[str, Path], tmp_path: Path, method: str
) -> None:
    package = blend_package(tmp_path / "blend", members, method=method, threshold=0.3)
    config = combiner_config(package, version="7")
    assert config["members"] == ["small", "wide"]
    assert config["folders"] == ["members/00", "members/01"]
    assert config["model_version"] == "7" and config["model_name"] == "blend"

    # What each Member_<name> deployment answers: a Predictor over its folder in the package.
    frame = Predictor(package).to_frame(TEXTS)
    scores = np.column_stack(
        [Predictor(package / f).predict_frame(frame) for f in config["folders"]]
    )
    p, labels = combined_answer(config, scores)
    blend = Predictor(package)
    expected = blend.predict_frame(frame)
    np.testing.assert_allclose(p, expected, atol=1e-9)
    assert labels == blend.labels(expected)  # at the blend's stored threshold (0.3)
    assert labels == ["harmful" if x >= 0.3 else "ok" for x in expected]
    # Without a registry version, the package's own.
    assert combiner_config(package)["model_version"] == "blend-1"


def test_a_version_that_is_not_a_blend_cannot_be_served_as_a_graph(
    members: dict[str, Path],
) -> None:
    with pytest.raises(CardError) as err:
        combiner_config(members["small"], version="3")
    message = str(err.value)
    assert "deployment.ensemble.graph" in message and "'tfidf_logreg' model, not a blend" in message
    assert "kind: blend" in message and "graph: false" in message
