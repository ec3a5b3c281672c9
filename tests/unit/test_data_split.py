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
