"""Future bar times from an exchange's calendar (holidays, early closes, sessions), the
weekly grid for 24-hour markets, and ``generate --json`` carrying those times."""

from __future__ import annotations

import itertools
import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from _helpers import TINY_TRAIN_FLAGS
from hypothesis import given, settings
from hypothesis import strategies as st

from candletok.core.errors import TokenizerError
from candletok.tokenize.calendar import CalendarSpec, next_times
from candletok.tokenize.exchange import exchange_for_symbol, future_times, resolve_exchange

UTC = timezone.utc


def _days(us: np.ndarray) -> list[date]:
    return [d.date() for d in pl.Series(us).cast(pl.Datetime("us", "UTC")).to_list()]


def _utc(us: np.ndarray) -> list[datetime]:
    return pl.Series(us).cast(pl.Datetime("us", "UTC")).to_list()


def _aapl_through(last: date) -> pl.Series:
    """AAPL's bundled daily bars (to 2013-03-01), then weekdays up to ``last``."""
    from candletok.data.sample import load_sample

    ts = load_sample(["AAPL"])["ts"]
    more = pl.datetime_range(ts[-1] + timedelta(days=1), datetime(last.year, last.month,
                             last.day, tzinfo=UTC), "1d", eager=True, time_zone="UTC")
    return pl.concat([ts, more.filter(more.dt.weekday() < 6)])


def test_symbols_map_to_their_exchange() -> None:
    assert exchange_for_symbol("AAPL") == "XNYS" and exchange_for_symbol("brk-b") == "XNYS"
    assert exchange_for_symbol("VOD.L") == "XLON" and exchange_for_symbol("SAP.DE") == "XETR"
    assert exchange_for_symbol("7203.T") == "XTKS"
    for fx in ("EURUSD=X", "BTC-USD", "ES=F", "FOO.ZZ"):
        assert exchange_for_symbol(fx) is None  # 24 hours, or not known: the weekly grid
    assert resolve_exchange("VOD.L", "xnys") == "XNYS"
    assert resolve_exchange("AAPL", "none") is None
    with pytest.raises(TokenizerError, match="Unknown exchange calendar 'XQQQ'"):
        resolve_exchange("AAPL", "XQQQ")


def test_aapl_daily_bars_after_2013_03_28_skip_good_friday() -> None:
    ts = _aapl_through(date(2013, 3, 28))
    ex = exchange_for_symbol("AAPL")
    got = future_times(ts, 3, CalendarSpec("UTC"), ex)
    assert got.source == "XNYS sessions" and got.note is None
    assert _days(got.ts) == [date(2013, 4, 1), date(2013, 4, 2), date(2013, 4, 3)]
    assert all(t.hour == 0 and t.minute == 0 for t in _utc(got.ts))  # the series' own time
    # the weekly grid alone puts a bar on the holiday: the defect this fixes
    assert _days(next_times(ts, 1, CalendarSpec("UTC")))[0] == date(2013, 3, 29)
    # New Year's Day 2019 too
    days = pl.datetime_range(datetime(2018, 12, 3, tzinfo=UTC), datetime(2018, 12, 31,
                             tzinfo=UTC), "1d", eager=True, time_zone="UTC")
    days = days.filter((days.dt.weekday() < 6) & (days != datetime(2018, 12, 25, tzinfo=UTC))
                       & (days != datetime(2018, 12, 5, tzinfo=UTC)))
    assert _days(future_times(days, 1, CalendarSpec("UTC"), "XNYS").ts) == [date(2019, 1, 2)]


def _hourly_nyse(first: date, last: date) -> pl.Series:
    """Hourly bars at 09:30 .. 15:30 New York on the weekdays from ``first`` to ``last``."""
    d = pl.date_range(first, last, "1d", eager=True)
    d = d.filter(d.dt.weekday() < 6)
    naive = pl.concat([d.cast(pl.Datetime("us")) + timedelta(hours=9, minutes=30 + 60 * k)
                       for k in range(7)]).sort()
    return naive.dt.replace_time_zone("America/New_York").dt.convert_time_zone("UTC")


def test_intraday_bars_respect_holidays_and_early_closes() -> None:
    ts = _hourly_nyse(date(2013, 11, 4), date(2013, 11, 27))
    got = future_times(ts, 9, CalendarSpec(), "XNYS")
    ny = [t.astimezone(__import__("zoneinfo").ZoneInfo("America/New_York")) for t in
          _utc(got.ts)]
    # Thanksgiving (28th) is closed; the 29th closes at 13:00: bars 09:30 .. 12:30 only
    assert [(t.day, t.hour, t.minute) for t in ny] == (
        [(29, h, 30) for h in (9, 10, 11, 12)] + [(2, h, 30) for h in (9, 10, 11, 12, 13)])


def test_tokyo_lunch_break_is_skipped() -> None:
    d = pl.date_range(date(2019, 3, 4), date(2019, 3, 8), "1d", eager=True)
    naive = pl.concat([d.cast(pl.Datetime("us")) + timedelta(hours=h)
                       for h in (9, 10, 11, 12.5, 13.5, 14.5)]).sort()  # 11:30-12:30 lunch
    ts = naive.dt.replace_time_zone("Asia/Tokyo").dt.convert_time_zone("UTC")
    got = future_times(ts, 6, CalendarSpec("Asia/Tokyo"), "XTKS")
    hm = [t.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Tokyo")).strftime("%H:%M")
          for t in _utc(got.ts)]
    # Friday 14:30 -> Monday: 11:00 opens before the break, 12:30 when it ends
    assert hm == ["09:00", "10:00", "11:00", "12:30", "13:30", "14:30"]
    assert got.note is None


def test_eurusd_hourly_bars_follow_the_24_hour_week() -> None:
    # FX trades Sunday 22:00 to Friday 22:00 UTC, every hour, holidays included
    hours = pl.datetime_range(datetime(2018, 12, 2, 22, tzinfo=UTC),
                              datetime(2018, 12, 28, 21, tzinfo=UTC), "1h", eager=True,
                              time_zone="UTC")
    wd, hr = hours.dt.weekday(), hours.dt.hour()
    ts = hours.filter(~((wd == 6) | ((wd == 5) & (hr >= 22)) | ((wd == 7) & (hr < 22))))
    ex = resolve_exchange("EURUSD=X", "auto")
    assert ex is None
    got = future_times(ts, 30, CalendarSpec("UTC"), ex)
    t = _utc(got.ts)
    assert got.source == "the series' weekly grid"
    assert t[0] == datetime(2018, 12, 30, 22, tzinfo=UTC)  # Friday 21:00 -> Sunday 22:00
    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(t))
    assert datetime(2019, 1, 1, 0, tzinfo=UTC) in t  # FX trades on New Year's Day


def test_bars_after_the_calendars_last_session_fall_back_to_the_grid() -> None:
    import exchange_calendars as xc

    end = xc.get_calendar("XNYS").last_session.date()
    d = pl.date_range(end - timedelta(days=30), end, "1d", eager=True)
    ts = d.filter(d.dt.weekday() < 6).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    got = future_times(ts, 5, CalendarSpec("UTC"), "XNYS")
    assert got.ts.size == 5 and np.all(np.diff(got.ts) > 0)
    assert got.note is not None and "calendar ends" in got.note


def test_weekly_bars_keep_the_grid_with_a_note() -> None:
    ts = pl.datetime_range(datetime(2013, 1, 7, tzinfo=UTC), datetime(2013, 3, 25,
                           tzinfo=UTC), "1w", eager=True, time_zone="UTC")
    got = future_times(ts, 2, CalendarSpec("UTC"), "XNYS")
    assert got.note is not None and _days(got.ts) == [date(2013, 4, 1), date(2013, 4, 8)]


@settings(max_examples=25, deadline=None)
@given(st.dates(date(2008, 1, 7), date(2025, 6, 1)), st.integers(1, 40))
def test_daily_future_bars_are_sessions_in_order(last: date, n: int) -> None:
    import exchange_calendars as xc

    d = pl.date_range(last - timedelta(days=40), last, "1d", eager=True)
    ts = d.filter(d.dt.weekday() < 6).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    got = future_times(ts, n, CalendarSpec("UTC"), "XNYS")
    days = _days(got.ts)
    assert len(days) == n and days[0] > ts.dt.date()[-1]
    assert all(a < b for a, b in itertools.pairwise(days))
    sessions = set(xc.get_calendar("XNYS", start="2007-01-01").sessions.date)
    assert all(x in sessions for x in days)


def test_generate_json_prints_the_future_bars_times_and_the_fan(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from candletok.cli import cmd_model  # noqa: F401
    from candletok.cli.app import app
    from candletok.dataset.build import build_dataset

    ds = tmp_path / "ds"
    build_dataset(["AAPL"], ds, scheme="bins", source="sample",
                  tokenizer_kwargs=dict(gap_bins=3, body_bins=3, upper_bins=2, lower_bins=2))
    run = CliRunner().invoke
    m = str(tmp_path / "m.pt")
    r = run(app, ["train", str(ds), *TINY_TRAIN_FLAGS, "--out", m])
    assert r.exit_code == 0, r.output
    r = run(app, ["generate", "--model", m, "--dataset", str(ds), "--symbol", "AAPL",
                  "--n", "21", "--samples", "16", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["symbol"] == "AAPL" and doc["interval"] == "1d"
    assert doc["last_ts"].startswith("2013-03-01") and doc["times_from"] == "XNYS sessions"
    times = [datetime.fromisoformat(b["ts"]) for b in doc["bars"]]
    assert len(times) == 21 and all(t.utcoffset() == timedelta(0) for t in times)
    days = [t.date() for t in times]
    assert date(2013, 3, 28) in days and date(2013, 3, 29) not in days  # Good Friday
    assert days[-2:] == [date(2013, 4, 1), date(2013, 4, 2)]
    for b in doc["bars"]:
        assert b["close_q10"] <= b["close_q50"] <= b["close_q90"]
    assert len(doc["sample_paths"]) == 3 and len(doc["sample_paths"][0]["close"]) == 21
    r = run(app, ["generate", "--model", m, "--dataset", str(ds), "--symbol", "AAPL",
                  "--n", "2", "--samples", "2", "--calendar-exchange", "none", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["times_from"] == "the series' weekly grid"
    r = run(app, ["generate", "--model", m, "--dataset", str(ds), "--symbol", "AAPL",
                  "--calendar-exchange", "NOPE"])
    assert r.exit_code != 0 and "Unknown exchange calendar" in str(r.exception or r.output)


def test_evaluate_sampled_bars_read_the_exchange_sessions() -> None:
    """evaluate's CandleGPT paths (gptcast) get the ids of the exchange's next sessions:
    AAPL's bar after 2013-03-28 is Monday 2013-04-01, EUR/USD's keeps the weekly grid."""
    from types import SimpleNamespace

    from candletok.evaluation.gptcast import GPTForecaster
    from candletok.tokenize.calendar import calendar_ids

    spec = CalendarSpec("UTC")
    aapl = _aapl_through(date(2013, 3, 28)).dt.epoch("us").to_numpy()
    fx = aapl + 0  # the same dates under an FX symbol: no exchange, the grid
    hist = SimpleNamespace(ts=np.concatenate([aapl, fx]),
                           starts=np.array([0, aapl.size]),
                           series=np.repeat([0, 1], aapl.size),
                           symbols=["AAPL", "EURUSD=X"])
    f = GPTForecaster.__new__(GPTForecaster)
    f.model = SimpleNamespace(calendar=spec, device="cpu")
    f.exchange = "auto"
    ids = f._future_calendar(hist, np.array([aapl.size - 1, 2 * aapl.size - 1]), 1).numpy()
    monday = calendar_ids(np.array([int(datetime(2013, 4, 1, tzinfo=UTC).timestamp() * 1e6)]),
                          spec)[0]
    friday = calendar_ids(np.array([int(datetime(2013, 3, 29, tzinfo=UTC).timestamp() * 1e6)]),
                          spec)[0]
    assert (ids[0, 0] == monday).all() and (ids[1, 0] == friday).all()


def test_bars_at_other_hours_keep_the_grid_with_a_note() -> None:
    # EUR/USD-like hourly bars around the clock, but given XNYS: not forced onto its hours
    ts = pl.datetime_range(datetime(2019, 3, 1, tzinfo=UTC), datetime(2019, 3, 8, 12,
                           tzinfo=UTC), "1h", eager=True, time_zone="UTC")
    got = future_times(ts, 3, CalendarSpec("UTC"), "XNYS")
    assert got.note is not None and "outside XNYS's sessions" in got.note
    assert _utc(got.ts)[0] == datetime(2019, 3, 8, 13, tzinfo=UTC)


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(["XNYS", "XLON", "XTKS"]), st.dates(date(2010, 1, 4), date(2025, 6, 1)),
       st.integers(1, 30), st.sampled_from([30, 60]))
def test_intraday_future_bars_lie_inside_sessions(code: str, day: date, n: int,
                                                  minutes: int) -> None:
    """Every future intraday bar opens inside a session, outside its break, on the grid of
    ``minutes`` from the session's (or the break end's) open, after the history's last bar."""
    import exchange_calendars as xc

    from candletok.tokenize.exchange import _us

    cal = xc.get_calendar(code, start=str(day - timedelta(days=10)))
    s = cal.schedule.loc[str(day - timedelta(days=7)):str(day)]
    if s.empty:
        return
    step = minutes * 60_000_000
    opens, closes = _us(s["open"]), _us(s["close"])
    b0, b1 = _us(s["break_start"]), _us(s["break_end"])
    grid = []
    for o, c, bs, be in zip(opens, closes, b0, b1, strict=True):
        segs = [(o, c)] if bs == np.iinfo(np.int64).min else [(o, bs), (be, c)]
        for a, b in segs:
            grid.extend(range(int(a), int(b), step))
    ts = np.array(grid, dtype=np.int64)
    got = future_times(ts, n, CalendarSpec("UTC"), code)
    assert got.note is None and got.ts.size == n and got.ts[0] > ts[-1]
    assert np.all(np.diff(got.ts) > 0)
    ao, ac = _us(cal.opens), _us(cal.closes)
    a0, a1 = _us(cal.break_starts), _us(cal.break_ends)
    j = np.searchsorted(ao, got.ts, side="right") - 1
    assert np.all(got.ts < ac[j])  # inside the session that opened last
    brk = a0[j] != np.iinfo(np.int64).min
    assert not np.any(brk & (got.ts >= a0[j]) & (got.ts < a1[j]))
    start = np.where(brk & (got.ts >= a1[j]), a1[j], ao[j])
    assert np.all((got.ts - start) % step == 0)
