"""Where bars come from: one entry point, :func:`load_bars`, over every source.

The sources are registered by name in :mod:`candletok.data.feeds` (one file each: auto,
yahoo, sample, synthetic; ``register_source`` adds one); a path is read by
:mod:`candletok.data.files`.

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
from collections.abc import Callable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from candletok.core.errors import SourceError
from candletok.core.times import normalize_interval, parse_time
from candletok.data.clean import filter_range, normalize_symbols
from candletok.data.feeds import (
    SOURCE_HINT,
    SOURCES,
    LoadRequest,
    Source,
    get_source,
    register_source,
    source_help,
    sources,
)
from candletok.data.files import load_files

log = logging.getLogger(__name__)

FetchFn = Callable[..., Any]


def is_path_source(source: str) -> bool:
    """A source names a path when it exists on disk or ends like a data file."""
    s = str(source)
    low = s.lower()
    if low.endswith((".csv", ".csv.gz", ".parquet", ".pq")):
        return True
    if low in SOURCES:  # a registered name, never a file of that name
        return False
    return Path(s).expanduser().exists()


_SAID: set[str] = set()


def _say(message: str) -> None:
    """A warning for a fallback the user must know about, once per process (the CLI
    prints warnings on stderr)."""
    if message not in _SAID:
        _SAID.add(message)
        log.warning("%s", message)


def load_bars(
    symbols: str | Sequence[str],
    source: str = "auto",
    interval: str | None = None,
    start: str | date | datetime | None = None,
    end: str | date | datetime | None = None,
    cache_dir: str | Path | None = None,
    *,
    fetch: FetchFn | None = None,
    seed: int = 0,
    n_bars: int | None = None,
    repair: bool = True,
    date_format: str | None = None,
) -> pl.DataFrame:
    """Load canonical, validated bars for ``symbols`` from ``source``.

    ``source`` is ``auto`` (cache, then Yahoo, then the bundled sample if Yahoo cannot be
    reached), ``yahoo``, ``sample``, ``synthetic`` (or any name registered with
    :func:`~candletok.data.feeds.register_source`) or a path to a CSV/Parquet file or folder.
    ``fetch`` replaces the yfinance download (tests pass recorded frames); ``seed`` and
    ``n_bars`` drive the synthetic generator. Broken rows from Yahoo or a file (missing or
    non-finite prices, prices <= 0, high below the body or low above it) are dropped with
    a one-line report; ``repair=False`` refuses them with a :class:`BarsError` instead.
    ``date_format`` (strftime codes, e.g. ``%d/%m/%Y``) reads a file's text dates that
    Polars cannot guess. ``interval`` defaults to daily for the downloading sources; a
    file's bars carry their own spacing, so for a path it is only checked: one that
    contradicts the bars is refused (see :func:`candletok.core.times.infer_interval`).
    Raises a :class:`CandletokError` subclass with one sentence on any failure a user can
    fix.
    """
    asked = None if interval is None else normalize_interval(interval)
    interval = asked or "1d"
    t0, t1 = parse_time(start, "start"), parse_time(end, "end")
    if t0 is not None and t1 is not None and t0 >= t1:
        raise SourceError(f"start={t0:%Y-%m-%d} is not before end={t1:%Y-%m-%d}.")
    syms = normalize_symbols(symbols)
    src = str(source).strip()
    if is_path_source(src):
        return load_files(src, syms, interval=asked, start=t0, end=t1, repair=repair,
                          date_format=date_format)
    chosen = get_source(src)  # an unknown name: one sentence with every known one
    if not syms:
        raise SourceError("Give at least one symbol to load.")
    return chosen.load(LoadRequest(syms, interval, asked, t0, t1, cache_dir, fetch, seed,
                                   n_bars, repair, date_format))


__all__ = [
    "SOURCES",
    "SOURCE_HINT",
    "LoadRequest",
    "Source",
    "filter_range",
    "get_source",
    "is_path_source",
    "load_bars",
    "normalize_symbols",
    "register_source",
    "source_help",
    "sources",
]
