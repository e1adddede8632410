"""The base-rate table (candletok/search/baserate.py) gives the full pass's answer: over
random indexes (several calendars, ties, zero returns, candles without a stored bar,
series shorter than the window), random T, windows, horizons and query series, every
count and rate is equal, every mean within 1e-9 and every quantile equal (the table's
quantiles are exact order statistics, not a sketch). Saved tables are keyed and checked."""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from candletok.data.synthetic import synthetic_bars
from candletok.dataset.build import build_dataset
from candletok.search import baserate, stats
from candletok.search.index import SearchIndex, index_dir, open_index
from candletok.search.similar import similar
from candletok.search.timerule import Cut, TimeRule

DAY = 86_400_000_000


def random_index(seed: int) -> SearchIndex:
    """A few series on one daily grid with random starts (shared times: ties in end
    order), prices on a 0.01 grid (many zero returns and equal values) and some candles
    without a stored high/low."""
    rng = np.random.default_rng(seed)
    lens = rng.integers(1, 60, int(rng.integers(1, 6)))
    starts = np.concatenate([[0], np.cumsum(lens)])
    n = int(starts[-1])
    ts = np.concatenate([(int(rng.integers(0, 30)) + np.arange(k)) * DAY for k in lens])
    close = np.round(20 * np.exp(np.cumsum(rng.normal(0, 0.01, n))), 2)
    high = close * (1 + rng.uniform(0, 0.02, n))
    low = close * (1 - rng.uniform(0, 0.02, n))
    high[rng.random(n) < 0.1] = np.nan
    return SearchIndex.from_arrays(
        symbols=[f"S{i}" for i in range(lens.size)], starts=starts,
        tokens=rng.integers(4, 12, n), ts=ts, close=close, prev_close=close * 0.999,
        scale=np.round(rng.uniform(0.5, 2.0, n), 1), radix=12,
        bars={"open": close, "high": high, "low": low, "volume": np.ones(n)})


def same(a: float, b: float, tol: float = 0.0) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b or abs(a - b) <= tol * max(1.0, abs(b))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), t_frac=st.floats(-0.1, 1.1), window=st.integers(1, 8),
       horizons=st.sets(st.integers(1, 6), min_size=1, max_size=3),
       query=st.booleans(), qs=st.integers(0, 9), block=st.sampled_from([4, 16, 8192]))
def test_the_table_equals_the_full_pass(seed: int, t_frac: float, window: int,
                                        horizons: set[int], query: bool, qs: int,
                                        block: int) -> None:
    idx = random_index(seed)
    ts = np.asarray(idx.ts)
    T = int(ts.min() + t_frac * (ts.max() - ts.min()))
    q_sid = q_end = None
    if query:
        q_sid = qs % len(idx.symbols)
        a, b = int(idx.starts[q_sid]), int(idx.starts[q_sid + 1])
        last = a + int(np.searchsorted(ts[a:b], T, side="right")) - 1
        q_sid, q_end = (q_sid, last) if last >= a else (None, None)
    hs = tuple(sorted(horizons))
    cut = Cut.of(idx, TimeRule(T, window, hs, q_sid, q_end))
    with mock.patch.object(baserate, "BLOCK", block):  # checkpoints inside tiny tables too
        for h in hs:
            got = stats.base_outcome(cut, h, 0.2, 2.5).row()
            want = stats.base_outcome_scan(cut, h, 0.2, 2.5).row()
            for k, w in want.items():
                tol = 1e-9 if k == "mean_log" else 0.0
                assert same(got[k], w, tol), (k, got[k], w)  # type: ignore[arg-type]
        got_r = stats.next_range(idx, None, cut)
        want_r = stats.next_range(idx, None, cut, scan=True)
    for k, w in want_r.items():
        assert same(got_r[k], w, 1e-9 if k.startswith("mean") else 0.0), (k, got_r[k], w)


def test_order_stats_match_a_sort_with_exclusions() -> None:
    """The rank structure alone: the k-th value of a prefix less listed elements."""
    rng = np.random.default_rng(3)
    v = np.round(rng.standard_t(3, 5000), 1)  # heavy tails and many ties
    pq = baserate.PrefixQuantiles.build(v, block=64)
    for j in (0, 1, 63, 64, 65, 999, 5000):
        drop = np.sort(rng.choice(max(j, 1), min(j, 30), replace=False)) if j else \
            np.zeros(0, np.int64)
        keep = np.setdiff1d(np.arange(j), drop)
        if keep.size == 0:
            continue
        ks = sorted({0, keep.size // 2, keep.size - 1})
        got = pq.order_stats(j, ks, lambda g: v[g], v[drop], lambda g, d=drop: np.isin(g, d))
        want = np.sort(v[keep])
        assert got == {k: float(want[k]) for k in ks}


@pytest.fixture
def small_ds(tmp_path: Path) -> Path:
    bars = synthetic_bars(["AA", "BB"], n_bars=200, seed=2)

    def loader(symbols: list[str], **_: Any) -> pl.DataFrame:
        return bars.filter(pl.col("symbol").is_in(symbols))

    build_dataset(["AA", "BB"], tmp_path / "ds", loader=loader,
                  tokenizer_params={"gap_bins": 3, "body_bins": 3, "upper_bins": 2,
                                    "lower_bins": 2})
    return tmp_path / "ds"


def test_tables_are_saved_with_the_index_and_checked(small_ds: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    want = similar(small_ds, "BB", last=3, horizons=(1, 4)).outcomes
    folder = index_dir(small_ds)
    assert {p.name for p in folder.glob("base-h*")} >= {"base-h1.npz", "base-h4.npz",
                                                         "base-h1.json", "base-h4.json"}
    idx = open_index(small_ds)
    with mock.patch.object(baserate, "build_table", side_effect=AssertionError("rebuilt")):
        assert similar(idx, "BB", last=3, horizons=(1, 4)).outcomes.equals(want)  # loaded
    with np.load(folder / "base-h4.npz") as z:
        parts = {k: z[k] for k in z.files}
    parts["cum_r"] = parts["cum_r"] + 1.0  # an edited table is never trusted
    np.savez(folder / "base-h4.npz", **parts)
    with caplog.at_level(logging.WARNING, logger="candletok"):
        got = similar(small_ds, "BB", last=3, horizons=(1, 4)).outcomes
    assert "does not match its checksum" in caplog.text
    assert got.equals(want)
    other = small_ds.parent / "other"
    shutil.copytree(small_ds, other)
    meta = folder / "base-h1.json"
    (other / meta.relative_to(small_ds)).write_text(
        meta.read_text().replace('"key": "', '"key": "x'))  # another index's table: rebuilt
    assert similar(other, "BB", last=3, horizons=(1, 4)).outcomes.equals(want)
