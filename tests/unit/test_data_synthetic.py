"""The synthetic harmful-content generator: seeded, noisy, learnable but not trivially."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from mlsd_ray.data.synthetic import generate_harmful_content, materialize, parse_uri
from mlsd_ray.errors import CardError


@pytest.fixture(scope="module")
def posts() -> pd.DataFrame:
    return generate_harmful_content(5000, seed=3)


def test_same_seed_same_rows_other_seed_other_rows() -> None:
    a, b = generate_harmful_content(500, 11), generate_harmful_content(500, 11)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(generate_harmful_content(500, 12))


def test_columns_labels_and_share(posts: pd.DataFrame) -> None:
    assert list(posts.columns) == ["text", "label"]
    assert set(posts["label"]) == {"harmful", "ok"}
    assert 0.17 <= (posts["label"] == "harmful").mean() <= 0.23
    assert posts["text"].map(lambda t: isinstance(t, str) and t.strip() != "").all()


def test_label_noise_flips_about_three_percent_and_changes_no_text() -> None:
    noisy = generate_harmful_content(5000, 3)
    clean = generate_harmful_content(5000, 3, label_noise=0.0)
    assert noisy["text"].equals(clean["text"])
    flipped = (noisy["label"] != clean["label"]).mean()
    assert 0.02 <= flipped <= 0.04


def test_surface_noise_is_present(posts: pd.DataFrame) -> None:
    text = posts["text"]
    share = {
        "mention": text.str.contains(r"@\w+").mean(),
        "hashtag": text.str.contains(r"#\w+").mean(),
        "url": text.str.contains("https://example.com/", regex=False).mean(),
        "emoji": text.map(lambda t: any(ord(c) > 0x2000 for c in t)).mean(),
        "shouting": text.map(lambda t: t.isupper()).mean(),
        "stretched": text.map(lambda t: re.search(r"([a-z])\1\1", t, re.I) is not None).mean(),
        "newline": text.str.contains("\n", regex=False).mean(),
    }
    assert all(v > 0.005 for v in share.values()), share
    lengths = text.str.len()
    assert lengths.min() < 25 and lengths.max() > 120


def test_hard_cases_both_ways(posts: pd.DataFrame) -> None:
    """Strong words in benign posts, and harmful posts without any insult word."""
    clean = generate_harmful_content(5000, 3, label_noise=0.0)
    ok, harmful = clean[clean.label == "ok"].text, clean[clean.label == "harmful"].text
    assert ok.str.contains(r"\b(?:hate|killing|stupid|idiot|destroyed)\b", case=False).mean() > 0.1
    insults = r"\b(?:idiot|loser|clown|moron|stupid|pathetic|worthless|useless)\b"
    assert (~harmful.str.contains(insults, case=False)).mean() > 0.3


def test_tfidf_scores_well_but_not_perfectly() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    frame = generate_harmful_content(3000, 7)
    y = (frame["label"] == "harmful").astype(int).to_numpy()
    train, test = slice(0, 2400), slice(2400, None)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    model = LogisticRegression(max_iter=1000)
    model.fit(vectorizer.fit_transform(frame["text"][train]), y[train])
    scores = model.predict_proba(vectorizer.transform(frame["text"][test]))[:, 1]
    assert 0.85 <= roc_auc_score(y[test], scores) <= 0.97


def test_materialize_writes_a_deterministic_csv(tmp_path: Path) -> None:
    path = materialize("synthetic://harmful_content?rows=300&seed=7", str(tmp_path))
    assert Path(path).name == "harmful_content_rows300_seed7.csv"
    again = materialize("synthetic://harmful_content?rows=300&seed=7", str(tmp_path))
    assert again == path
    back = pd.read_csv(path, keep_default_na=False)
    expected = generate_harmful_content(300, 7)
    assert back["text"].tolist() == expected["text"].tolist()
    assert back["label"].tolist() == expected["label"].tolist()


def test_uri_defaults_and_errors(tmp_path: Path) -> None:
    assert parse_uri("synthetic://harmful_content") == ("harmful_content", 1000, 0)
    with pytest.raises(CardError, match=r"spam_posts.*harmful_content"):
        materialize("synthetic://spam_posts?rows=10", str(tmp_path))
    with pytest.raises(CardError, match="unknown parameters"):
        parse_uri("synthetic://harmful_content?rowz=10")
    with pytest.raises(CardError, match="integers"):
        parse_uri("synthetic://harmful_content?rows=ten")
