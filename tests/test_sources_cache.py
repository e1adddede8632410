"""The Parquet cache behind the Yahoo source: hits, head/tail extension, empty ranges,
atomic writes. A fake "market" answers fetches in yfinance's shape for the asked range."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pytest

from candletok.data import cache, yahoo
from candletok.data.sources import load_bars
from candletok.data.synthetic import synthetic_bars


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


class Market:
    """Answers ``fetch(symbols, interval=, start=, end=)`` like yf.download(group_by="column")
    from a fixed set of daily bars, and records every call."""

    def __init__(self, symbols: list[str]) -> None:
        self.bars = synthetic_bars(symbols, interval="1d", start="2023-01-02", end="2025-01-01",
                                   seed=9)
        self.calls: list[tuple[tuple[str, ...], datetime, datetime]] = []
        self.down = False

    def __call__(self, symbols: list[str], *, interval: str, start: datetime,
                 end: datetime) -> Any:
        self.calls.append((tuple(symbols), start, end))
        if self.down:
            raise ConnectionError("Could not resolve host: query2.finance.yahoo.com")
        sel = self.bars.filter(pl.col("symbol").is_in(symbols), pl.col("ts") >= start,
                               pl.col("ts") < end)
        idx = pd.DatetimeIndex(sorted(set(sel["ts"].dt.replace_time_zone(None).to_list())),
                               name="Date")
        cols = {}
        for sym in symbols:
            g = sel.filter(pl.col("symbol") == sym).to_pandas().set_index("ts")
            g.index = g.index.tz_localize(None)
            for field in ("Close", "High", "Low", "Open", "Volume"):
                cols[(field, sym)] = g[field.lower()].reindex(idx)
        frame = pd.DataFrame(cols, index=idx)
        frame.columns = pd.MultiIndex.from_tuples(frame.columns, names=["Price", "Ticker"])
        return frame.sort_index(axis=1)


@pytest.fixture
def market(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Market:
    monkeypatch.setenv("CANDLETOK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(yahoo, "SLEEP", lambda s: None)
    return Market(["AAA", "BBB"])


def _expected(market: Market, syms: list[str], start: datetime, end: datetime) -> pl.DataFrame:
    return market.bars.filter(pl.col("symbol").is_in(syms), pl.col("ts") >= start,
                              pl.col("ts") < end).sort("symbol", "ts")


def test_second_call_is_served_from_disk(market: Market, tmp_path: Path) -> None:
    a = load_bars(["AAA", "BBB"], source="yahoo", start="2024-01-01", end="2024-03-01",
                  fetch=market)
    assert len(market.calls) == 1
    assert (tmp_path / "cache" / "yahoo" / "1d" / "AAA.parquet").exists()
    b = load_bars(["AAA", "BBB"], source="yahoo", start="2024-01-01", end="2024-03-01",
                  fetch=market)
    c = load_bars(["BBB"], source="auto", start="2024-01-15", end="2024-02-01", fetch=market)
    assert len(market.calls) == 1  # no fetch for a covered range, whatever the source name
    assert a.equals(b)
    assert c.equals(_expected(market, ["BBB"], utc(2024, 1, 15), utc(2024, 2, 1)))
    assert a.select(pl.exclude("volume")).equals(
        _expected(market, ["AAA", "BBB"], utc(2024, 1, 1), utc(2024, 3, 1)).select(
            pl.exclude("volume")))


def test_tail_and_head_extension_fetch_only_the_missing_range(market: Market) -> None:
    load_bars("AAA", source="yahoo", start="2024-02-01", end="2024-03-01", fetch=market)
    df = load_bars("AAA", source="yahoo", start="2024-02-01", end="2024-04-01", fetch=market)
    assert market.calls[-1] == (("AAA",), utc(2024, 3, 1), utc(2024, 4, 1))
    df = load_bars("AAA", source="yahoo", start="2024-01-01", end="2024-04-01", fetch=market)
    assert market.calls[-1] == (("AAA",), utc(2024, 1, 1), utc(2024, 2, 1))
    assert len(market.calls) == 3
    assert df.equals(_expected(market, ["AAA"], utc(2024, 1, 1), utc(2024, 4, 1)))
    entry = cache.read_cache(None, "AAA", "1d")
    assert entry is not None and (entry.start, entry.end) == (utc(2024, 1, 1), utc(2024, 4, 1))


def test_symbols_with_different_gaps_are_fetched_separately(market: Market) -> None:
    load_bars("AAA", source="yahoo", start="2024-01-01", end="2024-02-01", fetch=market)
    load_bars(["AAA", "BBB"], source="yahoo", start="2024-01-01", end="2024-02-01",
              fetch=market)
    assert market.calls[-1] == (("BBB",), utc(2024, 1, 1), utc(2024, 2, 1))


def test_empty_weekend_range_is_recorded_and_not_refetched(market: Market) -> None:
    load_bars("AAA", source="yahoo", start="2024-01-01", end="2024-01-06", fetch=market)
    # Sat 6 and Sun 7 January hold no bars: the tail fetch comes back empty...
    df = load_bars("AAA", source="yahoo", start="2024-01-01", end="2024-01-08", fetch=market)
    assert market.calls[-1] == (("AAA",), utc(2024, 1, 6), utc(2024, 1, 8))
    assert df["ts"].max() == utc(2024, 1, 5)
    n = len(market.calls)
    # ... and is remembered as covered.
    load_bars("AAA", source="yahoo", start="2024-01-01", end="2024-01-08", fetch=market)
    assert len(market.calls) == n
    entry = cache.read_cache(None, "AAA", "1d")
    assert entry is not None and entry.end == utc(2024, 1, 8)


def test_killed_write_leaves_old_file_and_no_temp(market: Market, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    load_bars("AAA", source="yahoo", start="2024-01-01", end="2024-02-01", fetch=market)
    path = cache.cache_path(None, "AAA", "1d")
    before = path.read_bytes()

    def dying_writer(self: pl.DataFrame, file: Any, *args: Any, **kwargs: Any) -> None:
        Path(file).write_bytes(b"PAR1 half a parquet file")
        raise KeyboardInterrupt  # killed mid-way

    monkeypatch.setattr(pl.DataFrame, "write_parquet", dying_writer)
    with pytest.raises(KeyboardInterrupt):
        load_bars("AAA", source="yahoo", start="2024-01-01", end="2024-03-01", fetch=market)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["AAA.parquet"]
    entry = cache.read_cache(tmp_path / "cache", "AAA", "1d")
    assert entry is not None and entry.end == utc(2024, 2, 1)


def test_corrupt_cache_file_is_ignored_and_refetched(market: Market) -> None:
    load_bars("AAA", source="yahoo", start="2024-01-01", end="2024-02-01", fetch=market)
    cache.cache_path(None, "AAA", "1d").write_bytes(b"garbage")
    df = load_bars("AAA", source="yahoo", start="2024-01-01", end="2024-02-01", fetch=market)
    assert len(market.calls) == 2
    assert df.equals(_expected(market, ["AAA"], utc(2024, 1, 1), utc(2024, 2, 1)))


def test_offline_with_cache_serves_cached_bars(market: Market,
                                               caplog: pytest.LogCaptureFixture) -> None:
    load_bars("AAA", source="yahoo", start="2024-01-01", end="2024-02-01", fetch=market)
    market.down = True
    with caplog.at_level(logging.WARNING, logger="candletok"):
        df = load_bars("AAA", source="auto", start="2024-01-01", end="2024-03-01",
                       fetch=market)
    assert df["ts"].max() < utc(2024, 2, 1)
    said = [r.getMessage() for r in caplog.records if r.name.startswith("candletok")]
    assert len(said) == 1 and "cached bars" in said[0]


def test_explicit_cache_dir_and_odd_symbols(tmp_path: Path) -> None:
    bars = synthetic_bars("^GSPC", n_bars=5)
    p = cache.write_cache(tmp_path / "c", "^GSPC", "1d", bars, utc(2000, 1, 1), utc(2001, 1, 1))
    assert p.parent == tmp_path / "c" / "yahoo" / "1d" and "^" not in p.name
    entry = cache.read_cache(tmp_path / "c", "^GSPC", "1d")
    assert entry is not None and entry.bars.equals(bars)
    assert entry.covers(utc(2000, 6, 1), utc(2000, 7, 1))
    assert not entry.covers(utc(2000, 6, 1), utc(2001, 7, 1))
    assert cache.clear_cache(tmp_path / "c") == 1


def test_default_cache_dir_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANDLETOK_CACHE", str(tmp_path / "x"))
    assert cache.default_cache_dir() == tmp_path / "x"
    monkeypatch.delenv("CANDLETOK_CACHE")
    assert "candletok" in str(cache.default_cache_dir())
