"""The last step of every source: range filter, optional repair (logged), strict validation.

It sits below the source dispatcher so that every backend (files, Yahoo, the generator)
can use it without importing the dispatcher that imports them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import polars as pl

from candletok.core.errors import BarsError, SourceError
from candletok.data.bars import repair_bars, validate_bars

log = logging.getLogger(__name__)


def normalize_symbols(symbols: str | Sequence[str] | None) -> list[str]:
    """Upper-cased, stripped, de-duplicated symbols in the given order.

    A single string may hold several symbols separated by commas or spaces. An item
    ``@FILE`` stands for the symbols listed in that text file: one per line (commas and
    spaces also separate), ``#`` starts a comment, blank lines are skipped -- so a list of
    thousands of tickers never has to go on a command line."""
    if symbols is None:
        return []
    if isinstance(symbols, str):
        symbols = symbols.replace(",", " ").split()
    out: list[str] = []
    for item in symbols:
        text = str(item).strip()
        if text.startswith("@") and len(text) > 1:
            out.extend(_symbols_file(Path(text[1:]).expanduser()))
        else:
            out.extend(text.replace(",", " ").split())
    return list(dict.fromkeys(s.upper() for s in out))


def _symbols_file(path: Path) -> list[str]:
    """The symbols listed in ``path`` (see :func:`normalize_symbols`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SourceError(f"Symbol list @{path} does not exist; give a text file with "
                          "one symbol per line.") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"Symbol list @{path} could not be read ({type(exc).__name__}); "
                          "give a UTF-8 text file with one symbol per line.") from exc
    found = [s for line in text.splitlines()
             for s in line.split("#", 1)[0].replace(",", " ").split()]
    if not found:
        raise SourceError(f"Symbol list @{path} names no symbols.")
    return found


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
    if not report.changed:  # every rule kept (checked in one pass): nothing more to do
        return df
    log.warning("%s: %s", what, report.describe())
    return validate_bars(df, "strict")
