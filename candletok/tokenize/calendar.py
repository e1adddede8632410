"""Calendar inputs: where a candle sits in its day, week and year, from its own timestamp.

Intraday volatility is U-shaped across a session and Mondays differ from Fridays; a model
that sees only tokens cannot tell 10:00 from 15:00. These ids are a pure function of each
candle's own open time in a given time zone (the exchange's), so they are causal by
construction and one timestamp always gives the same ids, whatever else is in the frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from candletok.core.errors import TokenizerError

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

    def to_dict(self) -> dict[str, object]:
        return {"tz": self.tz, "fields": list(self.fields), "sizes": list(self.sizes)}


def calendar_ids(ts: pl.Series, spec: CalendarSpec | None = None) -> np.ndarray:
    """(n, 3) int64 ids of each timestamp: minute-of-day bucket, weekday, month, all in
    ``spec.tz`` local time (so 09:30 New York is the same id in winter and summer, across
    a daylight-saving change). ``ts`` is an aware ``Datetime`` series (canonical bars are
    UTC)."""
    spec = spec or CalendarSpec()
    if not isinstance(ts.dtype, pl.Datetime) or ts.dtype.time_zone is None:
        raise TokenizerError("calendar_ids needs timezone-aware timestamps (canonical bars).")
    try:
        local = ts.dt.convert_time_zone(spec.tz)
    except Exception as exc:  # polars raises ComputeError for an unknown zone
        raise TokenizerError(f"Unknown time zone {spec.tz!r}; use an IANA name such as "
                             "America/New_York or Europe/London.") from exc
    minute = (local.dt.hour().cast(pl.Int64) * 60 + local.dt.minute().cast(pl.Int64))
    return np.stack([
        (minute // MINUTE_BUCKET).to_numpy(),
        (local.dt.weekday().cast(pl.Int64) - 1).to_numpy(),
        (local.dt.month().cast(pl.Int64) - 1).to_numpy(),
    ], axis=1).astype(np.int64)
