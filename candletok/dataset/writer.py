"""The shard writer: buffers one split's sorted token rows and writes fixed-size Parquet
shards (temporary name, then rename) plus the split's memory-mapped token index."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from candletok.core.atomic import sha256_file, write_parquet_atomic
from candletok.core.ids import series_bounds, with_bos
from candletok.dataset.manifest import FINGERPRINT_KEY, INDEX_DIR, TOKEN_COLUMNS


class ShardWriter:
    """Buffers sorted rows of one split and writes fixed-size shards plus the token arrays.

    With ``pool``, each shard's Parquet write and sha256 run on that (single) background
    thread while the caller encodes the next group; ``close`` waits for them in order."""

    def __init__(self, root: Path, split: str, shard_rows: int, fingerprint: str,
                 pool: ThreadPoolExecutor | None = None):
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
        while self.buffered >= self.shard_rows:
            self._flush(self.shard_rows)

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
        write_parquet_atomic(head, path, metadata=self.meta)
        return {"path": f"{self.split}/{path.name}", "rows": head.height,
                "sha256": sha256_file(path)}

    def wait(self) -> None:
        """Collect the finished background writes (re-raising their errors), in order."""
        self.shards.extend(f.result() for f in self.pending)
        self.pending = []

    def close(self) -> dict[str, Any]:
        if self.buffered:
            self._flush(self.buffered)
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
        }


