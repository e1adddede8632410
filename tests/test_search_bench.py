"""The pattern-search benchmark runs (tiny size, no optional extras), so it cannot rot;
no timing is asserted, only that every row is there and the exact answers agree."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import search_speed


def test_search_benchmark_runs_and_agrees() -> None:
    rows = search_speed.main(["--candles", "30000", "--queries", "3", "--no-faiss",
                              "--no-stumpy", "--hnsw-max", "0"])
    what = " | ".join(r["what"] for r in rows)
    for part in ("index build, from the folder, first", "from the folder, rebuild",
                 "index memory", "exact 5-gram query",
                 "N=5", "N=10", "N=20", "numpy brute force", "similar() end to end",
                 "learned: embedding pass", "learned: query"):
        assert part in what, part
    brute = next(r for r in rows if "brute force" in r["what"])
    assert "same answer as candletok: yes" in brute["note"]


def test_the_folder_reader_lays_out_what_the_old_row_gather_did(tmp_path: Path) -> None:
    """The slice-by-slice reader (one parallel scan, runs copied in series order) gives
    exactly the arrays the pre-issue-25 per-row gather gave, on a dataset of three splits
    and several symbols (each symbol's series is three runs)."""
    import numpy as np
    import polars as pl

    from benchmarks._old_search import old_read_series
    from candletok.data.synthetic import synthetic_bars
    from candletok.dataset.build import build_dataset
    from candletok.search.index import read_series

    bars = synthetic_bars(["B", "A", "C"], n_bars=400, seed=1)
    root = tmp_path / "ds"
    build_dataset(["B", "A", "C"], root, shard_rows=150,
                  loader=lambda symbols, **_: bars.filter(pl.col("symbol").is_in(symbols)))
    new, old = read_series(root), old_read_series(root)
    assert new["symbols"] == old["symbols"] and len(new["symbols"]) > 1
    for k in ("starts", "tokens", "ts", "close", "prev_close", "scale"):
        assert np.array_equal(new[k], old[k]), k
    for c, v in old["bars"].items():
        assert np.array_equal(new["bars"][c], v, equal_nan=True), c
