"""Bars from your own files: a CSV or Parquet file, or a folder of them.

Why so forgiving about names: exports from brokers, Yahoo, Stooq, Kaggle and pandas all
spell columns differently (``Date``/``Datetime``/``timestamp``, ``Adj Close``...), and a
user should not have to rename them. :func:`candletok.data.bars.canonicalize` matches them
case-insensitively and applies ``Adj Close / Close`` when present. Files can be dirty, so
they are repaired (and the repair logged) before the strict check; a problem that cannot
be repaired -- a missing column, text in a price column, an empty or unreadable file -- is a
``BarsError`` whose ``rule`` says which.

Layouts: one file with a symbol column (filtered to the requested symbols), one file
without (it holds the one requested symbol, else the file's stem), or a folder with one
file per symbol (``AAPL.csv``, ``MSFT.parquet``) or files that carry a symbol column.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import polars as pl

from candletok.core.errors import BarsError, SourceError
from candletok.data.bars import _ALIASES, _key, canonicalize
from candletok.data.clean import finish

log = logging.getLogger(__name__)

SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")


def _suffix(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in SUFFIXES if name.endswith(s)), None)


def _stem(path: Path) -> str:
    suf = _suffix(path) or path.suffix
    return path.name[: len(path.name) - len(suf)].upper()


def read_table(path: Path) -> pl.DataFrame:
    """Read one CSV (all columns as text; ``canonicalize`` casts) or Parquet file."""
    suf = _suffix(path)
    try:
        if suf in (".parquet", ".pq"):
            df = pl.read_parquet(path)
        else:
            df = pl.read_csv(path, infer_schema_length=0, try_parse_dates=False)
    except pl.exceptions.NoDataError as exc:
        raise BarsError(f"{path} is empty; it needs a header row and bars.", rule="empty") from exc
    except (OSError, pl.exceptions.PolarsError, UnicodeDecodeError) as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError)):
            raise SourceError(f"Cannot open {path}: {exc.strerror or exc}.") from exc
        kind = "Parquet" if suf in (".parquet", ".pq") else "CSV"
        raise BarsError(
            f"{path} could not be read as {kind} ({type(exc).__name__}); check the file format.",
            rule="unreadable",
        ) from exc
    if df.height == 0:
        raise BarsError(f"{path} holds no rows of bars.", rule="empty")
    return df


def _has_symbol_column(df: pl.DataFrame) -> bool:
    return any(_ALIASES.get(_key(c)) == "symbol" for c in df.columns)


def parse_dates(raw: pl.DataFrame, date_format: str | None, where: str) -> pl.DataFrame:
    """The time column of a raw table read with an explicit ``date_format`` (strftime
    codes, e.g. ``%d/%m/%Y``), for files whose dates Polars cannot guess (day-first dates,
    ``20240131``); without a format, or when the column is not text, nothing changes."""
    col = next((c for c in raw.columns if _ALIASES.get(_key(c)) == "ts"), None)
    if date_format is None or col is None or raw.schema[col] != pl.String:
        return raw
    try:
        return raw.with_columns(pl.col(col).str.strip_chars().str.to_datetime(
            format=date_format, time_unit="us", strict=True))
    except (pl.exceptions.ComputeError, pl.exceptions.InvalidOperationError) as exc:
        bad = raw[col].str.strip_chars().str.to_datetime(
            format=date_format, time_unit="us", strict=False).is_null()
        examples = ", ".join(repr(v) for v in raw[col].filter(bad).head(2).to_list())
        raise BarsError(
            f"{where}: column '{col}' does not match date_format={date_format!r} "
            f"(for example {examples or 'its values'}); give the format its dates are "
            "written in, e.g. %d/%m/%Y or %Y%m%d.", rule="bad_dtype",
        ) from exc


def _canonical(path: Path, symbol: str | None, date_format: str | None = None) -> pl.DataFrame:
    raw = parse_dates(read_table(path), date_format, path.name)
    try:
        df = canonicalize(raw, symbol=None if _has_symbol_column(raw) else symbol, adjust=True)
    except BarsError as exc:
        raise BarsError(f"{path.name}: {exc}", rule=exc.rule, rows=exc.rows) from exc
    return df.with_columns(pl.col("symbol").str.strip_chars().str.to_uppercase())


def _pick(df: pl.DataFrame, symbols: list[str], where: str) -> pl.DataFrame:
    if not symbols:
        return df
    available = sorted(df["symbol"].unique().to_list())
    unknown = [s for s in symbols if s not in set(available)]
    if unknown:
        shown = ", ".join(available[:20]) + (" ..." if len(available) > 20 else "")
        raise BarsError(
            f"{', '.join(unknown)} not found in {where}; it has {shown}.", rule="unknown_symbol"
        )
    return df.filter(pl.col("symbol").is_in(symbols))


def load_files(
    source: str | Path,
    symbols: list[str],
    *,
    interval: str = "1d",
    start: datetime | None = None,
    end: datetime | None = None,
    repair: bool = True,
    date_format: str | None = None,
) -> pl.DataFrame:
    """Canonical, repaired and validated bars from a file or folder (see module docs).

    ``symbols`` may be empty to take everything. ``interval`` is not checked against the
    data (files carry their own spacing); it only labels messages. ``repair=False``
    refuses broken rows instead of dropping them; ``date_format`` (strftime codes) reads
    a text date column that Polars cannot guess."""
    path = Path(source).expanduser()
    if not path.exists():
        raise SourceError(f"{path} does not exist; give an existing CSV/Parquet file or folder.")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and _suffix(p))
        if not files:
            raise SourceError(f"{path} holds no .csv or .parquet files.")
        by_stem = {_stem(p): p for p in files}
        if symbols and all(s in by_stem for s in symbols):
            frames = [_canonical(by_stem[s], s, date_format) for s in symbols]
            df = pl.concat(frames, how="vertical")
        else:
            frames = [_canonical(p, _stem(p), date_format) for p in files]
            df = _pick(pl.concat(frames, how="vertical"), symbols, str(path))
    else:
        if _suffix(path) is None:
            raise SourceError(f"{path} is not a .csv or .parquet file.")
        raw_symbol = symbols[0] if len(symbols) == 1 else _stem(path)
        df = _canonical(path, raw_symbol, date_format)
        if len(symbols) > 1 and df["symbol"].n_unique() == 1 and not _has_symbol_column(
            read_table(path)
        ):
            raise BarsError(
                f"{path.name} has no symbol column, so it holds one symbol; ask for one "
                f"symbol, not {len(symbols)}.",
                rule="unknown_symbol",
            )
        df = _pick(df, symbols, path.name)
    return finish(df, repair=repair, what=f"{path.name} ({interval})", start=start, end=end)
