"""Calendar ids: by hand across a daylight-saving change, and causal by construction."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from candletok.core.errors import TokenizerError
from candletok.tokenize.calendar import (
    MINUTE_BUCKET,
    CalendarSpec,
    calendar_ids,
    calendar_layout,
    next_times,
)


def _utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=timezone.utc)


def test_session_open_is_the_same_id_across_a_dst_change() -> None:
    # US clocks went forward on Sunday 2024-03-10: the 09:30 open is 14:30 UTC on Friday
    # 2024-03-08 and 13:30 UTC on Monday 2024-03-11.
    ts = pl.Series("ts", [_utc(2024, 3, 8, 14, 30), _utc(2024, 3, 11, 13, 30),
                          _utc(2024, 3, 11, 19, 55)]).cast(pl.Datetime("us", "UTC"))
    ids = calendar_ids(ts, CalendarSpec("America/New_York"))
    open_id = (9 * 60 + 30) // MINUTE_BUCKET
    assert ids[:, 0].tolist() == [open_id, open_id, (15 * 60 + 55) // MINUTE_BUCKET]
    assert ids[:, 1].tolist() == [4, 0, 0]  # Friday, Monday, Monday
    assert ids[:, 2].tolist() == [2, 2, 2]  # March
    # In UTC the two opens differ by an hour: the zone is what makes them one id.
    utc_ids = calendar_ids(ts, CalendarSpec("UTC"))
    assert utc_ids[0, 0] - utc_ids[1, 0] == 60 // MINUTE_BUCKET


def test_ids_fit_their_tables_and_bad_input_is_one_sentence() -> None:
    spec = CalendarSpec()
    ts = pl.datetime_range(_utc(2024, 1, 1), _utc(2024, 12, 31), interval="7h",
                           eager=True, time_zone="UTC")
    ids = calendar_ids(ts, spec)
    assert (ids >= 0).all() and (ids < np.array(spec.sizes)[None, :]).all()
    with pytest.raises(TokenizerError, match="time zone"):
        calendar_ids(ts, CalendarSpec("Mars/Olympus"))
    with pytest.raises(TokenizerError, match="timezone-aware"):
        calendar_ids(ts.dt.replace_time_zone(None), spec)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 2_000_000_000), min_size=2, max_size=30), st.integers(0, 28))
def test_each_id_depends_only_on_its_own_timestamp(secs: list[int], k: int) -> None:
    """Causal by construction: changing later timestamps never changes an earlier id."""
    us = np.array(sorted(secs), dtype=np.int64) * 1_000_000
    ts = pl.Series("ts", us).cast(pl.Datetime("us", "UTC"))
    k = min(k, ts.len() - 1)
    ids = calendar_ids(ts)
    later = us.copy()
    later[k:] += 3 * 86_400 * 1_000_000 + 17 * 60 * 1_000_000
    other = pl.Series("ts", later).cast(pl.Datetime("us", "UTC"))
    assert np.array_equal(calendar_ids(other)[:k], ids[:k])


def _us(*a: int) -> int:
    return int(_utc(*a).timestamp() * 1_000_000)


def test_layout_puts_the_unknown_ids_at_each_bos() -> None:
    spec = CalendarSpec()
    ts = pl.Series("ts", [_utc(2024, 1, 2, 14, 30), _utc(2024, 1, 2, 15, 30),
                          _utc(2024, 1, 3, 14, 30)]).cast(pl.Datetime("us", "UTC"))
    flat = calendar_layout(ts, np.array([2, 1]), spec)  # two series: BOS a a BOS b
    ids = calendar_ids(ts, spec)
    assert flat.shape == (5, 3)
    assert (flat[[0, 3]] == spec.unknown).all()
    assert np.array_equal(flat[[1, 2, 4]], ids)
    assert (spec.unknown == np.array(spec.sizes)).all()  # one past every real id
    with pytest.raises(TokenizerError, match="lengths"):
        calendar_layout(ts, np.array([2, 2]), spec)
    assert CalendarSpec.from_dict(CalendarSpec("UTC").to_dict()) == CalendarSpec("UTC")
    with pytest.raises(TokenizerError, match="another candletok version"):
        CalendarSpec.from_dict({"tz": "UTC", "fields": ["hour"], "sizes": [24]})


def _session_hours(first: datetime, days: int) -> np.ndarray:
    """Open times (us UTC) of hourly bars 09:30-15:30 New York on ``days`` weekdays."""
    out = []
    day = first
    while len(out) < 7 * days:
        if day.weekday() < 5:
            local = pl.datetime_range(day.replace(hour=9, minute=30),
                                      day.replace(hour=15, minute=30), "1h", eager=True,
                                      time_zone="America/New_York")
            out.extend(local.dt.epoch("us").to_list())
        day = day + timedelta(days=1)
    return np.array(out, dtype=np.int64)


def test_next_times_repeat_the_session_grid_across_a_dst_change() -> None:
    # History through Friday 2024-03-08 (EST); the next bars are Monday 2024-03-11, after
    # US clocks went forward: 09:30 New York is then 13:30 UTC, not 14:30.
    hist = _session_hours(datetime(2024, 2, 19), 15)
    assert hist[-1] == _us(2024, 3, 8, 20, 30)  # Friday 15:30 EST
    nxt = next_times(hist, 8)
    assert nxt[:7].tolist() == [_us(2024, 3, 11, 13 + k, 30) for k in range(7)]
    assert nxt[7] == _us(2024, 3, 12, 13, 30)  # Tuesday's open
    # mid-session: the next hour
    assert next_times(hist[:-3], 1).tolist() == [_us(2024, 3, 8, 18, 30)]


def test_next_times_of_daily_bars_skip_the_weekend() -> None:
    days = pl.datetime_range(_utc(2024, 1, 1), _utc(2024, 3, 29), "1d", eager=True,
                             time_zone="UTC")
    days = days.filter(days.dt.weekday() <= 5)  # Monday..Friday
    nxt = next_times(days, 3, CalendarSpec("UTC"))  # 2024-03-29 is a Friday
    assert nxt.tolist() == [_us(2024, 4, 1), _us(2024, 4, 2), _us(2024, 4, 3)]
    with pytest.raises(TokenizerError, match="at least one"):
        next_times(np.zeros(0, np.int64), 2)


@settings(max_examples=25, deadline=None)
@given(st.integers(30, 400), st.integers(1, 12))
def test_next_times_step_forward_on_the_observed_grid(k: int, n: int) -> None:
    """Every generated time is later than the one before and falls on a (weekday, time
    of day) slot the history has; the ids they give are ordinary ids."""
    hist = _session_hours(datetime(2024, 1, 2), 60)[:k]
    nxt = next_times(hist, n)
    assert (np.diff(np.concatenate([hist[-1:], nxt])) > 0).all()
    slot = calendar_ids(hist)[:, :2]
    seen = {tuple(r) for r in slot.tolist()}
    assert {tuple(r) for r in calendar_ids(nxt)[:, :2].tolist()} <= seen
