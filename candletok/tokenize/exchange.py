"""Open times of bars to come from an exchange's calendar: holidays, early closes, sessions.

:func:`candletok.tokenize.calendar.next_times` repeats a series' own weekly grid, so it
cannot know that 2013-03-29 (Good Friday) or 2019-01-01 are holidays, nor that the day
after Thanksgiving closes at 13:00 New York. Generated bars placed there read the wrong
calendar ids and are drawn at dates that never trade. :func:`future_times` reads the
exchange's sessions instead (``exchange_calendars``), and keeps the weekly grid for
24-hour markets (FX, crypto), for weekly or monthly bars, and for bars after the last
session the calendar knows, saying so in a note.

``exchange_calendars`` (and pandas under it) is imported only when a calendar is read:
``import candletok`` and tokenizing stay light.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import polars as pl

from candletok.core.errors import TokenizerError
from candletok.tokenize.calendar import (
    NEXT_TIMES_LOOKBACK,
    CalendarSpec,
    _aware,
    next_times,
)

#: Yahoo symbol suffix -> ISO 10383 MIC of the exchange calendar it trades on.
YAHOO_SUFFIX_EXCHANGE: dict[str, str] = {
    "L": "XLON", "DE": "XETR", "F": "XFRA", "PA": "XPAR", "AS": "XAMS", "BR": "XBRU",
    "MI": "XMIL", "MC": "XMAD", "SW": "XSWX", "ST": "XSTO", "CO": "XCSE", "OL": "XOSL",
    "HE": "XHEL", "VI": "XWBO", "LS": "XLIS", "IR": "XDUB", "T": "XTKS", "HK": "XHKG",
    "SS": "XSHG", "SZ": "XSHG", "KS": "XKRX", "AX": "XASX", "NZ": "XNZE", "TO": "XTSE",
    "V": "XTSE", "SA": "BVMF", "MX": "XMEX", "JO": "XJSE", "NS": "XBOM", "BO": "XBOM",
    "SI": "XSES", "TW": "XTAI",
}
#: Yahoo index symbols -> the exchange whose sessions they follow.
YAHOO_INDEX_EXCHANGE: dict[str, str] = {
    "^GSPC": "XNYS", "^DJI": "XNYS", "^IXIC": "XNYS", "^RUT": "XNYS", "^NDX": "XNYS",
    "^FTSE": "XLON", "^GDAXI": "XETR", "^N225": "XTKS", "^HSI": "XHKG", "^FCHI": "XPAR",
}
_US_STOCK = re.compile(r"^[A-Z][A-Z0-9]{0,5}(-[A-Z])?$")  # AAPL, BRK-B; not EURUSD=X
_DAY_US = 86_400_000_000
_MIN_US = 60_000_000


def exchange_for_symbol(symbol: str) -> str | None:
    """The exchange calendar (a MIC such as ``"XNYS"``) that a Yahoo-style symbol trades
    on, or None when it trades around the clock or is not known.

    ``.L`` -> XLON, ``.DE`` -> XETR, ``.T`` -> XTKS and the other suffixes of
    :data:`YAHOO_SUFFIX_EXCHANGE`; a bare ticker (``AAPL``, ``BRK-B``) is a US stock
    (XNYS: NYSE and Nasdaq share holidays and hours); FX (``EURUSD=X``), crypto
    (``BTC-USD``), futures (``=F``) and unknown suffixes give None: the series' own
    weekly grid is then the better guess."""
    s = symbol.strip().upper()
    if s in YAHOO_INDEX_EXCHANGE:
        return YAHOO_INDEX_EXCHANGE[s]
    if "=" in s or s.startswith("^") or re.search(r"-(USD|USDT|EUR|BTC)$", s):
        return None
    if "." in s:
        return YAHOO_SUFFIX_EXCHANGE.get(s.rsplit(".", 1)[1])
    return "XNYS" if _US_STOCK.match(s) else None


def resolve_exchange(symbol: str, choice: str | None = "auto") -> str | None:
    """The calendar a command uses for ``symbol``: ``choice`` ``"auto"`` (or None) asks
    :func:`exchange_for_symbol`, ``"none"`` keeps the weekly grid, anything else is an
    exchange code, checked here so that a typo fails before a model is loaded."""
    if choice is None or choice.strip().lower() == "auto":
        return exchange_for_symbol(symbol)
    if choice.strip().lower() == "none":
        return None
    code = choice.strip().upper()
    names = _calendar_names()
    if code not in names:
        near = [n for n in names if n.startswith(code[:2])][:8]
        raise TokenizerError(f"Unknown exchange calendar {choice!r}; use a MIC such as XNYS, "
                             f"XLON or XTKS{' (close: ' + ', '.join(near) + ')' if near else ''}"
                             ", auto, or none for the series' own weekly grid.")
    return code


@lru_cache(maxsize=1)
def _calendar_names() -> frozenset[str]:
    import exchange_calendars as xc

    return frozenset(xc.get_calendar_names(include_aliases=True))


@lru_cache(maxsize=16)
def _calendar(code: str, start_year: int) -> Any:
    """The exchange's calendar from ``start_year`` (cached: building one takes ~0.4 s)."""
    import exchange_calendars as xc

    try:
        return xc.get_calendar(code, start=f"{start_year}-01-01")
    except Exception:  # a start before the calendar's first known year: its default range
        return xc.get_calendar(code)


@dataclass(frozen=True)
class FutureTimes:
    """Open times of the bars to come and where they came from.

    ``ts`` is int64 microseconds UTC; ``source`` names the rule (``"XNYS sessions"`` or
    ``"the series' weekly grid"``); ``note`` says in words why a calendar was not (fully)
    used, or is None."""

    ts: np.ndarray
    source: str
    note: str | None = None


GRID = "the series' weekly grid"


def future_times(ts: pl.Series | np.ndarray, n: int, spec: CalendarSpec | None = None,
                 exchange: str | None = None) -> FutureTimes:
    """Open times of the ``n`` bars after the last of ``ts`` (a series' own history,
    oldest first; an aware Datetime series or int64 microseconds UTC).

    With ``exchange`` (a MIC such as ``"XNYS"``): daily bars land on the exchange's next
    sessions, at the series' own time of day (daily bars are stored at 00:00 UTC per
    date); intraday bars step by the series' bar length from each session's open, stop
    before its close (early closes included) and skip a lunch break. Weekly and monthly
    bars, intraday bars that do not sit on the session's grid, and bars after the
    calendar's last session keep :func:`~candletok.tokenize.calendar.next_times` (the
    weekly grid in ``spec.tz``), with a note. Without ``exchange``: the weekly grid."""
    spec = spec or CalendarSpec()
    if exchange is None:
        return FutureTimes(next_times(ts, n, spec), GRID)
    us = _aware(ts)[-NEXT_TIMES_LOOKBACK:].dt.epoch("us").to_numpy().astype(np.int64)
    if us.size == 0:
        raise TokenizerError("future_times needs at least one timestamp of history.")
    gaps = np.diff(us)
    gaps = gaps[gaps > 0]
    step = int(np.median(gaps)) if gaps.size else _DAY_US
    last = int(us[-1])
    if step >= 4 * _DAY_US:  # weekly or monthly bars: the grid knows their rhythm
        return FutureTimes(next_times(ts, n, spec), GRID,
                           f"{exchange} sessions are used for daily and intraday bars only; "
                           "these bars follow the series' weekly grid.")
    year = int(np.datetime64(last, "us").astype("datetime64[Y]").astype(int)) + 1970 - 1
    year -= year % 10  # one calendar per decade: replays over many origins build few
    cal = _calendar(exchange, year)
    sessions = cal.sessions.to_numpy().astype("datetime64[us]").astype(np.int64)
    if step >= _DAY_US // 2:
        got = _daily(sessions, last, n)
    else:
        off = _outside_sessions(cal, us[-50:])
        if off:
            return FutureTimes(next_times(ts, n, spec), GRID,
                               f"{off} of the last {min(us.size, 50)} bars opened outside "
                               f"{exchange}'s sessions (another market, or extended hours); "
                               "they follow the series' weekly grid.")
        got = _intraday(cal, sessions, last, n, step)
        if got is None:
            return FutureTimes(next_times(ts, n, spec), GRID,
                               f"the bars do not sit on {exchange}'s session grid of "
                               f"{step // _MIN_US}-minute bars; they follow the series' "
                               "weekly grid.")
    if got.size >= n:
        return FutureTimes(got[:n], f"{exchange} sessions")
    history = np.concatenate([us, got])
    rest = next_times(history, n - got.size, spec)
    end = np.datetime64(int(sessions[-1]), "us").astype("datetime64[D]")
    return FutureTimes(np.concatenate([got, rest]), f"{exchange} sessions",
                       f"{exchange}'s calendar ends at {end}; the {n - got.size} bars "
                       "after it follow the series' weekly grid.")


def _daily(sessions: np.ndarray, last: int, n: int) -> np.ndarray:
    """The next ``n`` session dates after the last bar's UTC date, at its time of day."""
    day, tod = divmod(last, _DAY_US)
    i = int(np.searchsorted(sessions, (day + 1) * _DAY_US, side="left"))
    return sessions[i:i + n] + tod


def _intraday(cal: Any, sessions: np.ndarray, last: int, n: int,
              step: int) -> np.ndarray | None:
    """Bar opens after ``last`` within the sessions from the last bar's one on: every
    ``step`` from the session's open up to its close, and, where the session has a lunch
    break, every ``step`` again from the break's end (as Tokyo's 12:30 bar). None when the
    last bar is inside a session but off its grid (the series keeps other hours)."""
    opens, closes = _us(cal.opens), _us(cal.closes)
    b0, b1 = _us(cal.break_starts), _us(cal.break_ends)
    j = max(int(np.searchsorted(opens, last, side="right")) - 1, 0)
    sl = slice(j, j + n + 1)  # every session has at least one bar: n + 1 sessions suffice
    o, c, bs, be = opens[sl], closes[sl], b0[sl], b1[sl]
    if o.size == 0:
        return np.zeros(0, dtype=np.int64)
    brk = bs != _NAT
    # two segments per session, [open, break start) and [break end, close); the second is
    # empty without a break. Interleaved, they stay in time order.
    start = np.stack([o, np.where(brk, be, c)], axis=1).ravel()
    end = np.stack([np.where(brk, bs, c), c], axis=1).ravel()
    inside = (start <= last) & (last < end)
    if inside.any() and (last - start[np.argmax(inside)]) % step:
        return None
    k = int(((end - start + step - 1) // step).max())
    grid = start[:, None] + step * np.arange(max(k, 1), dtype=np.int64)[None, :]
    out = grid[grid < end[:, None]]  # row-major: segments in order, bars in order in each
    return out[out > last]


_NAT = np.iinfo(np.int64).min


def _outside_sessions(cal: Any, us: np.ndarray) -> int:
    """How many of the bar opens ``us`` lie outside every session (open <= t < close) of
    ``cal``: a series that trades at other hours must not be forced onto these sessions."""
    opens, closes = _us(cal.opens), _us(cal.closes)
    j = np.searchsorted(opens, us, side="right") - 1
    inside = (j >= 0) & (us < closes[np.maximum(j, 0)])
    return int((~inside).sum())


def _us(col: Any) -> np.ndarray:
    """A calendar column (pandas, UTC, NaT where none) as int64 microseconds UTC; NaT
    stays the int64 minimum."""
    if getattr(col.dt, "tz", None) is not None:
        col = col.dt.tz_convert(None)
    v = col.to_numpy().astype("datetime64[us]")
    out = v.astype(np.int64)
    out[np.isnat(v)] = _NAT
    return out
