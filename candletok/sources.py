"""Where bars come from: one entry point, :func:`load_bars`, over every source.

Each source ends in the canonical frame checked by ``validate_bars(..., "strict")``, so the
rest of the pipeline never needs to know whether bars came from Yahoo, a file, the bundled
sample or the synthetic generator. Sources that can deliver dirty data (Yahoo, files) run
``repair`` first and log what changed; the sample and the generator are clean by
construction and are only checked.

Time ranges are half-open, ``[start, end)``, like yfinance: ``end="2024-01-31"`` stops
before that day.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import polars as pl

from candletok.bars import repair_bars, validate_bars
from candletok.errors import BarsError, SourceError

log = logging.getLogger("candletok")

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

SOURCES = ("auto", "yahoo", "sample", "synthetic")
SOURCE_HINT = "use --source sample|synthetic|PATH to work offline"

FetchFn = Callable[..., Any]


def normalize_interval(interval: str) -> str:
    """The canonical spelling of ``interval`` (``1h`` -> ``60m``); a clear error if unknown."""
    key = str(interval).strip().lower()
    key = _INTERVAL_ALIASES.get(key, key)
    if key not in INTERVALS:
        raise SourceError(
            f"Unknown interval {interval!r}; use one of 1m 2m 5m 15m 30m 60m/1h 90m 1d 1wk 1mo."
        )
    return key


def is_intraday(interval: str) -> bool:
    """True for minute/hour bars, whose timestamps carry a time of day."""
    return INTERVALS[normalize_interval(interval)] < timedelta(days=1)


def parse_time(value: str | date | datetime | None, name: str = "date") -> datetime | None:
    """A user-supplied ``str``/``date``/``datetime`` as an aware UTC datetime (naive = UTC)."""
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
                f"Could not read --{name} {value!r} as a date; use YYYY-MM-DD or an ISO timestamp."
            ) from exc
    if dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def normalize_symbols(symbols: str | Sequence[str] | None) -> list[str]:
    """Upper-cased, stripped, de-duplicated symbols in the given order.

    A single string may hold several symbols separated by commas or spaces."""
    if symbols is None:
        return []
    if isinstance(symbols, str):
        symbols = symbols.replace(",", " ").split()
    out = [str(s).strip().upper() for s in symbols if str(s).strip()]
    return list(dict.fromkeys(out))


def filter_range(df: pl.DataFrame, start: datetime | None, end: datetime | None) -> pl.DataFrame:
    """Keep bars with ``start <= ts < end`` (either bound optional)."""
    if start is not None:
        df = df.filter(pl.col("ts") >= start)
    if end is not None:
        df = df.filter(pl.col("ts") < end)
    return df


def is_path_source(source: str) -> bool:
    """A source names a path when it exists on disk or ends like a data file."""
    s = str(source)
    low = s.lower()
    if low.endswith((".csv", ".csv.gz", ".parquet", ".pq")):
        return True
    if low in SOURCES:
        return False
    return Path(s).expanduser().exists()


def finish(
    df: pl.DataFrame, *, repair: bool, what: str, start: datetime | None = None,
    end: datetime | None = None,
) -> pl.DataFrame:
    """Range-filter, optionally repair (logging what changed), then validate strictly."""
    df = filter_range(df, start, end)
    if df.height == 0:
        raise BarsError(
            f"{what} has no bars in the requested range; widen --start/--end.", rule="empty"
        )
    if repair:
        df, report = repair_bars(df)
        if report.changed:
            log.warning("%s: %s", what, report.describe())
    return validate_bars(df, "strict")


_SAID: set[str] = set()


def _say(message: str) -> None:
    """One line on stderr for a fallback the user must know about, once per process."""
    if message not in _SAID:
        _SAID.add(message)
        print(f"candletok: {message}", file=sys.stderr)


def load_bars(
    symbols: str | Sequence[str],
    source: str = "auto",
    interval: str = "1d",
    start: str | date | datetime | None = None,
    end: str | date | datetime | None = None,
    cache_dir: str | Path | None = None,
    *,
    fetch: FetchFn | None = None,
    seed: int = 0,
    n_bars: int | None = None,
) -> pl.DataFrame:
    """Load canonical, validated bars for ``symbols`` from ``source``.

    ``source`` is ``auto`` (cache, then Yahoo, then the bundled sample if Yahoo cannot be
    reached), ``yahoo``, ``sample``, ``synthetic`` or a path to a CSV/Parquet file or folder.
    ``fetch`` replaces the yfinance download (tests pass recorded frames); ``seed`` and
    ``n_bars`` drive the synthetic generator. Raises a :class:`CandletokError` subclass with
    one sentence on any failure a user can fix.
    """
    interval = normalize_interval(interval)
    t0, t1 = parse_time(start, "start"), parse_time(end, "end")
    if t0 is not None and t1 is not None and t0 >= t1:
        raise SourceError(f"--start {t0:%Y-%m-%d} is not before --end {t1:%Y-%m-%d}.")
    syms = normalize_symbols(symbols)
    src = str(source).strip()
    if is_path_source(src):
        from candletok.files import load_files

        return load_files(src, syms, interval=interval, start=t0, end=t1)
    src = src.lower()
    if src not in SOURCES:
        raise SourceError(
            f"Unknown source {source!r}; use auto, yahoo, sample, synthetic or an existing "
            "CSV/Parquet path."
        )
    if not syms:
        raise SourceError("Give at least one symbol to load.")
    if src == "sample":
        return _load_sample(syms, interval, t0, t1)
    if src == "synthetic":
        from candletok.synthetic import synthetic_bars

        df = synthetic_bars(
            syms, n_bars=n_bars, interval=interval, seed=seed, start=t0, end=t1
        )
        return validate_bars(df, "strict")

    from candletok.yahoo import YahooUnreachable, load_yahoo

    try:
        return load_yahoo(syms, interval=interval, start=t0, end=t1, cache_dir=cache_dir,
                          fetch=fetch)
    except YahooUnreachable as exc:
        if src == "yahoo":
            raise SourceError(
                f"Yahoo Finance could not be reached ({exc.reason}); check your connection "
                f"or {SOURCE_HINT}."
            ) from exc
        from candletok.sample import sample_symbols

        missing = [s for s in syms if s not in set(sample_symbols())]
        if missing or interval != "1d":
            why = (
                f"{', '.join(missing)} not in the bundled sample" if missing
                else "the bundled sample holds daily bars only"
            )
            raise SourceError(
                f"Yahoo Finance could not be reached ({exc.reason}) and {why}; {SOURCE_HINT}."
            ) from exc
        _say(
            f"Yahoo Finance unreachable ({exc.reason}); using the bundled sample "
            "(daily bars 2000-2013) instead."
        )
        return _load_sample(syms, interval, t0, t1)


def _load_sample(
    syms: list[str], interval: str, start: datetime | None, end: datetime | None
) -> pl.DataFrame:
    from candletok.sample import load_sample

    if interval != "1d":
        raise SourceError(
            f"The bundled sample holds daily bars only, not {interval}; use --interval 1d "
            "or --source synthetic."
        )
    df = load_sample(syms)
    return finish(df, repair=False, what="the bundled sample", start=start, end=end)


__all__ = [
    "INTERVALS",
    "SOURCES",
    "filter_range",
    "is_intraday",
    "is_path_source",
    "load_bars",
    "normalize_interval",
    "normalize_symbols",
    "parse_time",
]
