"""The loading benchmark runs (quick size), so it cannot rot; no timing is asserted, only
that every kind of file is loaded whole and compared with the plain read."""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import load_speed


def test_load_benchmark_runs_every_kind() -> None:
    rows = load_speed.main(["--quick", "--symbols", "40"])
    assert [r["kind"] for r in rows] == list(load_speed.KINDS)
    for r in rows:
        assert r["rows"] == 20_000  # every bar loaded, whatever the date spelling
        assert math.isfinite(r["ratio"]) and r["ratio"] > 0
