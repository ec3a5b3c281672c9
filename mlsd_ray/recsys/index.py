"""Nearest-neighbour search over item vectors with FAISS (CPU).

``flat`` is exact inner-product search (what a catalogue of thousands needs); ``hnsw`` is the
approximate graph index for large catalogues. Saved with FAISS's own format plus the ids as
JSON: no pickle.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

INDEX, IDS = "items.faiss", "item_ids.json"


class ItemIndex:
    def __init__(self, index: Any, ids: Sequence[str]) -> None:
        self.index = index
        self.ids = np.asarray(ids, dtype=object)

    @classmethod
    def build(
        cls, vectors: np.ndarray, ids: Sequence[str], kind: Literal["flat", "hnsw"] = "flat"
    ) -> ItemIndex:
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        dim = vectors.shape[1]
        index: Any
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = 128
        else:
            index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        return cls(index, ids)

    def search(self, queries: np.ndarray, k: int) -> tuple[list[list[str]], np.ndarray]:
        """The k nearest items of each query (best first) and their inner products."""
        k = min(k, len(self.ids))
        scores, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return [[self.ids[r] for r in row if r >= 0] for row in rows], scores

    def save(self, folder: str | Path) -> None:
        import faiss

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(out / INDEX))
        (out / IDS).write_text(json.dumps([str(i) for i in self.ids]))

    @classmethod
    def load(cls, folder: str | Path) -> ItemIndex:
        import faiss

        src = Path(folder)
        return cls(faiss.read_index(str(src / INDEX)), json.loads((src / IDS).read_text()))
