"""The shard writer: buffers one split's sorted token rows and writes Parquet shards
(temporary name, then rename) plus the split's memory-mapped token index.

Shard counts: a split with more rows than one shard holds and at least
``SHARD_MULTIPLE * 1024`` rows is cut into a multiple of ``SHARD_MULTIPLE`` (64) shards of
equal size (give or take one row), so that 2, 4, 8, 16, 32 or 64 ranks or readers each
get whole, equal files (Hugging Face ``split_dataset_by_node`` and file-per-worker
readers need ``n_shards % world_size == 0``). Smaller splits keep shards of exactly
``shard_rows`` rows, the last one shorter. The rule needs the split's row count before
the first shard is written: the build predicts it exactly from the bars (see
:func:`candletok.dataset.build.expected_split_rows`); without a prediction, or when it
misses, shards are ``shard_rows`` long.

Shard bytes depend only on the rows: each shard is made one contiguous chunk before it is
written, so engines that hand over the same rows in different pieces write the same
files."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from candletok.core.atomic import sha256_file, write_parquet_atomic
from candletok.core.ids import series_bounds, with_bos
from candletok.dataset.manifest import FINGERPRINT_KEY, INDEX_DIR, TOKEN_COLUMNS

log = logging.getLogger(__name__)

SHARD_MULTIPLE = 64
"""Shard counts of large splits are multiples of this (so of every power of two up to it)."""
MIN_BALANCED_ROWS = SHARD_MULTIPLE * 1024


def shard_sizes(rows: int, shard_rows: int) -> list[int]:
    """Rows of each shard of a split of ``rows`` rows (see the module docs for the rule)."""
    if rows <= 0:
        return []
    n = -(-rows // shard_rows)
    balanced = -(-n // SHARD_MULTIPLE) * SHARD_MULTIPLE
    if n > 1 and rows >= MIN_BALANCED_ROWS and balanced <= rows:
        q, r = divmod(rows, balanced)
        return [q + 1] * r + [q] * (balanced - r)
    return [shard_rows] * (n - 1) + [rows - shard_rows * (n - 1)]


class ShardWriter:
    """Buffers sorted rows of one split and writes fixed-size shards plus the token arrays.

    With ``pool``, each shard's Parquet write and sha256 run on that (single) background
    thread while the caller encodes the next group; ``close`` waits for them in order.
    ``expected_rows``, the split's exact row count when known in advance, lets large splits
    get a shard count that common world sizes divide (:func:`shard_sizes`)."""

    def __init__(self, root: Path, split: str, shard_rows: int, fingerprint: str,
                 pool: ThreadPoolExecutor | None = None, expected_rows: int | None = None):
        self.dir = root / split
        self.dir.mkdir(parents=True, exist_ok=True)
        self.split = split
        self.shard_rows = shard_rows
        self.meta = {FINGERPRINT_KEY: fingerprint, "candletok.split": split}
        self.pool = pool
        self.buffer: list[pl.DataFrame] = []
        self.buffered = 0
        self.shards: list[dict[str, Any]] = []
        self.pending: list[Future[dict[str, Any]]] = []
        self.token_parts: list[np.ndarray] = []
        self.series: list[tuple[str, int]] = []  # (symbol, n candles) in order
        self.rows = 0
        self.expected = expected_rows
        self.plan = shard_sizes(expected_rows, shard_rows) if expected_rows else []

    def _next_size(self) -> int:
        k = len(self.shards) + len(self.pending)
        return self.plan[k] if k < len(self.plan) else self.shard_rows

    def add(self, rows: pl.DataFrame) -> None:
        if rows.height == 0:
            return
        rows = rows.select(TOKEN_COLUMNS)
        self.buffer.append(rows)
        self.buffered += rows.height
        self.rows += rows.height
        # Token arrays: a BOS before every series (vectorized per group). Rows arrive
        # sorted by symbol, so its runs are its groups.
        runs = rows["symbol"].rle()
        syms = runs.struct.field("value").to_list()
        lens = runs.struct.field("len").to_numpy().astype(np.int64)
        self.token_parts.append(with_bos(rows["token"].to_numpy(), lens)[0])
        self.series.extend(zip(syms, lens.tolist(), strict=True))
        while self.buffered >= self._next_size():
            self._flush(self._next_size())

    def _flush(self, n: int) -> None:
        df = pl.concat(self.buffer, rechunk=False)
        head, tail = df.head(n), df.slice(n)
        path = self.dir / f"part-{len(self.shards) + len(self.pending):05d}.parquet"
        if self.pool is None:
            self.shards.append(self._write(head, path))
        else:
            self.pending.append(self.pool.submit(self._write, head, path))
        self.buffer = [tail] if tail.height else []
        self.buffered = tail.height

    def _write(self, head: pl.DataFrame, path: Path) -> dict[str, Any]:
        write_parquet_atomic(head.rechunk(), path, metadata=self.meta)
        return {"path": f"{self.split}/{path.name}", "rows": head.height,
                "sha256": sha256_file(path)}

    def wait(self) -> None:
        """Collect the finished background writes (re-raising their errors), in order."""
        self.shards.extend(f.result() for f in self.pending)
        self.pending = []

    def close(self) -> dict[str, Any]:
        if self.buffered:
            self._flush(self.buffered)
        if self.expected is not None and self.expected != self.rows:
            log.warning("%s: %d rows where %d were expected; its shard count may not be a "
                        "multiple of %d.", self.split, self.rows, self.expected, SHARD_MULTIPLE)
        self.wait()
        tokens = (
            np.concatenate(self.token_parts) if self.token_parts else np.zeros(0, np.uint16)
        )
        bounds = series_bounds(np.array([n for _, n in self.series], dtype=np.int64))
        index = self.dir.parent / INDEX_DIR
        index.mkdir(exist_ok=True)
        np.save(index / f"{self.split}.tokens.npy", tokens)
        np.save(index / f"{self.split}.series.npy", bounds.astype(np.int64))
        return {
            "rows": self.rows,
            "symbols": [s for s, _ in self.series],
            "shards": self.shards,
            "tokens_sha256": sha256_file(index / f"{self.split}.tokens.npy"),
            "series_sha256": sha256_file(index / f"{self.split}.series.npy"),
        }


