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


def strict_bars(df: pl.DataFrame, what: str) -> pl.DataFrame:
    """``df`` sorted and checked strictly: a broken row (missing or non-finite price,
    price <= 0, high below the body or low above it, duplicate time) is a
    :class:`BarsError` naming the rows, never dropped. For callers that asked for
    ``repair=False``; sorting is not a repair (exports often list the newest bar first)."""
    try:
        try:
            return validate_bars(df, "strict")
        except BarsError as exc:
            if exc.rule != "unsorted":
                raise
        return validate_bars(df.sort("symbol", "ts", maintain_order=True), "strict")
    except BarsError as exc:
        head = str(exc).split(";")[0]
        raise BarsError(
            f"{what}: {head}; fix the data, or load it with repair=True to drop such rows "
            "(with a one-line report).", rule=exc.rule, rows=exc.rows,
        ) from exc


def finish(
    df: pl.DataFrame, *, repair: bool, what: str, start: datetime | None = None,
    end: datetime | None = None,
) -> pl.DataFrame:
    """Range-filter, then repair (logging what changed in one line) and validate, or with
    ``repair=False`` refuse broken rows (:func:`strict_bars`)."""
    df = filter_range(df, start, end)
    if df.height == 0:
        raise BarsError(
            f"{what} has no bars in the requested range; widen it (start=, end=).",
            rule="empty",
        )
    if not repair:
        return strict_bars(df, what)
    df, report = repair_bars(df)
    if report.changed:
        log.warning("%s: %s", what, report.describe())
    return validate_bars(df, "strict")
