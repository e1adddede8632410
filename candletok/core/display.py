"""How prices and bar times are written where a trader reads them (tables, charts, JSON).

Two facts decide it, both taken from the data rather than assumed: how many decimals the
instrument's prices carry (its observed tick: EUR/USD needs 5 or 6, a stock 2, an index
in points 0 to 2) and whether bars are shorter than a day (then a date alone would show
every hourly candle as the same day).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from candletok.core.errors import CandletokError
from candletok.core.fallback import say_fallback
from candletok.core.times import interval_delta

log = logging.getLogger(__name__)

#: Relative error a price may carry and still count as lying on a d-decimal grid: above
#: float32 rounding (2**-24, about 6e-8: many feeds store prices as float32), below the
#: eighth significant digit.
TICK_TOLERANCE = 1e-7
#: Significant digits a price is never shown beyond (float32 data holds about 7).
MAX_SIGNIFICANT = 7
MAX_DECIMALS = 10


def price_decimals(prices: Any, max_decimals: int = MAX_DECIMALS) -> int:
    """The fewest decimals that write every finite positive price in ``prices`` exactly
    (to within float rounding): the instrument's tick as the data shows it. Data on no
    grid (adjusted or synthetic prices) get what ``MAX_SIGNIFICANT`` significant digits
    of the smallest price need. Vectorized: one pass over the prices per candidate digit
    (at most ``max_decimals + 1`` passes), no loop over prices."""
    x = np.abs(np.asarray(prices, dtype=np.float64).ravel())
    x = x[np.isfinite(x) & (x > 0)]
    if x.size == 0:
        return 2
    cap = MAX_SIGNIFICANT - 1 - int(np.floor(np.log10(x.min())))
    cap = int(min(max(cap, 0), max_decimals))
    for d in range(cap + 1):
        scaled = x * 10.0**d
        if bool((np.abs(scaled - np.rint(scaled)) <= TICK_TOLERANCE * scaled).all()):
            return d
    return cap


def format_price(value: float | None, decimals: int) -> str:
    """``value`` with ``decimals`` decimals ("-" when missing or not finite)."""
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value:,.{decimals}f}"


def significant(value: float | None, digits: int = 3) -> str:
    """``value`` with the ``digits`` significant digits it needs ("-" when missing or not
    finite): a distance of 0.0003 reads 0.000300, not 0.00, and one of 5.4712 reads 5.47.
    Values of 10**digits and more are written whole (1,234), never in e-notation; values
    below 0.0001 in it (3.00e-07)."""
    if value is None or not np.isfinite(value):
        return "-"
    v = float(value)
    if v == 0.0:
        return "0"
    text = f"{v:#.{digits}g}".rstrip(".")  # '#': 9.40 beside 9.38, not 9.4
    return f"{v:,.0f}" if "e+" in text or abs(v) >= 10.0**digits else text


def round_prices(values: Sequence[float | None], decimals: int) -> list[float | None]:
    """Prices rounded to their tick for JSON (None and NaN stay None)."""
    return [None if v is None or not np.isfinite(v) else round(float(v), decimals)
            for v in values]


def is_intraday(interval: str | None, ts_us: Any = None) -> bool:
    """True when bars are shorter than a day: the interval says so, or a bar time
    (int64 microseconds UTC) is not at midnight UTC (daily bars are stored at 00:00).

    The one home of this rule (the model's calendar asks it too). When neither an
    interval candletok reads nor bar times can tell, the bars are read as daily, and
    that guess is said once as a warning (:func:`~candletok.core.fallback.say_fallback`)."""
    if interval is not None:
        try:
            return interval_delta(interval) < timedelta(days=1) or _off_midnight(ts_us)
        except CandletokError:
            if ts_us is None:
                say_fallback(log, f"the interval {interval!r} is not one candletok reads "
                             "and no bar times tell; the bars are read as daily")
                return False
    elif ts_us is None:
        say_fallback(log, "the bars' interval is unknown and no bar times tell; the bars "
                     "are read as daily")
        return False
    return _off_midnight(ts_us)


def _off_midnight(ts_us: Any) -> bool:
    """Whether any bar time (int64 microseconds UTC) is not at midnight UTC."""
    if ts_us is None:
        return False
    t = np.asarray(ts_us, dtype=np.int64).ravel()
    return bool(t.size and (t % 86_400_000_000 != 0).any())


def time_format(interval: str | None, ts_us: Any = None) -> str:
    """``strftime`` format for bar times: the date, plus hours and minutes (UTC) for
    bars shorter than a day (see :func:`is_intraday`)."""
    return "%Y-%m-%d %H:%M" if is_intraday(interval, ts_us) else "%Y-%m-%d"


def time_text(ts: datetime, interval: str | None) -> str:
    """One bar's time as a trader reads it: the date, plus hours and minutes (UTC) for
    bars shorter than a day (the interval says so, or the time is not at midnight UTC)."""
    t = ts if ts.tzinfo is None else ts.astimezone(timezone.utc).replace(tzinfo=None)
    us = (t - datetime(1970, 1, 1)) // timedelta(microseconds=1)
    return f"{t:{time_format(interval, us)}}"
