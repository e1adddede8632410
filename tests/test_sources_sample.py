"""The bundled sample through load_bars, the auto fallback, and the dispatcher's errors."""

from __future__ import annotations

import logging
from datetime import date, datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from candletok.core.errors import BarsError, SourceError
from candletok.core.times import normalize_interval, parse_time
from candletok.data import sources, yahoo
from candletok.data.bars import canonicalize
from candletok.data.sources import load_bars

SPLIT_SIZED = 0.4  # |ln r| > 0.4 is a -33% / +49% day: a split, unless it really happened
KNOWN_REAL_MOVES = {("AAPL", date(2000, 9, 29))}  # -52% on a profit warning


def _jumps(df: pl.DataFrame) -> set[tuple[str, date]]:
    r = df.sort("symbol", "ts").with_columns(
        (pl.col("close") / pl.col("close").shift(1).over("symbol")).log().alias("r")
    )
    hits = r.filter(pl.col("r").abs() > SPLIT_SIZED)
    return {(s, t.date()) for s, t in hits.select("symbol", "ts").iter_rows()}


def test_sample_is_split_adjusted() -> None:
    df = load_bars(["AAPL", "MSFT", "IBM", "GOOG", "FB"], source="sample")
    assert _jumps(df) <= KNOWN_REAL_MOVES
    # The same file read unadjusted shows the splits, so this test can fail.
    raw = pl.read_csv(
        resources.files("candletok").joinpath("data", "stocks.csv.gz").read_bytes(),
        infer_schema_length=0,
    )
    unadjusted = _jumps(canonicalize(raw, adjust=False))
    assert len(unadjusted - KNOWN_REAL_MOVES) >= 2


def test_sample_range_and_interval() -> None:
    df = load_bars("msft", source="sample", start="2010-01-01", end=date(2011, 1, 1))
    assert df["ts"].min() >= datetime(2010, 1, 1, tzinfo=timezone.utc)
    assert df["ts"].max() < datetime(2011, 1, 1, tzinfo=timezone.utc)
    assert 240 < df.height < 260
    with pytest.raises(SourceError, match="daily bars only"):
        load_bars("MSFT", source="sample", interval="5m")
    with pytest.raises(BarsError) as err:
        load_bars("NOPE", source="sample")
    assert err.value.rule == "unknown_symbol" and "AAPL" in str(err.value)
    with pytest.raises(BarsError) as err:
        load_bars("FB", source="sample", end="2001-01-01")
    assert err.value.rule == "empty"


def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Any]:
    monkeypatch.setenv("CANDLETOK_CACHE", str(tmp_path))
    monkeypatch.setattr(yahoo, "SLEEP", lambda s: None)
    monkeypatch.setattr(sources, "_SAID", set())
    calls: list[Any] = []

    def no_network(symbols: list[str], **kw: Any) -> Any:
        calls.append(symbols)
        raise ConnectionError("Could not resolve host: query2.finance.yahoo.com")

    monkeypatch.setattr(yahoo, "yf_download", no_network)
    return calls


def test_auto_falls_back_to_sample_with_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    calls = _offline(monkeypatch, tmp_path)
    with caplog.at_level(logging.WARNING, logger="candletok"):
        df = load_bars(["AAPL", "IBM"], start="2012-01-01")
        load_bars(["MSFT"], start="2012-01-01")  # a second fallback says nothing new
    assert calls  # Yahoo was tried first
    assert df["symbol"].unique().sort().to_list() == ["AAPL", "IBM"]
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "bundled sample" in said[0]


def test_auto_without_sample_symbol_is_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _offline(monkeypatch, tmp_path)
    with pytest.raises(SourceError) as err:
        load_bars(["AAPL", "TSLA"])
    msg = str(err.value)
    assert "TSLA not in the bundled sample" in msg and "source='sample'" in msg
    with pytest.raises(SourceError, match="daily bars only"):
        load_bars(["AAPL"], interval="1h")


def test_explicit_yahoo_does_not_fall_back(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    _offline(monkeypatch, tmp_path)
    with pytest.raises(SourceError, match="could not be reached"):
        load_bars(["AAPL"], source="yahoo", start="2012-01-01", end="2012-02-01")


def test_dispatcher_errors() -> None:
    with pytest.raises(SourceError, match="Unknown source 'quandl'"):
        load_bars("AAPL", source="quandl")
    with pytest.raises(SourceError, match="at least one symbol"):
        load_bars([], source="sample")
    with pytest.raises(SourceError, match="not before"):
        load_bars("AAPL", source="sample", start="2012-01-01", end="2011-01-01")
    with pytest.raises(SourceError, match="YYYY-MM-DD"):
        load_bars("AAPL", source="sample", start="last tuesday")


def test_intervals_and_times() -> None:
    assert normalize_interval("1H") == "60m" and normalize_interval("1wk") == "1wk"
    for bad in ("4h", "3d", ""):
        with pytest.raises(SourceError, match="Unknown interval"):
            normalize_interval(bad)
    assert parse_time("2024-01-02") == datetime(2024, 1, 2, tzinfo=timezone.utc)
    assert parse_time(date(2024, 1, 2)) == datetime(2024, 1, 2, tzinfo=timezone.utc)
    assert parse_time("2024-01-02T10:00:00+02:00") == datetime(2024, 1, 2, 8,
                                                               tzinfo=timezone.utc)
    assert parse_time(None) is None
