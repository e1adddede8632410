"""The last step of every source: range filter, optional repair (logged), strict validation.

It sits below the source dispatcher so that every backend (files, Yahoo, the generator)
can use it without importing the dispatcher that imports them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

import polars as pl

from candletok.core.errors import BarsError
from candletok.data.bars import repair_bars, validate_bars

log = logging.getLogger(__name__)


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
        if not report.changed:  # every rule kept (checked in one pass): nothing more to do
            return df
        log.warning("%s: %s", what, report.describe())
    return validate_bars(df, "strict")
