"""Content hash: independent of row and block order, sensitive to values, splits and types."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from mlsd_ray.data import manifest as mf

SCHEMA = pa.schema(
    [("text", pa.string()), ("x", pa.float64()), ("label", pa.int64()), ("_source", pa.string())]
)


def table(text: list, x: list, label: list) -> pa.Table:
    n = len(text)
    return pa.table({"text": text, "x": x, "label": label, "_source": ["f"] * n}, schema=SCHEMA)


def digest(blocks: list[pa.Table], splits: list[list[str]], schema: pa.Schema = SCHEMA) -> str:
    counts = {"train": 0, "test": 0}
    sums = {"train": [0, 0], "test": [0, 0]}
    for block, assigned in zip(blocks, splits, strict=True):
        cols = mf.data_columns(block.schema)
        hashes = mf.column_hashes(block, cols)
        h = [mf.combine([hashes[c] for c in cols], i, block.num_rows) for i in (0, 1)]
        for s in counts:
            mine = np.array(assigned) == s
            counts[s] += int(mine.sum())
            for i in (0, 1):
                sums[s][i] = (sums[s][i] + int(np.sum(h[i][mine], dtype=np.uint64))) % 2**64
    return mf.content_hash(schema, counts, {s: (a, b) for s, (a, b) in sums.items()})


def test_order_and_blocks_do_not_matter_values_do() -> None:
    whole = table(["a", "b", None, "d"], [1.0, 2.5, None, 4.0], [0, 1, 0, 1])
    assigned = ["train", "train", "test", "test"]
    reference = digest([whole], [assigned])
    assert len(reference) == 64 and mf.version_of(reference) == reference[:12]
    shuffled = whole.take([3, 1, 0, 2])
    parts = [shuffled.slice(0, 1), shuffled.slice(1)]
    assert digest(parts, [["test"], ["train", "train", "test"]]) == reference
    # lineage is not content: a moved source file keeps the version
    moved = whole.set_column(3, "_source", pa.array(["elsewhere"] * 4))
    assert digest([moved], [assigned]) == reference
    changed = table(["a", "b", None, "d"], [1.0, 2.5, None, 4.5], [0, 1, 0, 1])
    assert digest([changed], [assigned]) != reference
    assert digest([whole], [["train", "test", "test", "test"]]) != reference
    null_vs_text = table(["a", "b", "\x00null", "d"], [1.0, 2.5, None, 4.0], [0, 1, 0, 1])
    assert digest([null_vs_text], [assigned]) != reference
    wider = SCHEMA.set(1, pa.field("x", pa.float32()))
    assert digest([whole], [assigned], wider) != reference


def test_duplicate_rows_count_twice() -> None:
    one = table(["a"], [1.0], [0])
    two = table(["a", "a"], [1.0, 1.0], [0, 0])
    assert digest([one], [["train"]]) != digest([two], [["train", "train"]])


def test_code_version_names_the_sources() -> None:
    version = mf.code_version()
    assert len(version["data_code_sha256"]) == 64 and version["package"]


def test_text_hashes_by_dictionary_equal_hashing_every_row() -> None:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    from mlsd_ray.data.manifest import _KEYS, _text_hashes

    column = pa.chunked_array([["a", None, "b", "a"], ["", "ü", None], []])
    every = np.asarray(pc.fill_null(column, "").to_numpy(zero_copy_only=False), dtype=object)
    want = pd.util.hash_array(every, hash_key=_KEYS[0], categorize=False)
    assert (_text_hashes(column) == want).all()
    assert len(_text_hashes(pa.chunked_array([], pa.string()))) == 0
