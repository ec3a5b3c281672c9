"""The design card: the shipped cards load, and each kind of mistake names its key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlsd_ray.errors import CardError
from mlsd_ray.spec import DesignCard, apply_overrides, card_from_dict, load_card

REPO = Path(__file__).resolve().parents[2]
CARDS = sorted((REPO / "systems").glob("*.yaml"))


def raw_card() -> dict:
    return yaml.safe_load((REPO / "systems" / "harmful_content.yaml").read_text())


@pytest.mark.parametrize("path", CARDS, ids=lambda p: p.stem)
def test_shipped_cards_load(path: Path) -> None:
    card = load_card(path)
    assert isinstance(card, DesignCard)
    assert card.name == path.stem
    assert card.deployment.host == "127.0.0.1"


def test_defaults_fill_what_the_card_omits() -> None:
    card = load_card(REPO / "systems" / "harmful_content.yaml")
    assert card.framing.text_input == "text"
    assert card.monitoring.bins == 10
    # Batches can only fill when a replica may hold at least a batch of requests.
    assert card.deployment.effective_max_ongoing_requests >= card.deployment.batching.max_batch_size


def test_relative_source_resolves_against_the_card_folder(tmp_path: Path) -> None:
    raw = raw_card()
    raw["data"]["sources"][0]["uri"] = "data/posts.csv"
    (tmp_path / "card.yaml").write_text(yaml.safe_dump(raw))
    card = load_card(tmp_path / "card.yaml")
    assert card.data.sources[0].uri == str((tmp_path / "data" / "posts.csv").resolve())


def test_relative_override_resolves_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / "card.yaml").write_text(yaml.safe_dump(raw_card()))
    monkeypatch.chdir(tmp_path)
    card = load_card("cards/card.yaml", ["data.sources.0.uri=data/posts.csv"])
    assert card.data.sources[0].uri == str(tmp_path / "data" / "posts.csv")


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda r: r["framing"].update(category="clustering"),
            "framing.category: got 'clustering'",
        ),
        (
            lambda r: r["requirements"].pop("business_objective"),
            "requirements.business_objective: required",
        ),
        (lambda r: r["deployment"].update(prot=8000), "deployment.prot: unknown key"),
        (lambda r: r["data"]["split"].update(train=0.9), "data.split"),
        (
            lambda r: r["requirements"].update(latency_p99_ms=-5),
            "requirements.latency_p99_ms: got -5",
        ),
        (
            lambda r: r["deployment"]["autoscaling"].update(min_replicas=3),
            "min_replicas (3) exceeds",
        ),
        (
            lambda r: r["models"]["candidates"][0].update(kind="svm"),
            "models.candidates.0.kind: got 'svm'",
        ),
        (lambda r: r["framing"]["label"].update(mapping={"x": 5}), "class indices"),
        (lambda r: r["data"].update(sources=[]), "data.sources: got []"),
    ],
)
def test_mistakes_name_the_key(mutate, expected: str) -> None:
    raw = raw_card()
    mutate(raw)
    with pytest.raises(CardError) as err:
        card_from_dict(raw, where="'test'")
    assert expected in str(err.value)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(CardError, match="does not exist"):
        load_card(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(CardError, match="not valid YAML"):
        load_card(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(CardError, match="top level must be a mapping"):
        load_card(tmp_path / "list.yaml")


def test_overrides_set_nested_keys_with_yaml_types() -> None:
    raw = apply_overrides(
        raw_card(),
        [
            "data.sources.0.uri=s3://bucket/posts.csv",
            "deployment.port=8123",
            "models.candidates.0.trainer.pretrained=tiny",
            "framing.label.mapping={a: 1, b: 0}",
        ],
    )
    card = card_from_dict(raw)
    assert card.data.sources[0].uri == "s3://bucket/posts.csv"
    assert card.deployment.port == 8123
    assert card.models.candidates[0].trainer.pretrained == "tiny"
    assert card.framing.label.mapping == {"a": 1, "b": 0}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("deployment.port", "not KEY=VALUE"),
        ("data.sources.5.uri=x", "not an index"),
        ("name.sub=1", "is a value, not a section"),
        ("=3", "empty key"),
    ],
)
def test_bad_overrides_are_explained(override: str, message: str) -> None:
    with pytest.raises(CardError, match=message):
        card_from_dict(raw_card(), overrides=[override])


def test_override_with_wrong_type_names_the_key() -> None:
    with pytest.raises(CardError, match=r"deployment\.port: got 'eighty'"):
        card_from_dict(raw_card(), overrides=["deployment.port=eighty"])


def test_source_format_inferred_or_explained() -> None:
    raw = raw_card()
    raw["data"]["sources"][0]["uri"] = "/data/posts.xlsx"
    card = card_from_dict(raw)
    with pytest.raises(CardError, match="cannot infer the format"):
        _ = card.data.sources[0].resolved_format
    raw["data"]["sources"][0]["uri"] = "s3://b/part.jsonl"
    assert card_from_dict(raw).data.sources[0].resolved_format == "json"


def test_behaviour_suite_and_ensemble_are_checked_when_the_card_loads(tmp_path: Path) -> None:
    """A broken behaviour suite or an impossible ensemble fails at load, not in a stage."""
    raw = raw_card()
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        yaml.safe_dump({"tests": [{"name": "t", "type": "invariance", "texts": ["x"]}]})
    )
    raw.setdefault("evaluation", {})["behaviour"] = str(suite)
    with pytest.raises(CardError, match="invariance needs `perturb`"):
        card_from_dict(raw, base_dir=tmp_path)
    raw["evaluation"].pop("behaviour")
    # An ensemble is a registered blend: the old graph-of-packages keys are refused.
    raw["deployment"]["ensemble"] = {"members": ["a", "b"], "combiner": "stacked"}
    with pytest.raises(CardError) as err:
        card_from_dict(raw, base_dir=tmp_path)
    for key in ("members", "combiner"):
        assert f"deployment.ensemble.{key}: no longer a key; ensembles are registered" in str(
            err.value
        )
    assert "{kind: blend, params: {members: [...], method: stacking}}" in str(err.value)
    raw["deployment"]["ensemble"] = {"graph": True}
    assert card_from_dict(raw, base_dir=tmp_path).deployment.ensemble.graph is True
