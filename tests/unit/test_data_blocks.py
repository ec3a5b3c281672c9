"""The ETL's pass-1 blocks (``blocks.verify_block``): narrow in the object store, and every
reader (``take_good``, ``take_bad``, ``take_meta``, ``block_name``) gets back exactly what
verification produced."""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.compute as pc

from mlsd_ray.data import blocks as blk
from mlsd_ray.data import verify as V
from mlsd_ray.data.split import SplitPlan

from .test_data_verify import TABULAR_CARD, batch

COLUMNS = ["Age", "Visits", "Weekend", "Month", "Note", "Revenue"]


def _rows(n: int, seed: int, bad_share: float) -> pa.Table:
    """``n`` rows from two source files, about ``bad_share`` of them failing verification."""
    rng = random.Random(seed)

    def cell(good: str, bad: str) -> str:
        return bad if rng.random() < bad_share else good

    frame = batch(
        Age=[cell(str(rng.uniform(0, 90)), "abc") for _ in range(n)],
        Visits=[cell(str(rng.randint(0, 9)), "1.5") for _ in range(n)],
        Weekend=[rng.choice(["true", "false"]) for _ in range(n)],
        Month=[rng.choice(["Jan", "Feb"]) for _ in range(n)],
        Note=[rng.choice(["a, b", "", "\u00e9t\u00e9"]) for _ in range(n)],
        Revenue=[cell(rng.choice(["0", "1"]), "") for _ in range(n)],
    )
    frame["_source"] = [rng.choice(["s3://b/x.csv", "s3://b/y.csv"]) for _ in range(n)]
    return pa.Table.from_pandas(frame, preserve_index=False)


def test_narrow_blocks_give_back_what_verification_produced() -> None:
    proto = SplitPlan(0, False, {}, "random", None)
    quarantine = V.quarantine_schema(COLUMNS)
    for seed, bad_share in ((0, 0.0), (1, 0.1), (2, 0.6), (3, 1.0)):
        rows = _rows(500, seed, bad_share)
        wide = V.verify_rows(rows, TABULAR_CARD, COLUMNS)
        block = blk.verify_block(rows, TABULAR_CARD, COLUMNS, proto)
        good, bad = V.split_part(wide, "good"), V.split_part(wide, "bad").cast(quarantine)
        assert block.num_rows == wide.num_rows == 500
        assert (good.num_rows == 500) == (bad_share == 0.0)
        assert blk.take_good(block).cast(good.schema).equals(good)
        assert blk.take_bad(block, quarantine).equals(bad)  # cells, reasons, raw text, lineage
        meta = blk.take_meta(block)
        lineage = pa.concat_arrays(
            [good["_source"].combine_chunks(), bad["_source"].combine_chunks()]
        )
        assert meta["_source"].cast(pa.string()).to_pylist() == lineage.to_pylist()
        assert pc.drop_null(meta["_reason"]).to_pylist() == bad["_reason"].to_pylist()
        assert blk.block_name(block).startswith("part-")
        # the quarantine's null text cells and the repeated URIs made blocks wide (the keys
        # are added by verify_block, not by verify_rows)
        keys = sum(block[n].nbytes for n in block.column_names if n.startswith("k:"))
        if bad_share <= 0.1:
            assert block.nbytes - keys < 0.75 * wide.nbytes


def test_a_block_with_bad_rows_writes_them_to_the_quarantine(tmp_path) -> None:
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from mlsd_ray.data.split import BalancePlan

    proto = SplitPlan(0, False, {}, "random", None)
    quarantine = V.quarantine_schema(COLUMNS)
    rows = _rows(300, 4, 0.2)
    block = blk.verify_block(rows, TABULAR_CARD, COLUMNS, proto)
    fs = pafs.LocalFileSystem()
    (tmp_path / "q").mkdir()
    written = blk.write_block(
        block,
        plan=proto,
        balance=BalancePlan(0),
        schema=V.good_schema(TABULAR_CARD),
        quarantine_schema=quarantine,
        targets={blk.QUARANTINE: (fs, str(tmp_path / "q"))},
        duplicates={},
        layout=None,
    )
    out = pq.read_table(tmp_path / "q")
    expected = V.split_part(V.verify_rows(rows, TABULAR_CARD, COLUMNS), "bad")
    assert written.to_pylist() == [{"folder": blk.QUARANTINE, "rows": expected.num_rows}]
    assert out.select(expected.column_names).cast(quarantine).equals(expected.cast(quarantine))
