"""Yahoo source: reshaping recorded yfinance 1.7 frames, failure detection, retries, limits.

No test touches the network: ``fetch`` is a fake that replays frames recorded by
``tests/data/make_recorded.py`` (built with yfinance's own ``download()`` assembly code)."""

from __future__ import annotations

import logging
import pickle
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from candletok.core.errors import BarsError, SourceError
from candletok.data import yahoo
from candletok.data.bars import BARS_SCHEMA
from candletok.data.sources import load_bars
from candletok.data.yahoo import (
    YahooUnreachable,
    fetch_with_retry,
    reshape_yf,
    resolve_range,
    yf_download,
)

DATA = Path(__file__).parent / "data"


def recorded(name: str) -> Any:
    with open(DATA / f"yf_{name}.pkl", "rb") as fh:
        return pickle.load(fh)


class FakeFetch:
    """Replays one recorded frame (or raises) and counts calls."""

    def __init__(self, result: Any = None, error: BaseException | None = None,
                 fail_times: int = 0) -> None:
        self.result, self.error, self.fail_times = result, error, fail_times
        self.calls: list[tuple[list[str], str, datetime | None, datetime | None]] = []

    def __call__(self, symbols: list[str], *, interval: str, start: datetime | None,
                 end: datetime | None) -> Any:
        self.calls.append((symbols, interval, start, end))
        if self.error is not None and len(self.calls) <= self.fail_times:
            raise self.error
        return self.result


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Private cache dir, and retries that sleep for no time but are recorded."""
    monkeypatch.setenv("CANDLETOK_CACHE", str(tmp_path / "cache"))
    slept: list[float] = []
    monkeypatch.setattr(yahoo, "SLEEP", slept.append)
    return slept


# ------------------------------------------------------------------ reshaping


def test_single_ticker_values_match_the_pandas_frame() -> None:
    pdf = recorded("single_daily")
    bars, empty = reshape_yf(pdf, ["AAPL"])
    assert empty == [] and dict(bars.schema) == BARS_SCHEMA
    assert bars.height == len(pdf)
    assert np.allclose(bars["close"].to_numpy(), pdf[("Close", "AAPL")].to_numpy())
    assert np.allclose(bars["volume"].to_numpy(), pdf[("Volume", "AAPL")].to_numpy())
    # tz-naive daily index -> midnight UTC of the same date
    assert bars["ts"][0] == datetime(2024, 1, 2, tzinfo=timezone.utc)


@pytest.mark.parametrize("name", ["single_flat", "single_flat_ticker"])
def test_flat_single_ticker_frames(name: str) -> None:
    flat, _ = reshape_yf(recorded(name), ["aapl"])
    multi, _ = reshape_yf(recorded("single_daily"), ["AAPL"])
    assert flat.equals(multi)


def test_multi_ticker_either_level_order_same_result() -> None:
    by_col, e1 = reshape_yf(recorded("multi_column"), ["AAPL", "MSFT"])
    by_tkr, e2 = reshape_yf(recorded("multi_ticker"), ["AAPL", "MSFT"])
    assert e1 == e2 == []
    assert by_col.equals(by_tkr)
    counts = dict(by_col.group_by("symbol").len().iter_rows())
    # MSFT lacks one day AAPL has: the NaN padding row of the shared index is dropped.
    assert counts == {"AAPL": 20, "MSFT": 19}
    assert by_col.filter(pl.col("symbol") == "MSFT")["close"].is_nan().sum() == 0


def test_intraday_tz_aware_index_becomes_utc() -> None:
    pdf = recorded("intraday_multi")
    assert str(pdf.index.tz) == "America/New_York"
    bars, _ = reshape_yf(pdf, ["SPY5", "QQQ5"])
    first = bars.filter(pl.col("symbol") == "SPY5")["ts"][0]
    assert first == datetime(2024, 3, 11, 13, 30, tzinfo=timezone.utc)  # 09:30 EDT
    assert bars.schema["ts"] == pl.Datetime("us", "UTC")
    single, _ = reshape_yf(recorded("intraday_single"), ["SPY5"])
    assert single.equals(bars.filter(pl.col("symbol") == "SPY5"))


def test_failed_ticker_detected_among_good_ones() -> None:
    bars, empty = reshape_yf(recorded("multi_failed"), ["AAPL", "NOPE"])
    assert empty == ["NOPE"]
    assert bars["symbol"].unique().to_list() == ["AAPL"] and bars.height == 20


def test_missing_and_all_failed_symbols() -> None:
    _, empty = reshape_yf(recorded("all_failed"), ["NOPE"])
    assert empty == ["NOPE"]
    _, empty = reshape_yf(recorded("multi_column"), ["AAPL", "ZZZ"])
    assert empty == ["ZZZ"]


# ------------------------------------------------------------------ load_bars over yahoo


def test_load_bars_yahoo_validated() -> None:
    fetch = FakeFetch(recorded("multi_column"))
    df = load_bars(["AAPL", "MSFT"], source="yahoo", start="2024-01-01", end="2024-02-01",
                   fetch=fetch)
    assert df.height == 39 and df["symbol"].unique().sort().to_list() == ["AAPL", "MSFT"]
    assert len(fetch.calls) == 1
    assert fetch.calls[0][2] == datetime(2024, 1, 1, tzinfo=timezone.utc)


def test_bad_symbol_is_fetch_failed_naming_it() -> None:
    fetch = FakeFetch(recorded("multi_failed"))
    with pytest.raises(BarsError) as err:
        load_bars(["AAPL", "NOPE"], source="yahoo", start="2024-01-01", end="2024-02-01",
                  fetch=fetch)
    assert err.value.rule == "fetch_failed"
    assert "NOPE" in str(err.value) and "AAPL" not in str(err.value).split("(")[0]
    # The good symbol was cached and now loads with no fetch at all.
    again = FakeFetch(error=AssertionError("must not fetch"), fail_times=99)
    df = load_bars("AAPL", source="yahoo", start="2024-01-01", end="2024-02-01", fetch=again)
    assert df.height == 20 and again.calls == []


def test_offline_gives_up_at_once_with_one_sentence(_isolated: list[float]) -> None:
    # No DNS: retrying in a few seconds cannot help, so the first failure is the answer.
    fetch = FakeFetch(error=ConnectionError("Could not resolve host"), fail_times=99)
    with pytest.raises(SourceError) as err:
        load_bars("AAPL", source="yahoo", start="2024-01-01", end="2024-02-01", fetch=fetch)
    assert not isinstance(err.value, BarsError)
    msg = str(err.value)
    assert "could not be reached" in msg and "source='sample'" in msg  # the API argument
    assert msg.count(". ") == 0 and "\n" not in msg  # one sentence
    assert len(fetch.calls) == 1 and _isolated == []  # no retry, no wait


@pytest.mark.parametrize("error", [
    OSError("[Errno -3] Temporary failure in name resolution"),
    ConnectionError("Failed to perform, curl: (7) Couldn't connect to server"),
    ConnectionRefusedError(111, "Connection refused"),
])
def test_every_offline_symptom_is_one_try(error: Exception, _isolated: list[float]) -> None:
    fetch = FakeFetch(error=error, fail_times=99)
    with pytest.raises(YahooUnreachable):
        fetch_with_retry(fetch, ["AAPL"], interval="1d", start=None, end=None)
    assert len(fetch.calls) == 1 and _isolated == []


def test_a_slow_network_is_retried_with_backoff(_isolated: list[float]) -> None:
    fetch = FakeFetch(error=TimeoutError("read timed out"), fail_times=99)
    with pytest.raises(SourceError, match="could not be reached"):
        load_bars("AAPL", source="yahoo", start="2024-01-01", end="2024-02-01", fetch=fetch)
    assert len(fetch.calls) == 4  # first try + 3 retries
    assert _isolated == [0.5, 1.0, 2.0]  # exponential backoff


def test_auto_offline_falls_back_to_the_sample_after_one_try(_isolated: list[float]) -> None:
    fetch = FakeFetch(error=ConnectionError("Could not resolve host"), fail_times=99)
    df = load_bars("IBM", source="auto", start="2012-01-01", fetch=fetch)
    assert df["symbol"].unique().to_list() == ["IBM"] and df.height > 200
    assert len(fetch.calls) == 1 and _isolated == []


def test_transient_error_then_success() -> None:
    fetch = FakeFetch(recorded("single_daily"), error=TimeoutError("read timed out"),
                      fail_times=2)
    df = load_bars("AAPL", source="yahoo", start="2024-01-01", end="2024-02-01", fetch=fetch)
    assert df.height == 20 and len(fetch.calls) == 3


def test_non_network_error_is_not_retried() -> None:
    fetch = FakeFetch(error=KeyError("chart"), fail_times=99)
    with pytest.raises(SourceError, match="failed unexpectedly"):
        fetch_with_retry(fetch, ["AAPL"], interval="1d", start=None, end=None,
                         sleep=lambda s: None)
    assert len(fetch.calls) == 1


# ------------------------------------------------------------------ default fetch classification


def _fake_yf(monkeypatch: pytest.MonkeyPatch, frame: Any, lines: list[str]) -> None:
    import yfinance

    # yfinance.download itself is replaced below, so lifting offline mode opens no socket.
    monkeypatch.delenv("CANDLETOK_OFFLINE", raising=False)

    def download(*args: Any, **kwargs: Any) -> Any:
        assert kwargs["auto_adjust"] is True and kwargs["progress"] is False
        log = logging.getLogger("yfinance")
        for line in lines:
            log.error(line)
        return frame.copy()

    monkeypatch.setattr(yfinance, "download", download)


def test_default_fetch_tells_network_from_bad_symbol(monkeypatch: pytest.MonkeyPatch) -> None:
    # What yfinance 1.7 logged with no network (seen on a machine without internet).
    _fake_yf(monkeypatch, recorded("network_down"), [
        "Failed to get ticker 'AAPL' reason: Failed to perform, curl: (6) Could not resolve "
        "host: query2.finance.yahoo.com.",
        "\n1 Failed download:",
        "['AAPL']: DNSError('Failed to perform, curl: (6) Could not resolve host')",
    ])
    with pytest.raises(ConnectionError) as err:
        yf_download(["AAPL"], interval="1d", start=None, end=None)
    assert str(err.value) == "Could not resolve host"

    _fake_yf(monkeypatch, recorded("multi_failed"), [
        "\n1 Failed download:", "['NOPE']: possibly delisted; no timezone found",
    ])
    frame = yf_download(["AAPL", "NOPE"], interval="1d", start=None, end=None)
    assert frame.attrs["candletok_errors"] == {"NOPE": "possibly delisted; no timezone found"}
    with pytest.raises(BarsError) as err:
        load_bars(["AAPL", "NOPE"], source="yahoo", start="2024-01-01", end="2024-02-01")
    assert err.value.rule == "fetch_failed" and "possibly delisted" in str(err.value)


def test_default_fetch_network_becomes_source_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_yf(monkeypatch, recorded("network_down"),
             ["['DOWN1', 'DOWN2']: DNSError('Failed to perform, curl: (6) Could not resolve')"])
    with pytest.raises(SourceError) as err:
        load_bars(["DOWN1", "DOWN2"], source="yahoo", start="2024-01-01", end="2024-02-01")
    assert not isinstance(err.value, BarsError) and "could not be reached" in str(err.value)


# ------------------------------------------------------------------ intraday history limits

NOW = datetime(2025, 6, 16, 15, 0, tzinfo=timezone.utc)


def test_intraday_start_is_clamped_or_refused(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="candletok"):
        s, e = resolve_range("5m", NOW - timedelta(days=200), None, NOW)
    assert NOW - timedelta(days=60) < s < NOW - timedelta(days=58) and e == NOW
    assert "last 60 days" in caplog.text
    s, _ = resolve_range("60m", None, None, NOW)
    assert NOW - timedelta(days=730) < s < NOW - timedelta(days=728)
    with pytest.raises(SourceError, match="only for the last 30 days"):
        resolve_range("1m", datetime(2024, 1, 1, tzinfo=timezone.utc),
                      datetime(2024, 1, 5, tzinfo=timezone.utc), NOW)
    s, _ = resolve_range("1d", None, None, NOW)
    assert s.year == 1930


def test_one_minute_requests_are_chunked() -> None:
    fetch = FakeFetch(recorded("intraday_single"))  # bars outside the range: filtered out
    with pytest.raises(BarsError) as err:
        yahoo.load_yahoo(["SPY5"], interval="1m", start=NOW - timedelta(days=20), end=NOW,
                         fetch=fetch, use_cache=False, now=NOW + timedelta(days=1))
    assert err.value.rule == "empty"
    spans = [c[3] - c[2] for c in fetch.calls]
    assert len(spans) == 3 and all(s <= timedelta(days=7) for s in spans)
    assert fetch.calls[0][2] == NOW - timedelta(days=20) and fetch.calls[-1][3] == NOW


def test_hour_interval_alias_and_unknown_interval() -> None:
    fetch = FakeFetch(recorded("intraday_single"))
    df = yahoo.load_yahoo(["SPY5"], interval="1h", fetch=fetch, use_cache=False, now=NOW)
    assert fetch.calls[0][1] == "1h" and df.height == 12
    with pytest.raises(SourceError, match="Unknown interval"):
        load_bars("AAPL", source="yahoo", interval="4h", fetch=fetch)


def test_unreachable_error_type_and_short_reason() -> None:
    assert issubclass(YahooUnreachable, SourceError)
    line = ("Failed to get ticker 'AAPL' reason: Failed to perform, curl: (6) Could not resolve "
            "host: query2.finance.yahoo.com. See https://curl.se/libcurl/c/libcurl-errors.html "
            "first for more details.")
    assert yahoo.short_reason(line) == "Could not resolve host: query2.finance.yahoo.com"


def test_offline_mode_never_calls_yfinance(monkeypatch: pytest.MonkeyPatch) -> None:
    import yfinance

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("yfinance.download was called in offline mode")

    monkeypatch.setattr(yfinance, "download", forbidden)
    monkeypatch.setenv("CANDLETOK_OFFLINE", "1")
    with pytest.raises(SourceError, match="could not be reached"):
        load_bars(["AAPL"], source="yahoo", start="2024-01-01", end="2024-02-01")


def test_strict_mode_refuses_broken_yahoo_rows_and_caches_nothing(
        caplog: pytest.LogCaptureFixture) -> None:
    frame = recorded("single_daily").copy()
    frame.iloc[3, list(frame.columns).index(("Low", "AAPL"))] = 0.0  # a zero price
    with pytest.raises(BarsError) as err:
        load_bars("AAPL", source="yahoo", start="2024-01-01", end="2024-02-01",
                  fetch=FakeFetch(frame), repair=False)
    assert err.value.rule == "non_positive" and "repair=True" in str(err.value)
    # Nothing was cached, and the default repairs the same frame with a one-line report.
    again = FakeFetch(frame)
    with caplog.at_level(logging.WARNING, logger="candletok"):
        df = load_bars("AAPL", source="yahoo", start="2024-01-01", end="2024-02-01",
                       fetch=again)
    assert len(again.calls) == 1 and df.height == len(frame) - 1
    assert any("prices <= 0" in r.getMessage() for r in caplog.records)
