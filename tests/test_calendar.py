"""Calendar ids: by hand across a daylight-saving change, and causal by construction."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from candletok.core.errors import TokenizerError
from candletok.tokenize.calendar import MINUTE_BUCKET, CalendarSpec, calendar_ids


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
