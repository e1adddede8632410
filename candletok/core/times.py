"""Bar intervals and user-supplied times: one parser for each, shared by every source,
the generator, the dataset split and the model's interval check."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

import numpy as np

from candletok.core.errors import SourceError

#: Supported bar intervals and their length. ``1mo`` is nominal (30 days) and only used
#: for sizing; calendars for it are built month by month.
INTERVALS: dict[str, timedelta] = {
    "1m": timedelta(minutes=1),
    "2m": timedelta(minutes=2),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "30m": timedelta(minutes=30),
    "60m": timedelta(minutes=60),
    "90m": timedelta(minutes=90),
    "1d": timedelta(days=1),
    "1wk": timedelta(days=7),
    "1mo": timedelta(days=30),
}
_INTERVAL_ALIASES = {"1h": "60m", "1wk": "1wk", "1w": "1wk", "1mo": "1mo", "1mth": "1mo"}


def normalize_interval(interval: str) -> str:
    """The canonical spelling of ``interval`` (``1h`` -> ``60m``); a clear error if unknown."""
    key = str(interval).strip().lower()
    key = _INTERVAL_ALIASES.get(key, key)
    if key not in INTERVALS:
        raise SourceError(
            f"Unknown interval {interval!r}; use one of 1m 2m 5m 15m 30m 60m/1h 90m 1d 1wk 1mo."
        )
    return key


def interval_delta(interval: str) -> timedelta:
    """The length of one bar of ``interval`` (see :data:`INTERVALS`)."""
    return INTERVALS[normalize_interval(interval)]


def parse_time(value: str | date | datetime | None, name: str = "date") -> datetime | None:
    """A user-supplied ``str``/``date``/``datetime`` as an aware UTC datetime (naive = UTC).

    ``name`` is the argument's name, used in the error message."""
    if value is None:
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    else:
        text = str(value).strip()
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise SourceError(
                f"Could not read {name} {value!r} as a date; use YYYY-MM-DD or an ISO timestamp."
            ) from exc
    if dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def iso(ts: datetime | None) -> str | None:
    """An aware datetime as ISO text in UTC (None stays None): how files record times."""
    return None if ts is None else ts.astimezone(timezone.utc).isoformat()


#: Intraday intervals whose length the spacing of bars is matched to (within 10%).
_INTRADAY = ("1m", "2m", "5m", "15m", "30m", "60m", "90m")
#: Daily-or-longer intervals and the spacings (in days) that count as them: a trading
#: calendar's usual step is exact, but a DST shift, a broker's odd close time or a month's
#: length move it a little.
_LONG = (("1d", 0.75, 4.0), ("1wk", 5.0, 9.0), ("1mo", 26.0, 33.0))


#: At most this many steps are counted to find the most common one.
_MODE_SAMPLE = 1_000_000


def _to_microseconds(ts: Any) -> np.ndarray:
    """Timestamps as int64 microseconds: numpy datetime64 or int64 (taken as µs), or a
    Polars datetime Series (duck-typed, so this module needs no Polars)."""
    if hasattr(ts, "dt") and hasattr(ts, "to_numpy"):
        return np.asarray(ts.dt.epoch("us").to_numpy(), dtype=np.int64)
    arr = np.asarray(ts)
    if arr.dtype.kind == "M":
        return arr.astype("datetime64[us]").astype(np.int64)
    return arr.astype(np.int64)


def bar_spacings(ts: Any, groups: Any = None) -> np.ndarray:
    """The steps (µs, > 0) between consecutive bars of each series: ``ts`` sorted within
    each group, ``groups`` (e.g. the symbol column) marking where a new series starts, so
    the jump from one symbol's last bar to the next one's first never counts."""
    t = _to_microseconds(ts)
    step = np.diff(t)
    if groups is not None:
        g = groups.to_numpy() if hasattr(groups, "to_numpy") else np.asarray(groups)
        step = step[g[1:] == g[:-1]]
    return step[step > 0]


def interval_of_spacings(steps: np.ndarray) -> str | None:
    """The interval whose bars are spaced like ``steps`` (µs), None when there are none.

    Why the most common step and not the mean: sessions, nights, weekends and holidays
    only ever add longer steps (hourly US-session bars step 1h six times a day and 17.5h
    once), so the step the bars take most often is the bar length. Steps are rounded to
    the second first, so sub-second jitter in exported times does not split the count. A
    step that matches no supported interval is a :class:`SourceError`."""
    if steps.size == 0:
        return None
    if steps.size > _MODE_SAMPLE:  # a systematic sample finds the same mode, sorted cheaply
        steps = steps[:: -(-steps.size // _MODE_SAMPLE)]
    secs, counts = np.unique(np.rint(steps / 1e6).astype(np.int64), return_counts=True)
    step = float(secs[np.argmax(counts)])
    minutes, days = step / 60.0, step / 86400.0
    for name in _INTRADAY:
        length = INTERVALS[name].total_seconds() / 60.0
        if abs(minutes - length) <= 0.1 * length:
            return name
    for name, lo, hi in _LONG:
        if lo <= days <= hi:
            return name
    shown = f"{days:g} days" if days >= 1 else (
        f"{minutes / 60:g}h" if minutes >= 60 else f"{minutes:g} minutes")
    raise SourceError(
        f"The bars are mostly {shown} apart, which is none of the supported intervals "
        "1m 2m 5m 15m 30m 60m/1h 90m 1d 1wk 1mo; resample them to one of those."
    )


def infer_interval(ts: Any, groups: Any = None) -> str:
    """The bar interval of timestamps ``ts``, in canonical spelling (``1d``, ``60m`` for
    hourly, ``5m``, ``1wk``...; compare with :func:`normalize_interval`).

    ``ts``: numpy datetime64/int64-µs values or a Polars datetime Series, sorted within
    each series; ``groups`` (optional, same length) the series each bar belongs to (the
    symbol column), or pass a bars frame as ``ts`` (its ``ts`` and ``symbol`` columns).
    Why: files and downloads carry their own spacing, and a dataset or model labelled
    with another interval silently mixes hourly FX with daily index bars. Raises a
    :class:`SourceError` when no series has two bars or the spacing is no interval."""
    if hasattr(ts, "columns") and "ts" in ts.columns:
        groups = ts["symbol"] if "symbol" in ts.columns else None
        ts = ts["ts"]
    found = interval_of_spacings(bar_spacings(ts, groups))
    if found is None:
        raise SourceError("The interval of the bars cannot be told: no symbol has two bars; "
                          "pass the interval.")
    return found


class IntervalError(SourceError):
    """An asked interval that contradicts the bars: a fault of the whole command, never of
    one symbol (so a build stops at it rather than skipping every symbol). ``asked``,
    ``found`` and ``what`` let a caller that asked on the user's behalf (a model's own
    interval) say it in its own words."""

    def __init__(self, message: str, asked: str = "", found: str = "", what: str = "") -> None:
        super().__init__(message)
        self.asked, self.found, self.what = asked, found, what


def check_interval(asked: str | None, found: str | None, what: str) -> str | None:
    """``found`` (the data's interval) when ``asked`` is None or agrees with it; a
    one-sentence :class:`IntervalError` when they contradict. ``what`` names the bars."""
    if asked is None or found is None:
        return found if asked is None else normalize_interval(asked)
    if normalize_interval(asked) != found:
        raise IntervalError(
            f"interval={asked!r} contradicts {what}: its bars are {found} bars; drop "
            f"interval= to take them as they are, or pass interval='{found}'.",
            asked=normalize_interval(asked), found=found, what=what,
        )
    return found
