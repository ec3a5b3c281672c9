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
    assert d.rollout.mode == "none" and d.ensemble.graph is False
    assert d.request_timeout_s > 0 and d.max_queued_requests >= 1


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("deployment.rollout.canary_weight=1.5", "deployment.rollout.canary_weight"),
        ("deployment.rollout.mode=blue_green", "deployment.rollout.mode"),
        ("deployment.ensemble.graph=maybe", "deployment.ensemble.graph"),
        ("deployment.max_queued_requests=0", "deployment.max_queued_requests"),
        ("deployment.request_timeout_s=0", "deployment.request_timeout_s"),
    ],
)
def test_bad_serving_fields_name_the_key(override, key):
    with pytest.raises(CardError, match=key.replace(".", r"\.")):
        load_card(CARD, overrides=[override])


@pytest.mark.parametrize(
    "override",
    [
        "deployment.ensemble.members=[a, b]",
        "deployment.ensemble.combiner=stacked",
        "deployment.ensemble.weights=[1, 2]",
        "deployment.ensemble.stacker_path=models/stacker.json",
    ],
)
def test_old_ensemble_keys_are_refused_with_the_way_through_the_registry(override):
    key = override.partition("=")[0]
    with pytest.raises(CardError) as err:
        load_card(CARD, overrides=[override])
    message = str(err.value)
    assert f"{key}: no longer a key; ensembles are registered models" in message
    assert "`{kind: blend, params: {members: [...], method: stacking}}`" in message
    assert "models.candidates" in message and "deployment.ensemble.graph: true" in message
    assert "unknown key" not in message and "expected" not in message


def test_graph_is_accepted_for_binary_cards_only():
    assert load_card(CARD, overrides=["deployment.ensemble.graph=true"]).deployment.ensemble.graph
    with pytest.raises(CardError, match=r"deployment\.ensemble\.graph: a blend combines binary"):
        load_card(
            REPO / "systems" / "watch_time.yaml",
            overrides=["deployment.ensemble.graph=true"],
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
