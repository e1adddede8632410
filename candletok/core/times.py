"""Bar intervals and user-supplied times: one parser for each, shared by every source,
the generator, the dataset split and the model's interval check."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

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
