"""Calendar inputs: where a candle sits in its day, week and year, from its own timestamp.

Intraday volatility is U-shaped across a session and Mondays differ from Fridays; a model
that sees only tokens cannot tell 10:00 from 15:00. These ids are a pure function of each
candle's own open time in a given time zone (the exchange's), so they are causal by
construction and one timestamp always gives the same ids, whatever else is in the frame.

Each field also has an *unknown* id, its size (one past its last real id): what a model
reads at a BOS or PAD position, which has no timestamp. :func:`calendar_layout` lays the
ids out like the token arrays (one BOS before each series), and :func:`next_times` gives
the open times of bars that do not exist yet (generation), from a series' own history.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import polars as pl

from candletok.core.errors import TokenizerError
from candletok.core.ids import series_bounds

#: Minutes per time-of-day bucket: 5-minute bars get their own slot, hours 12.
MINUTE_BUCKET = 5


@dataclass(frozen=True)
class CalendarSpec:
    """Which calendar ids a model reads and in which time zone they are computed.

    ``sizes`` are the number of distinct ids of each field (embedding table sizes):
    minute of day in ``MINUTE_BUCKET``-minute buckets, day of week (Monday = 0) and month
    (January = 0)."""

    tz: str = "America/New_York"

    fields: tuple[str, ...] = ("minute_of_day", "day_of_week", "month")

    @property
    def sizes(self) -> tuple[int, ...]:
        return (24 * 60 // MINUTE_BUCKET, 7, 12)

    @property
    def unknown(self) -> np.ndarray:
        """(n_fields,) the unknown id of each field (BOS and PAD positions): its size."""
        return np.asarray(self.sizes, dtype=np.int64)

    def to_dict(self) -> dict[str, object]:
        return {"tz": self.tz, "fields": list(self.fields), "sizes": list(self.sizes)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CalendarSpec:
        """The spec :meth:`to_dict` wrote; refused when its fields or sizes are not the
        ones this version computes (the embedding tables would not fit the ids)."""
        spec = cls(tz=str(d.get("tz", cls.tz)))
        if (list(d.get("fields", spec.fields)) != list(spec.fields)
                or list(d.get("sizes", spec.sizes)) != list(spec.sizes)):
            raise TokenizerError(f"Calendar fields {d.get('fields')} with sizes "
                                 f"{d.get('sizes')} are not this version's "
                                 f"({list(spec.fields)}, {list(spec.sizes)}); the model is "
                                 "from another candletok version.")
        return spec


def _aware(ts: pl.Series | np.ndarray) -> pl.Series:
    """``ts`` as an aware Datetime series: numpy input is int64 microseconds UTC (how
    :class:`~candletok.evaluation.history.History` and the search index hold times)."""
    if isinstance(ts, np.ndarray):
        return pl.Series("ts", ts.astype(np.int64)).cast(pl.Datetime("us", "UTC"))
    return ts


def _local(ts: pl.Series, spec: CalendarSpec) -> pl.Series:
    """Aware ``ts`` as wall-clock time in ``spec.tz``."""
    if not isinstance(ts.dtype, pl.Datetime) or ts.dtype.time_zone is None:
        raise TokenizerError("calendar_ids needs timezone-aware timestamps (canonical bars).")
    try:
        return ts.dt.convert_time_zone(spec.tz)
    except Exception as exc:  # polars raises ComputeError for an unknown zone
        raise TokenizerError(f"Unknown time zone {spec.tz!r}; use an IANA name such as "
                             "America/New_York or Europe/London.") from exc


def calendar_ids(ts: pl.Series | np.ndarray, spec: CalendarSpec | None = None) -> np.ndarray:
    """(n, 3) int64 ids of each timestamp: minute-of-day bucket, weekday, month, all in
    ``spec.tz`` local time (so 09:30 New York is the same id in winter and summer, across
    a daylight-saving change). ``ts`` is an aware ``Datetime`` series (canonical bars are
    UTC) or an int64 array of microseconds UTC."""
    spec = spec or CalendarSpec()
    if isinstance(ts, np.ndarray) and spec.tz == "UTC":
        return _utc_ids(ts.astype(np.int64))
    if isinstance(ts, np.ndarray) and ts.size <= FEW:
        return _few_ids(ts.astype(np.int64), spec.tz)
    local = _local(_aware(ts), spec)
    minute = (local.dt.hour().cast(pl.Int64) * 60 + local.dt.minute().cast(pl.Int64))
    return np.stack([
        (minute // MINUTE_BUCKET).to_numpy(),
        (local.dt.weekday().cast(pl.Int64) - 1).to_numpy(),
        (local.dt.month().cast(pl.Int64) - 1).to_numpy(),
    ], axis=1).astype(np.int64)


#: Up to this many int64 times are converted one by one with :mod:`zoneinfo` (a live update
#: asks for one: Polars' time-zone conversion costs milliseconds of overhead per call).
FEW = 16
_MIN_US, _DAY_US = 60_000_000, 86_400_000_000


def _utc_ids(us: np.ndarray) -> np.ndarray:
    """:func:`calendar_ids` in UTC by integer arithmetic (1970-01-01 was a Thursday)."""
    minute = (us // _MIN_US) % (24 * 60)
    day = us // _DAY_US
    month = us.astype("datetime64[us]").astype("datetime64[M]").astype(np.int64) % 12
    return np.stack([minute // MINUTE_BUCKET, (day + 3) % 7, month], axis=1).astype(np.int64)


def _few_ids(us: np.ndarray, tz: str) -> np.ndarray:
    """:func:`calendar_ids` of a few times through :mod:`zoneinfo` (the same IANA rules
    Polars reads; a test checks the two agree across daylight-saving changes)."""
    from datetime import datetime, timedelta, timezone
    from zoneinfo import ZoneInfo

    try:
        zone = ZoneInfo(tz)
    except Exception as exc:
        raise TokenizerError(f"Unknown time zone {tz!r}; use an IANA name such as "
                             "America/New_York or Europe/London.") from exc
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    out = np.empty((us.size, 3), dtype=np.int64)
    for k, u in enumerate(us.tolist()):  # at most FEW
        t = (epoch + timedelta(microseconds=u)).astimezone(zone)
        out[k] = ((t.hour * 60 + t.minute) // MINUTE_BUCKET, t.weekday(), t.month - 1)
    return out


def calendar_layout(ts: pl.Series | np.ndarray, lengths: np.ndarray,
                    spec: CalendarSpec) -> np.ndarray:
    """(n_tokens, 3) int16 ids laid out like the token arrays
    (:func:`candletok.core.ids.with_bos`): ``ts`` holds the series back to back and
    ``lengths`` their sizes; each series' BOS gets the unknown ids. int16 because the
    largest table has 289 rows and a split's ids stay in memory beside its tokens."""
    ids = calendar_ids(ts, spec)
    lens = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if int(lens.sum()) != ids.shape[0]:
        raise TokenizerError(f"{ids.shape[0]} timestamps but the series lengths add up to "
                             f"{int(lens.sum())}.")
    bounds = series_bounds(lens)
    out = np.empty((int(bounds[-1, 1]) if lens.size else 0, ids.shape[1]), dtype=np.int16)
    out[:] = spec.unknown
    real = np.ones(out.shape[0], bool)
    real[bounds[:, 0]] = False
    out[real] = ids
    return out


#: Bars of history :func:`next_times` reads: enough to see every slot of a week of
#: 5-minute bars, few enough to follow a changed schedule.
NEXT_TIMES_LOOKBACK = 1000
_WEEK = 7 * 24 * 60  # minutes
_MONDAY = 4 * 24 * 60  # 1970-01-05, a Monday, in minutes since the epoch


def next_times(ts: pl.Series | np.ndarray, n: int,
               spec: CalendarSpec | None = None) -> np.ndarray:
    """Open times (int64 microseconds UTC) of the ``n`` bars after the last of ``ts``, a
    series' own history (oldest first), for generating bars that do not exist yet.

    Causal: only ``ts`` (its last :data:`NEXT_TIMES_LOOKBACK` bars) is read. The rule
    repeats the series' observed weekly grid in ``spec.tz`` wall time: the set of
    (weekday, time of day) slots it has bars at; each next bar is the first slot at
    least one typical step (the median gap) after the previous one. So hourly session
    bars step 10:30 -> 11:30 and Friday 15:30 -> Monday 09:30, daily bars skip weekends,
    and 24/7 bars step evenly. Holidays are not known: a weekday slot is always open."""
    spec = spec or CalendarSpec()
    local = _local(_aware(ts), spec)[-NEXT_TIMES_LOOKBACK:]
    if local.len() == 0:
        raise TokenizerError("next_times needs at least one timestamp of history.")
    minutes = local.dt.replace_time_zone(None).dt.epoch("s").to_numpy() // 60
    gaps = np.diff(minutes)
    gaps = gaps[gaps > 0]
    step = int(np.median(gaps)) if gaps.size else 24 * 60
    slots = np.unique((minutes - _MONDAY) % _WEEK)
    out = np.empty(int(n), dtype=np.int64)
    t = int(minutes[-1])
    for i in range(out.size):  # n is a few bars: a loop is clearer than a closed form
        week, m = divmod(t + step - _MONDAY, _WEEK)
        j = int(np.searchsorted(slots, m))
        t = _MONDAY + (week * _WEEK + int(slots[j]) if j < slots.size
                       else (week + 1) * _WEEK + int(slots[0]))
        out[i] = t
    return _wall_to_utc_us(out, spec.tz)


def _wall_to_utc_us(minutes: np.ndarray, tz: str) -> np.ndarray:
    """Wall-clock minutes in ``tz`` -> int64 microseconds UTC. A time the clocks skip
    (spring forward) is read an hour later; a repeated one (fall back) as the first."""
    naive = pl.Series("ts", minutes * 60_000_000).cast(pl.Datetime("us"))
    kw: dict[str, Any] = {"ambiguous": "earliest", "non_existent": "null"}
    aware = naive.dt.replace_time_zone(tz, **kw)
    later = (naive + timedelta(hours=1)).dt.replace_time_zone(tz, **kw)
    return aware.fill_null(later).dt.epoch("us").to_numpy().astype(np.int64)
