"""Bars from your own files: a CSV or Parquet file, or a folder of them.

Why so forgiving about names: exports from brokers, Yahoo, Stooq, Kaggle and pandas all
spell columns differently (``Date``/``Datetime``/``timestamp``, ``Adj Close``...), and a
user should not have to rename them. :func:`candletok.data.bars.canonicalize` matches them
case-insensitively and applies ``Adj Close / Close`` when present. Files can be dirty, so
they are repaired (and the repair logged) before the strict check; a problem that cannot
be repaired -- a missing column, text in a price column, an empty or unreadable file -- is a
``BarsError`` whose ``rule`` says which.

Layouts: one file with a symbol column (filtered to the requested symbols), one file
without (it holds the one requested symbol, else the file's stem), or a folder of them:
one file per symbol (``AAPL.csv``, ``MSFT.parquet``), a Parquet dataset partitioned by
symbol (``symbol=AAPL/part-0.parquet``, as ``candletok download --out DIR/`` writes it and
pyarrow/Spark/Polars write hive partitions), or files that carry a symbol column. Files
and folders whose names start with ``.`` or ``_`` (``_SUCCESS``, ``_metadata``) are skipped.

Speed: each file is read lazily with its numeric columns typed in the reader (no text
pass), the symbol and date predicates pushed into the scan (Parquet skips row groups), the
files of a folder collected in parallel, and the bars checked in one pass of expressions.
A file the fast read cannot take (text in a price column, an empty file...) is read again
the careful way, whose error names the file, the column and the rows.
"""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote, unquote

import polars as pl

from candletok.core.atomic import write_parquet_atomic
from candletok.core.errors import BarsError, OutputError, SourceError
from candletok.core.times import bar_spacings, check_interval, interval_of_spacings
from candletok.data.bars import (
    COLUMN_ALIASES,
    PRICE_COLS,
    canonicalize,
    column_key,
    separator_hint,
)
from candletok.data.clean import filter_range, finish

log = logging.getLogger(__name__)

SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
_NUMERIC = (*PRICE_COLS, "volume", "adj_close")


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
        hint = "" if kind == "Parquet" else _head_hint(path)
        raise BarsError(
            f"{path} could not be read as {kind} ({type(exc).__name__}); "
            + (f"check the file format{hint}." if hint else "check the file format."),
            rule="unreadable",
        ) from exc
    if df.height == 0:
        raise BarsError(f"{path} holds no rows of bars.", rule="empty")
    return df


def _head_hint(path: Path) -> str:
    """:func:`separator_hint` from a CSV's first lines (a ``;`` file with decimal commas
    splits into more fields than its header has, so Polars refuses it before any column
    can be looked at)."""
    try:
        opener = gzip.open if _suffix(path) == ".csv.gz" else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
            lines = [fh.readline() for _ in range(6)]
    except OSError:
        return ""
    return separator_hint(lines[0].strip(), " ".join(x.strip() for x in lines[1:]))


def _has_symbol_column(df: pl.DataFrame) -> bool:
    return any(COLUMN_ALIASES.get(column_key(c)) == "symbol" for c in df.columns)


def _roles(columns: list[str]) -> dict[str, str]:
    """Canonical name -> the file's column, the first match winning (as in canonicalize)."""
    out: dict[str, str] = {}
    for name in columns:
        canon = COLUMN_ALIASES.get(column_key(name))
        if canon is not None and canon not in out:
            out[canon] = name
    return out


def _normalize_symbols(df: pl.DataFrame, where: str = "") -> pl.DataFrame:
    """Strip and upper-case the symbol column, looking at each run's value only: a sorted
    column of clean symbols (the usual case) costs one run-length pass, not a string op
    per row. Two spellings that become one symbol (``CASE`` and ``case``) are refused:
    merged they would interleave two series, and asking for either would return both."""
    runs = df["symbol"].rle().struct.field("value")
    norm = runs.str.strip_chars().str.to_uppercase()
    if runs.equals(norm):
        return df
    spellings = pl.DataFrame({"raw": runs, "symbol": norm}).unique().sort("raw")
    clash = spellings.filter(pl.len().over("symbol") > 1)
    if clash.height:
        a, b = clash.filter(pl.col("symbol") == clash["symbol"][0])["raw"].head(2).to_list()
        raise BarsError(
            f"{where + ': ' if where else ''}symbols {a!r} and {b!r} differ only by case or "
            "spaces, and candletok reads symbols without case; rename one of them.",
            rule="symbol_case",
        )
    return df.with_columns(pl.col("symbol").str.strip_chars().str.to_uppercase())


#: strftime directives that always write the same number of digits
_FIXED_WIDTH = {"%Y": 4, "%m": 2, "%d": 2, "%H": 2, "%M": 2, "%S": 2, "%y": 2, "%j": 3}


def _digit_width(date_format: str) -> int | None:
    """How many digits ``date_format`` writes when it is made only of fixed-width numeric
    directives (``%d%m%Y``: 8), else None (a separator or a variable-width field)."""
    parts = [date_format[i:i + 2] for i in range(0, len(date_format), 2)]
    if len(date_format) % 2 or not all(p in _FIXED_WIDTH for p in parts):
        return None
    return sum(_FIXED_WIDTH[p] for p in parts)


def parse_dates(raw: pl.DataFrame, date_format: str | None, where: str) -> pl.DataFrame:
    """The time column of a raw table read with an explicit ``date_format`` (strftime
    codes, e.g. ``%d/%m/%Y``), for files whose dates Polars cannot guess (month-first
    dates, ``20240131``), integer columns read as their digits; without a format, or
    when the column is neither text nor integers, nothing changes."""
    col = _roles(raw.columns).get("ts")
    if date_format is None or col is None:
        return raw
    if raw.schema[col].is_integer():  # 202401311530 with %Y%m%d%H%M: the digits are text
        # an integer drops its leading zero (04012000 is 4012000): put it back to the
        # width the format writes, when every directive in it has a fixed width
        width = _digit_width(date_format)
        digits = pl.col(col).cast(pl.String)
        raw = raw.with_columns(digits.str.zfill(width) if width else digits)
    if raw.schema[col] != pl.String:
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


def _canonical(path: Path, symbol: str | None,
               date_format: str | None = None) -> tuple[pl.DataFrame, bool]:
    """The careful read: every column as text, then ``canonicalize``, whose errors name the
    file, the column and the rows. Also says whether the file has a symbol column."""
    raw = parse_dates(read_table(path), date_format, path.name)
    has_symbol = _has_symbol_column(raw)
    try:
        df = canonicalize(raw, symbol=None if has_symbol else symbol, adjust=True)
    except BarsError as exc:
        raise BarsError(f"{path.name}: {exc}", rule=exc.rule, rows=exc.rows) from exc
    return _normalize_symbols(df, path.name), has_symbol


@dataclass
class _Plan:
    """One file's lazy fast read: the scan with its pushed-down predicates, and what the
    result still needs (the symbol to fill in, whether the date range is applied)."""

    path: Path | list[Path]
    symbol: str | None
    frame: pl.LazyFrame
    has_symbol: bool
    range_done: bool


def _scan(path: Path | list[Path]) -> pl.LazyFrame:
    """A lazy scan with the price and volume columns typed by the reader itself (a list:
    Parquet files of one schema, scanned as one)."""
    if isinstance(path, list) or _suffix(path) in (".parquet", ".pq"):
        return pl.scan_parquet(path)
    if _suffix(path) == ".csv.gz":  # the lazy CSV scan takes no compressed files
        header = pl.read_csv(path, n_rows=0, infer_schema=False).columns
    else:
        header = list(pl.scan_csv(path, infer_schema=False).collect_schema().names())
    numeric = {raw: pl.Float64 for canon, raw in _roles(header).items() if canon in _NUMERIC}
    if _suffix(path) == ".csv.gz":
        return pl.read_csv(path, infer_schema=False, schema_overrides=numeric).lazy()
    return pl.scan_csv(path, infer_schema=False, schema_overrides=numeric)


def _range(col: pl.Expr, dtype: pl.DataType, start: datetime | None,
           end: datetime | None) -> pl.Expr | None:
    """``start <= ts < end`` on the file's own datetime column (so Parquet statistics can
    skip row groups), or None when the column is not a datetime yet."""
    if not isinstance(dtype, pl.Datetime) or (start is None and end is None):
        return None
    tz = dtype.time_zone

    def bound(t: datetime) -> pl.Expr:
        return pl.lit(t).dt.convert_time_zone(tz) if tz else pl.lit(t.replace(tzinfo=None))

    parts = ([col >= bound(start)] if start else []) + ([col < bound(end)] if end else [])
    return pl.all_horizontal(parts)


def _plan(path: Path | list[Path], symbol: str | None, symbols: list[str],
          start: datetime | None, end: datetime | None) -> _Plan:
    lf = _scan(path)
    schema = lf.collect_schema()
    roles = _roles(list(schema.names()))
    has_symbol = "symbol" in roles
    if has_symbol and symbols:  # without case, so a clash of spellings is seen
        lf = lf.filter(pl.col(roles["symbol"]).cast(pl.String).str.strip_chars()
                       .str.to_uppercase().is_in(symbols))
    when = None
    if "ts" in roles:
        when = _range(pl.col(roles["ts"]), schema[roles["ts"]], start, end)
    if when is not None:
        lf = lf.filter(when)
    return _Plan(path, symbol, lf, has_symbol, when is not None or (start is None and end is None))


def _complete(plan: _Plan, raw: pl.DataFrame, start: datetime | None,
              end: datetime | None, date_format: str | None = None) -> pl.DataFrame | None:
    """Canonical bars from a fast read, or None when the careful read must decide (no rows
    left, a cast that failed, dates that do not match ``date_format``)."""
    if raw.height == 0:
        return None
    try:
        raw = parse_dates(raw, date_format, "")
        df = canonicalize(raw, symbol=None if plan.has_symbol else plan.symbol, adjust=True)
    except BarsError:
        return None
    if plan.has_symbol:
        df = _normalize_symbols(df, plan.path.name if isinstance(plan.path, Path)
                                else str(plan.path[0].parent))
    if not plan.range_done:
        df = filter_range(df, start, end)
    return df if df.height else None


def _collect(plans: list[_Plan | None]) -> list[pl.DataFrame | None]:
    """Every plan's raw frame, collected in parallel; None where a read failed."""
    lazy = [p.frame for p in plans if p is not None]
    try:  # collect_all runs the scans side by side; one scan alone is faster on its own
        raws: list[pl.DataFrame | None] = (
            list(pl.collect_all(lazy)) if len(lazy) > 1 else [f.collect() for f in lazy])
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError):
        raws = []  # one bad file: collect each on its own to find it
        for frame in lazy:
            try:
                raws.append(frame.collect())
            except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError):
                raws.append(None)
    it = iter(raws)
    return [None if p is None else next(it) for p in plans]


def _read_together(paths: list[Path], symbols: list[str], start: datetime | None,
                   end: datetime | None, date_format: str | None = None
                   ) -> pl.DataFrame | None:
    """Parquet files that carry a symbol column, in one scan (a folder of a thousand
    files costs one read, not a thousand), or None when they cannot be read that way:
    CSV among them, no symbol column, schemas that differ, a bad file, no rows. The
    file-by-file read then decides."""
    if not all(_suffix(p) in (".parquet", ".pq") for p in paths):
        return None
    try:
        plan = _plan(paths, None, symbols, start, end)
        if not plan.has_symbol:
            return None
        raw = plan.frame.collect()
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError):
        return None
    return _complete(plan, raw, start, end, date_format)


def _read_files(entries: list[tuple[Path, str | None]], symbols: list[str],
                start: datetime | None, end: datetime | None, *, careful: bool = False,
                date_format: str | None = None) -> tuple[pl.DataFrame, bool]:
    """Canonical bars of several files, read in parallel on the fast path; a file that
    needs the careful read gets it (every file does with ``careful``). ``symbols``
    filters files that carry a symbol column (pushed into the scan); files chosen by name
    are passed an empty list. Also says whether any file had a symbol column."""
    if not careful and len(entries) > 1:
        together = _read_together([p for p, _ in entries], symbols, start, end,
                                  date_format)
        if together is not None:
            return together, True
    plans: list[_Plan | None] = []
    for path, symbol in entries:
        try:
            plans.append(None if careful else _plan(path, symbol, symbols, start, end))
        except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError):
            plans.append(None)
    frames: list[pl.DataFrame] = []
    any_symbol = False
    for (path, symbol), plan, raw in zip(entries, plans, _collect(plans), strict=True):
        df = (None if plan is None or raw is None
              else _complete(plan, raw, start, end, date_format))
        if df is None:  # the careful read: the same result, or the precise error
            df, has_symbol = _canonical(path, symbol, date_format)
            df = filter_range(df, start, end)
        else:
            has_symbol = plan is not None and plan.has_symbol
        any_symbol = any_symbol or has_symbol
        frames.append(df)
    df = pl.concat(frames, how="vertical", rechunk=False) if len(frames) > 1 else frames[0]
    return df, any_symbol


def _present(df: pl.DataFrame) -> set[str]:
    """The symbols in ``df`` (from its runs: cheap on a sorted column)."""
    return set(df["symbol"].rle().struct.field("value").unique().to_list())


def _pick(df: pl.DataFrame, symbols: list[str], where: str) -> pl.DataFrame:
    if not symbols:
        return df
    present = _present(df)
    unknown = [s for s in symbols if s not in present]
    if unknown:
        available = sorted(present)
        shown = ", ".join(available[:20]) + (" ..." if len(available) > 20 else "")
        raise BarsError(
            f"{', '.join(unknown)} not found in {where}; it has {shown}.", rule="unknown_symbol"
        )
    if present <= set(symbols):
        return df
    return df.filter(pl.col("symbol").is_in(symbols))


def _folder_entries(path: Path) -> list[tuple[Path, str, str]]:
    """:func:`folder_files` with each symbol as the location spells it (``aaa.csv``)."""
    out: list[tuple[Path, str, str]] = []
    for p in path.rglob("*"):
        rel = p.relative_to(path)
        if any(part.startswith((".", "_")) for part in rel.parts):
            continue
        if not (_suffix(p) and p.is_file()):
            continue
        suf = _suffix(p) or p.suffix
        raw = p.name[: len(p.name) - len(suf)]
        for part in rel.parts[:-1]:
            key, eq, value = part.partition("=")
            if eq and COLUMN_ALIASES.get(column_key(key)) == "symbol":
                raw = unquote(value)
        out.append((p, raw.strip().upper(), raw))
    return sorted(out, key=lambda e: (e[1], str(e[0])))


def folder_files(path: Path) -> list[tuple[Path, str]]:
    """The data files of a folder (recursively, skipping ``.``/``_`` names), each with the
    symbol its location names: the value of a ``symbol=``/``ticker=`` partition folder,
    else the file's stem. Sorted by that symbol, then path."""
    return [(p, sym) for p, sym, _ in _folder_entries(path)]


def _refuse_case_clash(entries: list[tuple[Path, str, str]], root: Path) -> None:
    """Files whose names spell one symbol differently (``AAA.csv``, ``aaa.csv``) are
    refused, naming both: read as one symbol they would interleave two series, or drop
    one file's bars as "duplicate timestamps". (Parts of one partition spell it alike.)"""
    first: dict[str, tuple[Path, str]] = {}
    for p, sym, raw in entries:  # one step per file
        seen = first.setdefault(sym, (p, raw))
        if seen[1] != raw:
            raise BarsError(
                f"{seen[0].relative_to(root)} and {p.relative_to(root)} both name symbol "
                f"{sym}, spelled differently, and candletok reads symbols without case; "
                "rename or remove one of them.", rule="symbol_case",
            )


def load_files(
    source: str | Path,
    symbols: list[str],
    *,
    interval: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    repair: bool = True,
    date_format: str | None = None,
) -> pl.DataFrame:
    """Canonical, repaired and validated bars from a file or folder (see module docs).

    ``symbols`` may be empty to take everything. Files carry their own spacing, so a
    given ``interval`` is checked against it (the most common step between a symbol's
    bars, see :func:`candletok.core.times.infer_interval`) and refused in one sentence
    when they contradict; None takes the bars as they are. ``repair=False`` refuses
    broken rows instead of dropping them; ``date_format`` (strftime codes) reads a text
    date column that Polars cannot guess."""
    fmt = {"date_format": date_format}
    path = Path(source).expanduser()
    if not path.exists():
        raise SourceError(f"{path} does not exist; give an existing CSV/Parquet file or folder.")
    if path.is_dir():
        spelled = _folder_entries(path)
        if not spelled:
            raise SourceError(f"{path} holds no .csv or .parquet files.")
        named = {s for _, s, _ in spelled}
        by_name = bool(symbols) and all(s in named for s in symbols)
        if by_name:
            spelled = [e for e in spelled if e[1] in set(symbols)]
        _refuse_case_clash(spelled, path)
        chosen = [(p, sym) for p, sym, _ in spelled]
        df, filtered = _read_files(chosen, [] if by_name else symbols, start, end, **fmt)
        if filtered and not by_name and not set(symbols) <= _present(df):
            # the scans matched symbols exactly: look again for other spellings (" aapl")
            df, _ = _read_files(chosen, symbols, start, end, careful=True, **fmt)
        df = _pick(df, symbols, str(path))
    else:
        if _suffix(path) is None:
            raise SourceError(f"{path} is not a .csv or .parquet file.")
        raw_symbol = symbols[0] if len(symbols) == 1 else _stem(path)
        df, has_symbol = _read_files([(path, raw_symbol)], symbols, start, end, **fmt)
        if has_symbol and not set(symbols) <= _present(df):
            df, has_symbol = _read_files([(path, raw_symbol)], symbols, start, end,
                                         careful=True, **fmt)
        if len(symbols) > 1 and not has_symbol:
            raise BarsError(
                f"{path.name} has no symbol column, so it holds one symbol; ask for one "
                f"symbol, not {len(symbols)}.",
                rule="unknown_symbol",
            )
        df = _pick(df, symbols, path.name)
    # One piece per file or row group: past a few dozen pieces one copy makes every check
    # and every later pass faster than it costs; a single file's dozen row groups are not
    # worth copying (measured: 1.5x rather than 1.9x a plain pl.read_parquet on 1M bars).
    if df.n_chunks() > 64:
        df = df.rechunk()
    df = finish(df, repair=repair, what=path.name if interval is None
                else f"{path.name} ({interval})")
    if interval is not None:
        check_interval(interval, interval_of_spacings(bar_spacings(df["ts"], df["symbol"])),
                       str(path))
    return df


def bars_file(folder: str | Path, symbol: str) -> Path:
    """Where a bars folder keeps ``symbol``: ``FOLDER/symbol=SYM/part-0.parquet``, the
    symbol URL-quoted as hive partitions are (``EURUSD=X`` -> ``symbol=EURUSD%3DX``)."""
    return Path(folder) / f"symbol={quote(symbol, safe='')}" / "part-0.parquet"


def write_bars_folder(bars: pl.DataFrame, folder: str | Path) -> list[Path]:
    """Write canonical ``bars`` as a bars folder, one Parquet file per symbol (see
    :func:`bars_file`), each written atomically with every canonical column (the symbol
    too, so a file stands alone). Files of other symbols already there are kept, so a
    folder can grow one download at a time; a symbol written again is replaced. Returns
    the files written, in the bars' symbol order."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"Cannot write a bars folder at {folder}: it is a file; give a "
                          "folder (end the name with /).")
    if (folder / "manifest.json").exists():
        raise OutputError(f"{folder} is a token dataset folder; write the bars to another "
                          "folder.")
    written = []
    for (symbol,), part in bars.group_by("symbol", maintain_order=True):
        path = bars_file(folder, str(symbol))
        write_parquet_atomic(part, path)
        written.append(path)
    return written
