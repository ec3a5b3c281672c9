"""Card fields of serving: rollout, ensemble, robustness limits; the `mlsd serve` group."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from mlsd_ray.errors import CardError
from mlsd_ray.serve.app import ingress_options, model_options
from mlsd_ray.spec import load_card
from tests.conftest import REPO

CARD = REPO / "systems" / "harmful_content.yaml"


def test_defaults_are_safe():
    d = load_card(CARD).deployment
    assert d.rollout.mode == "none" and d.ensemble.members == []
    assert d.request_timeout_s > 0 and d.max_queued_requests >= 1


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("deployment.rollout.canary_weight=1.5", "deployment.rollout.canary_weight"),
        ("deployment.rollout.mode=blue_green", "deployment.rollout.mode"),
        ("deployment.ensemble.combiner=vote", "deployment.ensemble.combiner"),
        ("deployment.max_queued_requests=0", "deployment.max_queued_requests"),
        ("deployment.request_timeout_s=0", "deployment.request_timeout_s"),
    ],
)
def test_bad_serving_fields_name_the_key(override, key):
    with pytest.raises(CardError, match=key.replace(".", r"\.")):
        load_card(CARD, overrides=[override])


def test_ensemble_weights_must_match_members():
    with pytest.raises(CardError, match="weights has 1 items for 2 members"):
        load_card(
            CARD,
            overrides=["deployment.ensemble.members=[a, b]", "deployment.ensemble.weights=[1]"],
        )


def test_robustness_options_reach_every_deployment():
    card = load_card(
        CARD,
        overrides=["deployment.max_queued_requests=7", "deployment.graceful_shutdown_timeout_s=3"],
    )
    m, i = model_options(card), ingress_options(card)
    assert m["max_queued_requests"] == 7 and m["graceful_shutdown_timeout_s"] == 3
    assert m["max_surge_percent"] == 100  # new replicas before old ones stop
    # The ingress queue admits at least what it may hold in flight; its 503s say Retry-After.
    assert i["max_queued_requests"] >= i["max_ongoing_requests"]
    assert i["backpressure_config"]["retry_after_s"] >= 1


def test_mlsd_serve_card_still_means_serve_run():
    from mlsd_ray.cli import app

    runner = CliRunner()
    plain = runner.invoke(app, ["serve", str(CARD), "--help"])
    assert plain.exit_code == 0 and "Serve the model behind the alias" in plain.output
    assert "tune" in runner.invoke(app, ["serve", "--help"]).output
    tune = runner.invoke(app, ["serve", "tune", "--help"])
    assert tune.exit_code == 0 and "latency_p99_ms" in tune.output
