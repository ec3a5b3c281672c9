"""Stratified, seeded split: exact per-class counts, independent of row order."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from mlsd_ray.data.etl import plan_split, row_hash, split_counts, take_split
from mlsd_ray.spec import Split


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 10, 99, 1000, 1001])
def test_split_counts_sum_and_round_fairly(n: int) -> None:
    split = Split(train=0.7, validation=0.15, test=0.15)
    counts = split_counts(n, split)
    assert sum(counts) == n
    for count, share in zip(counts, (0.7, 0.15, 0.15), strict=True):
        assert abs(count - n * share) < 1


def test_split_counts_known_values() -> None:
    assert split_counts(10, Split()) == (8, 1, 1)
    assert split_counts(596, Split()) == (477, 60, 59)
    assert split_counts(5, Split(train=0.6, validation=0.0, test=0.4)) == (3, 0, 2)


def rows(n_per_class: dict[int, int]) -> tuple[np.ndarray, list[str], list[int]]:
    labels = np.concatenate([np.full(n, k) for k, n in n_per_class.items()])
    sources = ["s3://b/a.csv"] * len(labels)
    return labels, sources, list(range(1, len(labels) + 1))


def test_stratified_counts_are_exact_per_class() -> None:
    split = Split(train=0.8, validation=0.1, test=0.1, seed=3)
    labels, sources, numbers = rows({0: 1703, 1: 297})
    hashes = row_hash(sources, numbers, split.seed)
    assigned = plan_split(labels, hashes, split, stratified=True).assign(labels, hashes)
    for label, n in ((0, 1703), (1, 297)):
        got = tuple(
            int(((labels == label) & (assigned == s)).sum())
            for s in ("train", "validation", "test")
        )
        assert got == split_counts(n, split)


def test_unstratified_counts_are_exact_overall() -> None:
    split = Split(train=0.8, validation=0.1, test=0.1)
    labels, sources, numbers = rows({0: 95, 1: 5})
    hashes = row_hash(sources, numbers, 0)
    assigned = plan_split(labels, hashes, split, stratified=False).assign(labels, hashes)
    assert [(assigned == s).sum() for s in ("train", "validation", "test")] == [80, 10, 10]


def test_assignment_is_seeded_and_order_free() -> None:
    split = Split(seed=5)
    labels, sources, numbers = rows({0: 400, 1: 100})
    hashes = row_hash(sources, numbers, 5)
    plan = plan_split(labels, hashes, split, stratified=True)
    order = np.random.default_rng(0).permutation(len(labels))
    shuffled = plan.assign(
        labels[order], row_hash([sources[i] for i in order], [numbers[i] for i in order], 5)
    )
    assert (shuffled == plan.assign(labels, hashes)[order]).all()
    other = row_hash(sources, numbers, 6)
    assert not (
        plan_split(labels, other, Split(seed=6), True).assign(labels, other)
        == plan.assign(labels, hashes)
    ).all()


def test_take_split_filters_a_block() -> None:
    split = Split()
    labels, sources, numbers = rows({0: 50, 1: 50})
    hashes = row_hash(sources, numbers, 0)
    plan = plan_split(labels, hashes, split, stratified=True)
    block = pa.table({"label": labels, "_source": sources, "_row": numbers})
    parts = {s: take_split(block, plan, s) for s in ("train", "validation", "test")}
    assert [p.num_rows for p in parts.values()] == [80, 10, 10]
    seen = sorted(r for p in parts.values() for r in p.column("_row").to_pylist())
    assert seen == numbers


# Time, group, leakage, balance -------------------------------------------------------------
def block_with(n: int, **columns) -> pa.Table:
    return pa.table(
        {
            "label": np.arange(n) % 2,
            "_source": ["s3://b/a.csv"] * n,
            "_row": list(range(1, n + 1)),
            **columns,
        }
    )


def test_time_split_trains_on_the_past_and_tests_on_the_future() -> None:
    from mlsd_ray.data.split import SPLITS, SplitPlan

    n = 1000
    rng = np.random.default_rng(0)
    seconds = rng.integers(0, 5_000, n)  # many equal times: ties must not break the rule
    stamps = pa.array(seconds * 1_000_000, pa.timestamp("us", tz="UTC"))
    block = block_with(n, ts=stamps)
    split = Split(train=0.7, validation=0.15, test=0.15)
    proto = SplitPlan(0, False, {}, "time", "ts")
    primary, secondary = proto.keys(block)
    labels = block["label"].to_numpy()
    plan = plan_split(labels, primary, split, False, secondary, "time", "ts")
    parts = {s: take_split(block, plan, s) for s in SPLITS}
    assert [parts[s].num_rows for s in SPLITS] == list(split_counts(n, split))  # exact, ties too
    times = {s: parts[s]["ts"].cast(pa.int64()).to_numpy() for s in SPLITS}
    assert times["train"].max() <= times["validation"].min()
    assert times["validation"].max() <= times["test"].min()
    # the same plan places rows alone, whatever block they arrive in
    halves = [
        take_split(block.slice(0, 400), plan, "test"),
        take_split(block.slice(400), plan, "test"),
    ]
    assert sum(h.num_rows for h in halves) == parts["test"].num_rows


def test_group_split_keeps_every_user_in_one_split() -> None:
    from mlsd_ray.data.split import SPLITS, SplitPlan

    n = 3000
    rng = np.random.default_rng(1)
    users = [f"user-{u}" for u in rng.zipf(1.6, n) % 400]  # skewed group sizes
    block = block_with(n, user=users)
    split = Split(train=0.8, validation=0.1, test=0.1)
    proto = SplitPlan(3, False, {}, "group", "user")
    primary, secondary = proto.keys(block)
    plan = plan_split(block["label"].to_numpy(), primary, split, False, secondary, "group", "user")
    seen = {s: set(take_split(block, plan, s)["user"].to_pylist()) for s in SPLITS}
    assert not (seen["train"] & seen["validation"] or seen["train"] & seen["test"])
    assert not seen["validation"] & seen["test"]
    assert set().union(*seen.values()) == set(users)
    sizes = {s: take_split(block, plan, s).num_rows for s in SPLITS}
    assert sum(sizes.values()) == n
    assert 0.6 < sizes["train"] / n < 0.95  # whole groups: near the share, not exact


def test_leakage_counts_values_in_several_splits() -> None:
    import pandas as pd

    from mlsd_ray.data.split import leakage, normalise_text

    texts = ["Hello  World", "hello world", "unique a", "unique b", "dup", "dup"]
    keys = pd.DataFrame(
        {
            "_leak": pd.util.hash_array(np.array(normalise_text(texts), dtype=object)),
            "_source": ["f.csv"] * 6,
            "_row": [1, 2, 3, 4, 5, 6],
        }
    )
    assigned = np.array(["train", "test", "train", "test", "train", "train"], dtype=object)
    found = leakage(keys, assigned, "text")
    assert found["values_in_several_splits"] == 1 and found["rows"] == 2
    assert found["pairs"] == {"train/validation": 0, "train/test": 1, "validation/test": 0}
    assert found["examples"] == [["f.csv:1 (train)", "f.csv:2 (test)"]]


@pytest.mark.parametrize(("mode", "target"), [("down", 100), ("up", 900)])
def test_balance_resamples_train_to_equal_classes(mode: str, target: int) -> None:
    from mlsd_ray.data.split import class_weights, plan_balance

    labels = np.array([0] * 900 + [1] * 100)
    sources = ["f.csv"] * 1000
    rows = list(range(1, 1001))
    plan = plan_balance(mode, labels, sources, rows, seed=0)
    copies = plan.copies(labels, sources, rows)
    assert copies[labels == 0].sum() == target and copies[labels == 1].sum() == target
    assert plan.copies(labels[::-1], sources, rows[::-1]).tolist() == copies[::-1].tolist()
    assert class_weights(labels) == {0: pytest.approx(1000 / 1800), 1: 5.0}
    assert class_weights(np.repeat(labels, copies)) == {0: 1.0, 1: 1.0}


def test_row_hash_of_arrow_columns_equals_python_lists() -> None:
    import pyarrow as pa

    sources = ["s3://a/b.csv", "x", "postgresql://h/db#table=t"] * 2
    rows = [1, 2, 3, -4, 10**12, 0]
    want = row_hash(sources, rows, 3, "balance")
    chunked = (pa.chunked_array([sources[:2], sources[2:]]), pa.chunked_array([rows[:4], rows[4:]]))
    assert (row_hash(pa.array(sources), pa.array(rows), 3, "balance") == want).all()
    assert (row_hash(*chunked, 3, "balance") == want).all()
