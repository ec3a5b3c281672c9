"""Seeded synthetic data sets that the project writes itself (``synthetic://`` sources).

Why: the harmful-content card must run anywhere, with no download and no third-party text. The
posts below are written for this project from small templates. They are deliberately noisy so
that a model has to learn something and cannot score a perfect 1.0:

* benign posts use strong but non-abusive words ("this traffic is killing me", "I hate Mondays")
  and sometimes report abuse aimed at someone else ("someone called me a clown today");
* subtle harmful posts carry no insult keyword ("nobody would notice if you disappeared");
* surface noise on both classes: typos, casing, stretched letters, emojis, hashtags, @mentions,
  ``example.com`` links, line breaks and varied lengths;
* about 3 % of labels are flipped, as in any hand-labelled set.

A TF-IDF + logistic regression model reaches roughly 0.85-0.95 ROC-AUC on it. The content stays
mild (generic insults, harassment and threats; no slurs).
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pandas as pd

from mlsd_ray.errors import CardError

log = logging.getLogger(__name__)

HARMFUL_SHARE = 0.18  # about 0.20 labelled harmful once label noise is added
LABEL_NOISE = 0.03


def _split(values: str) -> list[str]:
    return values.split("|")


# Slot fillers ----------------------------------------------------------------------------
_SLOTS: dict[str, list[str]] = {
    "thing": _split(
        "traffic|monday|the weather|my commute|the wifi|the printer|homework|"
        "the new update|my alarm|the queue|laundry|the bus|my laptop|taxes|"
        "group projects|the final exam|the heat|my phone battery|spam calls"
    ),
    "food": _split(
        "pizza|ramen|tacos|pancakes|curry|banana bread|sushi|lasagna|iced coffee|"
        "dumplings|soup|a burrito"
    ),
    "team": _split(
        "the Hawks|the Rovers|our team|the Comets|the home side|the Tigers|the visitors|the Falcons"
    ),
    "show": _split(
        "the finale|that new series|the documentary|the cooking show|the game|"
        "the concert|the match|the season opener|the new album"
    ),
    "activity": _split(
        "a 5k run|my shift|the gym|a long hike|painting the fence|band practice|"
        "studying for finals|a coding sprint|cleaning the garage|a yoga class"
    ),
    "place": _split("school|work|the office|the gym|practice|the club|class|the forum"),
    "topic": _split(
        "the new stadium|remote work|pineapple on pizza|the bike lanes|the budget|"
        "the election debate|the transfer rumours|the new phone|climate policy"
    ),
    "insult": _split(
        "idiot|loser|clown|moron|joke|creep|fool|waste of space|nobody|failure|troll|coward"
    ),
    "adj": _split(
        "pathetic|worthless|useless|stupid|disgusting|miserable|brainless|spineless|ugly|sad"
    ),
    "good": _split("amazing|so good|great|lovely|fantastic|wild|unreal|brilliant"),
    "feeling": _split(
        "so tired|feeling great|exhausted but happy|pretty proud|ready for bed|"
        "starving now|in a good mood"
    ),
    "thing_of_yours": _split("address|photos|old posts|messages|number|face|schedule"),
}

# Templates by kind -----------------------------------------------------------------------
_OK_EVERYDAY = [
    "just finished {activity}, {feeling}",
    "anyone else watching {show} tonight?",
    "{team} played {good} today",
    "made {food} for dinner and it was {good}",
    "can't wait for the weekend, {feeling}",
    "does anyone know a good place for {food} near {place}?",
    "new personal best at {activity} today",
    "thanks everyone for the kind messages yesterday",
    "reading about {topic}, interesting stuff",
    "happy birthday to my best friend, love you",
    "{show} was {good}, highly recommend",
    "back at {place} after a week off",
    "what do you all think about {topic}?",
    "finally fixed {thing}, small wins",
    "the sunset tonight was {good}",
    "who is coming to {place} tomorrow?",
]
_OK_STRONG = [
    "I hate {thing} so much",
    "{thing} is killing me today",
    "this {thing} is so stupid lol",
    "{team} absolutely destroyed the Rovers last night",
    "{show} was insane, I'm dead",
    "ugh {thing} again, kill me now",
    "I'm such an idiot, left my keys at {place} again",
    "damn {food} is the best thing ever",
    "{thing} is the worst, I swear",
    "we crushed {activity}, nobody can stop us",
    "my brain is useless before coffee",
    "that was a killer workout at {place}",
    "I could scream, {thing} broke again",
]
_OK_ADDRESSED = [
    "I disagree about {topic}, but fair point",
    "you should try {food}, you would love it",
    "you are wrong about {topic} but I respect it",
    "you played {good} today, proud of you",
    "nobody asked, but {food} is better cold",
    "you made my day, thank you",
    "get well soon, everyone at {place} misses you",
    "you better bring snacks to {place} tomorrow",
    "see you at {place}, don't be late",
]
_OK_REPORTING = [
    "someone called me a {insult} today, not cool",
    "reported an account for calling people {insult}s",
    "be kind online, nobody deserves to be called a {insult}",
    "my little brother called me a {insult} for losing at {activity}",
    "blocked a troll who kept posting rude stuff, feeling better",
    "the villain in {show} is such a {insult}, great acting though",
]
_HARMFUL_INSULT = [
    "you are such a {adj} {insult}",
    "shut up you {adj} {insult}",
    "what a {adj} {insult} you are",
    "nobody cares what a {insult} like you thinks",
    "you're a {insult} and everyone knows it",
    "imagine being this {adj}, {insult}",
    "go cry somewhere else, {insult}",
    "you look {adj}, delete your account",
]
_HARMFUL_HARASS = [
    "I'll keep posting your {thing_of_yours} until you quit",
    "everyone at {place} laughs at you behind your back",
    "nobody likes you at {place}, just leave",
    "I'm going to message you every single day until you leave",
    "we all know about you, everyone at {place} will know soon",
    "log off forever, you don't belong here",
]
_HARMFUL_THREAT = [
    "you better watch your back",
    "I know where you live",
    "keep talking and see what happens to you",
    "you'll regret this, I promise",
    "wait until I find you after {place}",
    "I know your {thing_of_yours}, be careful",
]
_HARMFUL_SUBTLE = [
    "people like you should stay offline",
    "do us all a favor and disappear",
    "nobody would notice if you were gone",
    "the world would be better without your posts",
    "you should be ashamed to even show your face",
    "crawl back under whatever rock you came from",
    "maybe it's time you stopped existing online",
    "no wonder nobody sits with you at {place}",
]

_OK_KINDS = [(_OK_EVERYDAY, 0.5), (_OK_STRONG, 0.25), (_OK_ADDRESSED, 0.15), (_OK_REPORTING, 0.1)]
_HARMFUL_KINDS = [
    (_HARMFUL_INSULT, 0.4),
    (_HARMFUL_HARASS, 0.2),
    (_HARMFUL_THREAT, 0.15),
    (_HARMFUL_SUBTLE, 0.25),
]

_FILLERS = _split("lol|idk|anyway|just saying|honestly|smh|ok|tbh|for real")
_EMOJIS = _split("😂|🙄|😡|🔥|❤️|👍|😭|🤡|💀|✨")
_HASHTAGS = _split("#monday|#gaming|#food|#sports|#mood|#fail|#win|#life")
_SYLLABLES = _split("ka|zu|mi|ro|tel|fin|dax|lo|ver|sam|bee|jo")


def _fill(template: str, rng: random.Random) -> str:
    out = template
    for slot, values in _SLOTS.items():
        while "{" + slot + "}" in out:
            out = out.replace("{" + slot + "}", rng.choice(values), 1)
    return out


def _pick(kinds: list[tuple[list[str], float]], rng: random.Random) -> str:
    templates = rng.choices([k for k, _ in kinds], weights=[w for _, w in kinds])[0]
    return _fill(rng.choice(templates), rng)


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 4:
        return word
    i = rng.randrange(len(word) - 1)
    kind = rng.random()
    if kind < 0.4:  # swap neighbours
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind < 0.7:  # drop a letter
        return word[:i] + word[i + 1 :]
    return word[: i + 1] + word[i] * rng.randint(2, 4) + word[i + 1 :]  # stretch "soooo"


def _mention(rng: random.Random) -> str:
    name = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3)))
    return "@" + name + (str(rng.randint(1, 99)) if rng.random() < 0.4 else "")


def _noisy(text: str, harmful: bool, rng: random.Random) -> str:
    words = [_typo(w, rng) if rng.random() < 0.04 else w for w in text.split(" ")]
    text = " ".join(words)
    if rng.random() < 0.3:
        text = f"{text}, {rng.choice(_FILLERS)}"
    if rng.random() < 0.15:  # a second sentence makes lengths vary
        extra = _pick(_OK_KINDS if rng.random() < 0.7 else _HARMFUL_KINDS, rng)
        text = text + rng.choice([". ", "... ", "\n"]) + extra
    if rng.random() < (0.5 if harmful else 0.3):
        text = f"{_mention(rng)} {text}"
    if rng.random() < 0.2:
        text = f"{text} {rng.choice(_HASHTAGS)}"
    if rng.random() < (0.1 if harmful else 0.15):
        text = f"{text} https://example.com/{rng.randrange(16**6):06x}"
    if rng.random() < 0.3:
        text = f"{text} {rng.choice(_EMOJIS) * rng.randint(1, 3)}"
    if rng.random() < 0.15:
        text += "!" * rng.randint(1, 4)
    casing = rng.random()
    if casing < 0.08:
        text = text.upper()
    elif casing < 0.4:
        text = text.lower()
    elif casing < 0.7:
        text = text[:1].upper() + text[1:]
    return text


def generate_harmful_content(
    rows: int, seed: int, *, label_noise: float = LABEL_NOISE
) -> pd.DataFrame:
    """``rows`` posts with columns ``text`` and ``label`` ("harmful" or "ok"), the same for the
    same seed on every machine (one ``random.Random(seed)`` drives every choice).

    ``label_noise`` is the share of flipped labels; changing it changes no text.
    """
    if rows < 1:
        raise CardError(f"synthetic://harmful_content: rows must be at least 1; got {rows}.")
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(rows):
        harmful = rng.random() < HARMFUL_SHARE
        text = _noisy(_pick(_HARMFUL_KINDS if harmful else _OK_KINDS, rng), harmful, rng)
        if rng.random() < label_noise:
            harmful = not harmful
        texts.append(text)
        labels.append("harmful" if harmful else "ok")
    return pd.DataFrame({"text": texts, "label": labels})


def generate_digits(rows: int, seed: int) -> pd.DataFrame:
    """scikit-learn's real handwritten digits (``load_digits``: 1,797 8x8 grey images, 10
    classes, shipped inside scikit-learn, nothing downloaded) as base64 PNG text in ``image``
    and the digit in ``label``; ``rows`` (at most 1,797) picked in a seeded order."""
    from sklearn.datasets import load_digits

    from mlsd_ray.images import encode_png

    digits = load_digits()
    n = len(digits.target)
    if not 1 <= rows <= n:
        raise CardError(f"synthetic://digits: rows must be between 1 and {n}; got {rows}.")
    order = np.random.default_rng(seed).permutation(n)[:rows]
    pixels = np.rint(digits.images[order] * (255 / 16)).astype(np.uint8)  # 0..16 -> 0..255
    return pd.DataFrame(
        {"image": [encode_png(p) for p in pixels], "label": digits.target[order].astype(str)}
    )


GENERATORS: dict[str, Callable[[int, int], pd.DataFrame]] = {
    "harmful_content": generate_harmful_content,
    "digits": generate_digits,
}


def parse_uri(uri: str) -> tuple[str, int, int]:
    """``synthetic://NAME?rows=N&seed=S`` -> (NAME, N, S); rows defaults to 1000, seed to 0."""
    parts = urlsplit(uri)
    if parts.scheme != "synthetic" or not parts.netloc:
        raise CardError(
            f"{uri!r} is not a synthetic data set URI.",
            fix="write e.g. synthetic://harmful_content?rows=3000&seed=7",
        )
    name = parts.netloc
    if name not in GENERATORS:
        raise CardError(
            f"Unknown synthetic data set {name!r} in {uri!r}.",
            fix=f"use one of {sorted(GENERATORS)}",
        )
    params = dict(parse_qsl(parts.query))
    unknown = sorted(set(params) - {"rows", "seed"})
    if unknown:
        raise CardError(f"{uri!r}: unknown parameters {unknown}.", fix="only rows and seed exist")
    try:
        return name, int(params.get("rows", 1000)), int(params.get("seed", 0))
    except ValueError:
        raise CardError(f"{uri!r}: rows and seed must be integers.") from None


def materialize(uri: str, dest_dir: str) -> str:
    """Write the data set named by ``uri`` as CSV into ``dest_dir`` and return its path.

    The file name carries the name, rows and seed, so a rerun rewrites the same file.
    """
    name, rows, seed = parse_uri(uri)
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{name}_rows{rows}_seed{seed}.csv"
    frame = GENERATORS[name](rows, seed)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(path)  # atomic: a concurrent reader never sees half a file
    log.info("materialized %s: %d rows -> %s", uri, len(frame), path)
    return str(path)
