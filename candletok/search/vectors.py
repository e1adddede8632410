"""Vector indexes for dense embeddings (the ``model`` mode's hidden states), behind one
small interface in the spirit of Hugging Face ``datasets``' ``BaseIndex``: ``search``,
``search_batch``, ``save`` and ``load``.

:class:`NumpyFlatIndex` is exact and the default. :class:`FaissIndex` (optional extra
``candletok[search]``) is for data too large to scan on every query; with ``kind="hnsw"``
it is approximate, and ``benchmarks/search_speed.py`` measures its recall against the
exact index.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from candletok.core.atomic import atomic_path, write_json_atomic
from candletok.core.errors import CandletokError


class SearchResults(NamedTuple):
    """Squared L2 distances (ascending) and the row ids they belong to."""

    scores: np.ndarray
    indices: np.ndarray


class BaseIndex(ABC):
    """k nearest rows of a fixed (n, d) float32 matrix by squared L2 distance."""

    @property
    @abstractmethod
    def size(self) -> int:
        """Rows indexed."""

    @abstractmethod
    def search_batch(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores (q, k), ids (q, k)) for each query row; ids -1 past the index size."""

    def search(self, query: np.ndarray, k: int) -> SearchResults:
        s, i = self.search_batch(np.asarray(query, dtype=np.float32).reshape(1, -1), k)
        keep = i[0] >= 0
        return SearchResults(s[0][keep], i[0][keep])

    @abstractmethod
    def save(self, path: str | Path) -> Path:
        """Write the index to ``path`` (atomically)."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | Path) -> BaseIndex:
        """Read an index written by :meth:`save`."""


class NumpyFlatIndex(BaseIndex):
    """Exact search: every distance, in blocks, with numpy. Also takes a row mask."""

    BLOCK = 1 << 16

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)

    @property
    def size(self) -> int:
        return int(self.vectors.shape[0])

    def distances(self, query: np.ndarray) -> np.ndarray:
        """Squared L2 distance of every row to ``query`` (float64 accumulation)."""
        q = np.asarray(query, dtype=np.float64).reshape(-1)
        out = np.empty(self.size)
        for s in range(0, self.size, self.BLOCK):
            blk = self.vectors[s : s + self.BLOCK].astype(np.float64)
            out[s : s + self.BLOCK] = np.square(blk - q[None, :]).sum(axis=1)
        return out

    def search_masked(self, query: np.ndarray, k: int, mask: np.ndarray | None = None
                      ) -> SearchResults:
        """The k nearest rows among those where ``mask`` is True (ties: lower id)."""
        d = self.distances(query)
        ids = np.arange(self.size) if mask is None else np.flatnonzero(mask)
        d = d[ids]
        if ids.size > k:
            part = np.argpartition(d, k - 1)[:k]
            kth = d[part].max()
            sel = np.flatnonzero(d <= kth)  # every tie of the k-th, then cut by id
            ids, d = ids[sel], d[sel]
        o = np.lexsort((ids, d))[:k]
        return SearchResults(d[o], ids[o])

    def search_batch(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        qs = np.atleast_2d(queries)
        scores = np.full((qs.shape[0], k), np.inf)
        ids = np.full((qs.shape[0], k), -1, dtype=np.int64)
        for j, q in enumerate(qs):
            r = self.search_masked(q, k)
            scores[j, : r.scores.size], ids[j, : r.indices.size] = r.scores, r.indices
        return scores, ids

    def save(self, path: str | Path) -> Path:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, self.vectors)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> NumpyFlatIndex:
        return cls(np.load(path))


class FaissIndex(BaseIndex):
    """faiss ``IndexFlatL2`` (exact) or ``IndexHNSWFlat`` (approximate); optional extra."""

    def __init__(self, vectors: np.ndarray | None = None, kind: str = "flat",
                 hnsw_m: int = 32, index: Any = None) -> None:
        faiss = _faiss()
        if index is None:
            v = np.ascontiguousarray(vectors, dtype=np.float32)
            if kind == "flat":
                index = faiss.IndexFlatL2(v.shape[1])
            elif kind == "hnsw":
                index = faiss.IndexHNSWFlat(v.shape[1], hnsw_m)
            else:
                raise CandletokError(f"Unknown faiss index kind {kind!r}; use flat or hnsw.")
            index.add(v)
        self.index = index
        self.kind = kind

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    def search_batch(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        s, i = self.index.search(q, int(k))
        return s.astype(np.float64), i.astype(np.int64)

    def save(self, path: str | Path) -> Path:
        faiss = _faiss()
        with atomic_path(path) as tmp:
            faiss.write_index(self.index, str(tmp))
        write_json_atomic(f"{path}.json", {"kind": self.kind})
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> FaissIndex:
        faiss = _faiss()
        kind = "flat"
        meta = Path(f"{path}.json")
        if meta.exists():
            kind = json.loads(meta.read_text(encoding="utf-8")).get("kind", "flat")
        return cls(index=faiss.read_index(str(path)), kind=kind)


DOT_BLOCK = 1 << 15  # rows per block of dot_search's product: its slice stays in cache


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise CandletokError(
            "faiss is not installed; install the optional extra: pip install 'candletok[search]'."
        ) from exc
    return faiss


def search_filtered(index: BaseIndex, query: np.ndarray, k: int,
                    keep: Callable[[np.ndarray], np.ndarray]) -> SearchResults:
    """The k nearest rows that pass ``keep`` (a vectorized row filter): asks the index
    for more and more rows until k pass or the index is exhausted."""
    if isinstance(index, NumpyFlatIndex):
        mask = keep(np.arange(index.size))
        return index.search_masked(query, k, mask)
    want = max(k, 16)
    while True:
        r = index.search(query, min(want, index.size))
        ok = keep(r.indices)
        if int(ok.sum()) >= k or want >= index.size:
            return SearchResults(r.scores[ok][:k], r.indices[ok][:k])
        want *= 4


def _scores_into(out: np.ndarray, vectors: np.ndarray, sq: np.ndarray, q32: np.ndarray,
                 lo: int, hi: int) -> None:
    """``out[:] = |v|^2 - 2 v.q`` for rows [lo, hi), in float32, in place, in blocks of
    :data:`DOT_BLOCK` rows (each block's product stays in cache)."""
    for s in range(lo, hi, DOT_BLOCK):
        e = min(hi, s + DOT_BLOCK)
        blk = out[s - lo : e - lo]
        np.matmul(vectors[s:e], q32, out=blk)
        blk *= np.float32(-2.0)
        blk += sq[s:e]


def dot_search(vectors: np.ndarray, sqnorms: np.ndarray, query: np.ndarray, k: int,
               mask: np.ndarray | None = None,
               ranges: tuple[np.ndarray, np.ndarray] | None = None) -> SearchResults:
    """The k nearest rows (among ``mask``, or among the row ranges ``[a, b)`` of
    ``ranges``) by squared L2 distance, exactly, at the cost of one float32
    matrix-vector product: ``|v|^2 - 2 v.q + |q|^2`` ranks the rows (in float32, in
    place, in cached blocks; ``sqnorms`` computed once per vector set by the caller,
    float32 preferred), then every row within that ranking's float32 error of the k-th is
    measured again in float64 and the k nearest of those are returned (ties: lower id),
    so the answer is :meth:`NumpyFlatIndex.search_masked`'s without its float64 pass over
    every row. With ``ranges`` (the time rule's eligible windows, one range per series)
    only those rows are multiplied and ranked: one slice per range, not a test per row."""
    q32 = np.asarray(query, dtype=np.float32).reshape(-1)
    q2 = float(np.dot(q32.astype(np.float64), q32.astype(np.float64)))
    n = vectors.shape[0]
    sq = np.asarray(sqnorms)
    if ranges is not None:
        a, b = (np.minimum(np.asarray(x, dtype=np.int64), n) for x in ranges)
        keep = b > a
        o = np.argsort(a[keep], kind="stable")
        a, b = a[keep][o], b[keep][o]
    else:
        a, b = np.zeros(1, np.int64), np.full(1, n, np.int64)
    ends = np.cumsum(b - a)
    m = int(ends[-1]) if ends.size else 0
    if k < 1 or m == 0:
        return SearchResults(np.zeros(0), np.zeros(0, dtype=np.int64))
    approx = np.empty(m, dtype=np.float32)  # + q2 is the same for every row
    for lo, hi, at in zip(a.tolist(), b.tolist(), (ends - (b - a)).tolist(), strict=True):
        _scores_into(approx[at : at + hi - lo], vectors, sq, q32, lo, hi)
    if mask is not None:  # in the ranked rows' order (the ranges laid end to end)
        mk = np.asarray(mask, dtype=bool)
        if ranges is not None:
            mk = np.concatenate([mk[lo:hi] for lo, hi in zip(a.tolist(), b.tolist(),
                                                             strict=True)])
        approx[~mk] = np.inf
    if k < m:
        kth = float(np.partition(approx, k - 1)[k - 1])
        if not np.isfinite(kth):  # fewer than k rows pass the mask
            kth = float(approx[np.isfinite(approx)].max(initial=-np.inf))
        # float32 products and sums: error below ~ d * 2^-23 * (|v|^2 + |q|^2) per row
        tol = 1e-5 * (float(sq.max(initial=0.0)) + q2) + 1e-12
        pos = np.flatnonzero(approx <= kth + tol)
    else:
        pos = np.flatnonzero(np.isfinite(approx))
    r = np.searchsorted(ends, pos, side="right")  # which range each ranked row is in
    ids = a[r] + (pos - (ends[r] - (b[r] - a[r])))
    blk64 = vectors[ids].astype(np.float64) - q32.astype(np.float64)[None, :]
    d = np.einsum("ij,ij->i", blk64, blk64)
    o2 = np.lexsort((ids, d))[:k]
    return SearchResults(d[o2], ids[o2])
