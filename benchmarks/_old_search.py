"""The search paths as they were before issue 25, kept only so that
``benchmarks/search_speed.py`` can time them side by side with today's in one run:

* the folder build: shards hashed one after another, read one by one (every split's
  rows concatenated), each column gathered row by row into series order, time order
  checked over every row, and each saved array hashed with sha256 after writing;
* ``similar()`` with the base rate as a pass over every window (``base_outcome_scan``
  and ``next_range(..., scan=True)``, which stay in the library as the reference).
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import polars as pl

from candletok.core.atomic import sha256_file
from candletok.core.ids import SPLITS
from candletok.dataset.manifest import open_dataset, split_meta
from candletok.search import stats
from candletok.search.grams import ranges_to_indices
from candletok.search.index import ARRAYS, BAR_ARRAYS, SearchIndex, dataset_key


def old_read_series(root: Path) -> dict[str, Any]:
    """The pre-issue-25 reader: shard by shard, then a per-row gather per column."""
    manifest, _ = open_dataset(root)
    cols = ["symbol", "ts", "token", "prev_close", "scale", "close", *BAR_ARRAYS]
    frames = [pl.read_parquet(root / s["path"], columns=cols)
              for split in SPLITS if split in manifest["splits"]
              for s in split_meta(manifest, split)["shards"]]
    df = pl.concat(frames, rechunk=False)
    runs = df["symbol"].rle()
    run_sym = runs.struct.field("value").to_numpy().astype(str)
    run_len = runs.struct.field("len").to_numpy().astype(np.int64)
    run_start = np.cumsum(run_len) - run_len
    order = np.argsort(run_sym, kind="stable")
    gather = ranges_to_indices(run_start[order], run_start[order] + run_len[order])
    sym_sorted = run_sym[order]
    new = np.ones(sym_sorted.size, dtype=bool)
    new[1:] = sym_sorted[1:] != sym_sorted[:-1]
    series_len = np.add.reduceat(run_len[order], np.flatnonzero(new))
    starts = np.concatenate([[0], np.cumsum(series_len)]).astype(np.int64)

    def col(name: str, dtype: Any) -> np.ndarray:
        return df[name].to_physical().to_numpy().astype(dtype, copy=False)[gather]

    prev = np.zeros(starts[-1])
    prev[starts[:-1]] = df["prev_close"].to_numpy()[gather[starts[:-1]]]
    out = {"symbols": sym_sorted[new].tolist(), "starts": starts,
           "tokens": col("token", np.uint16), "ts": col("ts", np.int64),
           "close": col("close", np.float64), "prev_close": prev,
           "scale": col("scale", np.float64),
           "bars": {c: col(c, np.float64) for c in BAR_ARRAYS}}
    step = np.diff(out["ts"])
    within = np.ones(step.size, dtype=bool)
    within[starts[1:-1] - 1] = False
    assert not bool((step[within] <= 0).any())
    return out


def old_build(root: Path) -> SearchIndex:
    """The pre-issue-25 folder build: sequential sha256 of the shards, the old reader,
    the same in-memory build, then every array saved and hashed with sha256."""
    manifest, tok = open_dataset(root)
    for split in SPLITS:
        for s in manifest["splits"].get(split, {}).get("shards", []):
            assert sha256_file(root / s["path"]) == s["sha256"]
    idx = SearchIndex.from_arrays(radix=tok.vocab_size, tokenizer=tok,
                                  key=dataset_key(manifest), root=root,
                                  **old_read_series(root))
    tmp = Path(tempfile.mkdtemp(prefix="old-index-", dir=root.parent))
    try:
        for name in ARRAYS:
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(getattr(idx, name)))
            sha256_file(tmp / f"{name}.npy")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return idx


@contextlib.contextmanager
def old_base_rate() -> Iterator[None]:
    """``similar()`` as before: the base rate and the base next range by a full pass."""
    with mock.patch.object(stats, "base_outcome", stats.base_outcome_scan), \
            mock.patch.object(stats, "next_range",
                              functools.partial(stats.next_range, scan=True)):
        yield
