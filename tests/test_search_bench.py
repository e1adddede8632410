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
    for part in ("index build, from the folder", "index memory", "exact 5-gram query",
                 "N=5", "N=10", "N=20", "numpy brute force", "similar() end to end",
                 "learned: embedding pass", "learned: query"):
        assert part in what, part
    brute = next(r for r in rows if "brute force" in r["what"])
    assert "same answer as candletok: yes" in brute["note"]
