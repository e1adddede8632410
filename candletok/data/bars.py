"""The canonical bars frame: its schema, how raw tables are mapped onto it, and its rules.

Every source ends in :func:`canonicalize` and :func:`validate_bars`, so the rest of the
pipeline can trust one shape: ``symbol, ts, open, high, low, close, volume`` sorted by
``(symbol, ts)``, prices positive and consistent, ``ts`` a UTC microsecond datetime.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from candletok.core.errors import BarsError

log = logging.getLogger(__name__)

PRICE_COLS: tuple[str, ...] = ("open", "high", "low", "close")
BARS_COLUMNS: tuple[str, ...] = ("symbol", "ts", *PRICE_COLS, "volume")
BARS_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ts": pl.Datetime("us", "UTC"),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
}

# Raw column names (lower-cased, spaces/underscores removed) -> canonical name.
COLUMN_ALIASES: dict[str, str] = {
    "symbol": "symbol", "ticker": "symbol", "name": "symbol",
    "ts": "ts", "date": "ts", "datetime": "ts", "timestamp": "ts", "time": "ts",
    "open": "open", "o": "open",
    "high": "high", "h": "high",
    "low": "low", "l": "low",
    "close": "close", "c": "close",
    "adjclose": "adj_close", "adjustedclose": "adj_close",
    "volume": "volume", "vol": "volume", "v": "volume",
}

Policy = Literal["strict", "repair"]


def column_key(name: str) -> str:
    return name.strip().lower().replace(" ", "").replace("_", "").replace("-", "")


def _to_utc(col: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Cast a date/datetime/string/integer column to ``Datetime("us", "UTC")``.

    Naive timestamps are taken as UTC (daily bars carry no time of day anyway)."""
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            return col.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
        return col.dt.convert_time_zone("UTC").cast(pl.Datetime("us", "UTC"))
    if dtype == pl.Date:
        return col.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    if dtype.is_integer():  # read by integer_times, which needs the values
        raise pl.exceptions.InvalidOperationError("integer times")
    # Strings: ISO 8601 through Arrow's parser (about 20x faster than Polars' inference),
    # else Polars infers the format; offsets are converted to UTC either way.
    return col.cast(pl.String).map_batches(_parse_times, return_dtype=BARS_SCHEMA["ts"])


#: Epoch units by the magnitude of their values after 1973-03-03 (10**8 s): each unit is
#: 1000 times the last, so a column's values fall in exactly one band.
_EPOCH_BANDS = (("s", 10**8), ("ms", 10**11), ("us", 10**14), ("ns", 10**17))


def _epoch_unit(magnitude: int) -> str | None:
    unit = None
    for name, lo in _EPOCH_BANDS:
        if magnitude >= lo:
            unit = name
    return unit


def integer_times(s: pl.Series, shown: str) -> pl.Series:
    """Integer times (or text of digits) as UTC microseconds: ``YYYYMMDD`` dates when every
    value is one (20150101 is 2015-01-01, not 20 million seconds after 1970), likewise
    ``YYYYMMDDHHMM`` and ``YYYYMMDDHHMMSS`` date-times of the years 1900-2099, else epoch
    times in the one unit (s, ms, µs, ns) that the magnitude of every value points to.
    Anything else -- values of several units, or small integers that are no date -- is a
    :class:`BarsError`: guessing would put bars in the wrong decade without a word."""
    v = s.cast(pl.Int64, strict=False)
    if v.null_count() > s.null_count():
        raise pl.exceptions.InvalidOperationError("not all integers")
    utc = pl.Datetime("us", "UTC")
    if v.null_count() == v.len():
        return v.cast(pl.Datetime("us")).dt.replace_time_zone("UTC").cast(utc)
    lo, hi = int(v.min()), int(v.max())  # type: ignore[arg-type]
    if lo >= 10_000_101 and hi <= 99_991_231:
        days = v.cast(pl.String).str.to_date("%Y%m%d", strict=False)
        if days.null_count() == v.null_count():
            return days.cast(pl.Datetime("us")).dt.replace_time_zone("UTC").cast(utc)
    for fmt, width in (("%Y%m%d%H%M", 12), ("%Y%m%d%H%M%S", 14)):
        # 201709221500 is 2017-09-22 15:00, not an epoch time in ms of 1976: a column
        # whose every value reads as such a date-time is one (epoch times of the same
        # width fail the month, day or hour fields almost at once)
        if lo >= 19 * 10 ** (width - 2) and hi < 21 * 10 ** (width - 2):
            t = v.cast(pl.String).str.to_datetime(fmt, time_unit="us", strict=False)
            if t.null_count() == v.null_count():
                return t.dt.replace_time_zone("UTC").cast(utc)
    mag = v.abs()
    unit = _epoch_unit(int(mag.min()))  # type: ignore[arg-type]
    if unit is None or unit != _epoch_unit(int(mag.max())):  # type: ignore[arg-type]
        raise BarsError(
            f"Column '{shown}' holds integers from {lo} to {hi}, which are neither YYYYMMDD "
            "dates nor epoch times of one unit (s, ms, us or ns, after 1973); give "
            "date_format= (e.g. %Y%m%d%H%M) or write the dates like 2024-01-31.",
            rule="bad_dtype",
        )
    return pl.from_epoch(v, time_unit=unit).dt.replace_time_zone("UTC").cast(utc)  # type: ignore[arg-type]


#: Arrow targets in the order they are tried: zoned times, else naive ones (taken as UTC).
_ARROW_TIMES = (pa.timestamp("us", tz="UTC"), pa.timestamp("us"))
#: Values :func:`_parse_times` tries the targets on first (head and a stride of the rest).
_SAMPLE = 256


def _parse_times(s: pl.Series) -> pl.Series:
    """Text times to UTC microseconds. Arrow's ISO 8601 cast takes the common spellings
    (``2024-01-31``, ``2024-01-31 15:30``, ``...T15:30:00.000+01:00``, ``...Z``) at memory
    speed; anything else (or a column mixing zoned and naive times) goes to Polars'
    format inference, whose errors the caller turns into a named message.

    Which cast fits is found on a sample first: a cast that fails is slow (Arrow's error
    path costs ~40x its parse, 0.9 s per 200k plain dates refused by the zoned target), and
    a target the sample refuses the whole column refuses too. The one target the sample
    takes is then cast on the column, strictly; only if that fails (a column mixing
    spellings) does the old path run, so the result is what trying every target gives."""
    arr = s.to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.null_count == len(arr):
        return s.str.to_datetime(time_unit="us", time_zone="UTC")
    step = max(1, len(arr) // _SAMPLE)
    sample = pc.drop_null(pa.concat_arrays([arr.slice(0, _SAMPLE), arr[::step]]))
    for target in _ARROW_TIMES:
        try:
            pc.cast(sample, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        try:
            return _arrow_times(s.name, arr, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            break  # mixed spellings: the careful path below decides, as it always did
    for target in _ARROW_TIMES:
        try:
            return _arrow_times(s.name, arr, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return s.str.to_datetime(time_unit="us", time_zone="UTC")


def _arrow_times(name: str, arr: pa.Array, target: pa.DataType) -> pl.Series:
    """``arr`` cast to ``target`` by Arrow, as UTC microseconds (naive times are UTC)."""
    parsed = pl.Series(name, pc.cast(arr, target))
    if parsed.dtype.time_zone is None:  # naive times are UTC
        parsed = parsed.dt.replace_time_zone("UTC")
    return parsed.cast(BARS_SCHEMA["ts"])


def _separator_hint(raw: pl.DataFrame) -> str:
    """:func:`separator_hint` for a table read as one column (its name, its first values)."""
    if raw.width != 1:
        return ""
    return separator_hint(raw.columns[0], " ".join(
        str(v) for v in raw[raw.columns[0]].head(5).to_list()))


def separator_hint(header: str, sample: str) -> str:
    """Why a CSV's columns were not found, when its header shows it: a header split by
    ``;`` (or tabs, ``|``) and not by commas is a file written with another separator, as
    European spreadsheets do, often with decimal commas too (seen in ``sample``, a few
    lines of the file). "" when the header shows no such thing."""
    if "," in header:
        return ""
    sep = next((s for s in (";", "\t", "|") if s in header), None)
    if sep is None:
        return ""
    shown = {"\t": "tab"}.get(sep, repr(sep))
    commas = _DECIMAL_COMMA.search(sample) is not None
    return (f" (the file looks {shown}-separated: save it with commas between columns"
            + (" and points as decimal marks, 1.5 not 1,5" if commas else "") + ")")


#: A number written with a decimal comma (``101,5``), as in ``1.234,5`` or ``101,25``.
_DECIMAL_COMMA = re.compile(r"(?:^|[\s;|\t])[-+]?\d+(?:\.\d{3})*,\d+(?=$|[\s;|\t])")


def _as_number(df: pl.DataFrame, c: str, shown: str) -> pl.DataFrame:
    """Column ``c`` as Float64; text that is not a number is one error naming the column
    as the file does (``shown``) and a few of its values."""
    dt = df.schema[c]
    if dt.is_numeric() or dt == pl.Null:
        return df
    try:
        return df.with_columns(pl.col(c).cast(pl.String).str.strip_chars().cast(pl.Float64))
    except pl.exceptions.InvalidOperationError as exc:
        bad = (
            df.with_row_index("_i")
            .filter(
                pl.col(c).is_not_null()
                & pl.col(c).cast(pl.String).str.strip_chars()
                .cast(pl.Float64, strict=False).is_null()
            )
            .head(3)
        )
        examples = ", ".join(repr(v) for v in bad[c].to_list())
        commas = any(_DECIMAL_COMMA.search(str(v).strip()) for v in bad[c].to_list())
        hint = " (decimal commas: write 1.5, not 1,5)" if commas else ""
        raise BarsError(
            f"Column '{shown}' must be numeric but holds text such as {examples}{hint}.",
            rule="bad_dtype",
            rows=bad["_i"].to_list(),
        ) from exc


def canonicalize(
    raw: pl.DataFrame, symbol: str | None = None, *, adjust: bool = True
) -> pl.DataFrame:
    """Map a raw OHLCV table onto the canonical schema (not yet validated).

    Column names are matched case-insensitively (``Date``/``Datetime``/``timestamp``/``time``,
    ``Adj Close``...). When ``Adj Close`` is present and ``adjust`` is true, O/H/L/C are
    multiplied by ``Adj Close / Close`` and volume divided by it, so splits do not show up
    as price jumps. ``symbol`` fills the symbol column when the table has none.
    """
    renames: dict[str, str] = {}
    seen: set[str] = set()
    for name in raw.columns:
        canon = COLUMN_ALIASES.get(column_key(name))
        if canon is not None and canon not in seen:
            renames[name] = canon
            seen.add(canon)
    df = raw.select([pl.col(k).alias(v) for k, v in renames.items()])
    given = {v: k for k, v in renames.items()}  # messages name the columns as the file does
    if "symbol" not in df.columns:
        if symbol is None:
            raise BarsError(
                "The table has no symbol/ticker column; pass the symbol it holds.",
                rule="missing_column",
            )
        df = df.with_columns(pl.lit(symbol, dtype=pl.String).alias("symbol"))
    missing = [c for c in ("ts", *PRICE_COLS) if c not in df.columns]
    if missing:
        raise BarsError(
            f"Missing required column(s) {', '.join(missing)}; found {', '.join(raw.columns)}"
            f"{_separator_hint(raw)}.",
            rule="missing_column",
        )
    if "volume" not in df.columns:
        df = df.with_columns(pl.lit(None, dtype=pl.Float64).alias("volume"))

    numeric = [*PRICE_COLS, "volume"] + (["adj_close"] if "adj_close" in df.columns else [])
    for c in numeric:
        df = _as_number(df, c, given.get(c, c))
    try:
        try:
            ts = _to_utc(pl.col("ts"), df.schema["ts"])
        except pl.exceptions.InvalidOperationError:  # integers: their values decide
            df = df.with_columns(integer_times(df["ts"], given.get("ts", "ts")).alias("ts"))
            ts = pl.col("ts")
        try:
            df = df.with_columns(ts.alias("ts"))
        except pl.exceptions.ComputeError:  # text of digits (20150101, epoch seconds)?
            if df.schema["ts"] != pl.String:
                raise
            df = df.with_columns(integer_times(df["ts"].str.strip_chars(),
                                               given.get("ts", "ts")).alias("ts"))
        df = df.with_columns(
            pl.col("symbol").cast(pl.String),
            *[pl.col(c).cast(pl.Float64) for c in numeric],
        )
    except (pl.exceptions.ComputeError, pl.exceptions.InvalidOperationError) as exc:
        raise BarsError(
            f"Column '{given.get('ts', 'ts')}' could not be read as dates or timestamps "
            "(write them like 2024-01-31 or 2024-01-31 15:30).", rule="bad_dtype"
        ) from exc
    if adjust and "adj_close" in df.columns:
        factor = (
            pl.when(pl.col("adj_close").is_not_null() & (pl.col("close") > 0))
            .then(pl.col("adj_close") / pl.col("close"))
            .otherwise(1.0)
        )
        df = df.with_columns(
            *[(pl.col(c) * factor).alias(c) for c in PRICE_COLS],
            (pl.col("volume") / factor).alias("volume"),
        )
    return df.select(BARS_COLUMNS)


@dataclass(frozen=True)
class RepairReport:
    """What ``repair_bars`` changed, so a repair is never silent."""

    rows_in: int
    rows_out: int
    dropped_null: int = 0
    dropped_non_finite: int = 0
    dropped_non_positive: int = 0
    dropped_high_low: int = 0
    dropped_duplicates: int = 0
    volume_nulled: int = 0
    resorted: bool = False

    @property
    def changed(self) -> bool:
        return self.rows_in != self.rows_out or self.volume_nulled > 0 or self.resorted

    def describe(self) -> str:
        parts = [
            f"{n} {what}"
            for n, what in (
                (self.dropped_null, "rows with missing values"),
                (self.dropped_non_finite, "non-finite rows"),
                (self.dropped_non_positive, "rows with prices <= 0"),
                (self.dropped_high_low, "rows with inconsistent high/low"),
                (self.dropped_duplicates, "duplicate timestamps"),
                (self.volume_nulled, "invalid volumes set to null"),
            )
            if n
        ]
        if self.resorted:
            parts.append("rows re-sorted")
        return "repaired bars: " + (", ".join(parts) if parts else "nothing to repair")


def _check_schema(df: pl.DataFrame) -> None:
    missing = [c for c in BARS_COLUMNS if c not in df.columns]
    if missing:
        raise BarsError(
            f"Bars frame is missing column(s) {', '.join(missing)}; "
            f"expected {', '.join(BARS_COLUMNS)}.",
            rule="missing_column",
        )
    for c in BARS_COLUMNS:
        want, got = BARS_SCHEMA[c], df.schema[c]
        ok = got == want or (c == "volume" and got == pl.Null)
        if c == "ts":
            ok = isinstance(got, pl.Datetime) and got.time_zone == "UTC"
        if not ok:
            raise BarsError(
                f"Column '{c}' has type {got}, expected {want}; "
                "run candletok.canonicalize() on raw tables first.",
                rule="bad_dtype",
            )


def bar_problems(df: pl.DataFrame) -> list[str]:
    """The rules ``df`` may break (empty when it is valid), found in one pass: the row
    rules of :func:`validate_bars` as one select of Polars expressions evaluated together,
    plus "order" (not sorted by (symbol, ts), or a repeated (symbol, ts)). Never misses a
    broken rule; may name one that a NaN elsewhere triggers. Valid frames, the usual
    case, cost this one pass; only flagged ones go on to the exact checks that name rows."""
    if df.height == 0:
        return []
    o, h, lo, c, v = (pl.col(x) for x in ("open", "high", "low", "close", "volume"))
    sym, ts = pl.col("symbol"), pl.col("ts")
    prices = [o, h, lo, c]
    # Aggregates where they decide a rule (a NaN or inf makes a sum non-finite; a price
    # <= 0 makes a minimum <= 0): a false alarm only sends the frame to the exact checks.
    # (Lazy: the optimized plan runs these about twice as fast as an eager select.)
    out = df.lazy().select(
        null=pl.sum_horizontal([x.null_count() for x in (*prices, ts, sym)]) > 0,
        empty_symbol=sym.str.len_bytes().min() == 0,
        non_finite=~pl.sum_horizontal([p.sum() for p in prices]).is_finite(),
        non_positive=pl.min_horizontal([p.min() for p in prices]) <= 0,
        high_low=((h - pl.max_horizontal(o, c)).min() < 0)
        | ((pl.min_horizontal(o, c) - lo).min() < 0),
        negative_volume=(v.min() < 0) | ~v.sum().is_finite(),
    ).collect().row(0, named=True)
    bad = [k for k in _RULE_TEXT if out[k]]
    if not out["null"] and not _ordered(df):
        bad.append("order")
    return bad


def _ordered(df: pl.DataFrame) -> bool:
    """Sorted by (symbol, ts) with no repeated (symbol, ts), in O(n) without sorting: the
    runs of equal symbols rise strictly (so each symbol is one run), and within a run
    ``ts`` rises strictly. One run-length pass over the strings, one numpy diff."""
    runs = df["symbol"].rle()
    values = runs.struct.field("value")
    if values.len() > 1 and not (values.slice(1) > values.slice(0, values.len() - 1)).all():
        return False
    step = np.diff(df["ts"].to_physical().to_numpy())
    ok = step > 0
    ends = np.cumsum(runs.struct.field("len").to_numpy())[:-1] - 1
    ok[ends] = True  # a new symbol may restart its timestamps
    return bool(ok.all())


def _rows(mask: pl.Series) -> list[int]:
    return mask.arg_true().head(5).to_list()


def _rule_masks(df: pl.DataFrame) -> dict[str, pl.Series]:
    """One boolean Series per broken rule, True where a row breaks it (vectorized)."""
    o, h, lo, c, v = (pl.col(x) for x in ("open", "high", "low", "close", "volume"))
    prices = [o, h, lo, c]
    out = df.select(
        null=pl.any_horizontal([p.is_null() for p in prices]) | pl.col("ts").is_null()
        | pl.col("symbol").is_null(),
        empty_symbol=pl.col("symbol").str.len_chars() == 0,
        non_finite=pl.any_horizontal([~p.is_finite() for p in prices]),
        non_positive=pl.any_horizontal([p <= 0 for p in prices]),
        high_low=(h < pl.max_horizontal(o, c)) | (lo > pl.min_horizontal(o, c)),
        negative_volume=v.is_not_null() & (~v.is_finite() | (v < 0)),
    )
    return {k: out[k].fill_null(False) for k in out.columns}


_RULE_TEXT = {
    "null": "missing symbol, timestamp or price",
    "empty_symbol": "an empty symbol",
    "non_finite": "a price that is NaN or infinite",
    "non_positive": "a price <= 0",
    "high_low": "high below max(open, close) or low above min(open, close)",
    "negative_volume": "a volume that is negative or not finite",
}


def validate_bars(df: pl.DataFrame, policy: Policy = "strict") -> pl.DataFrame:
    """Check the canonical rules; raise :class:`BarsError` (strict) or fix them (repair).

    Strict mode names the first offending rows and the rule they break. Repair mode sorts,
    drops duplicate timestamps (keeping the last) and broken rows, sets bad volumes to
    null, and logs what it did; it never changes a valid price.
    """
    if policy not in ("strict", "repair"):
        raise ValueError(f"policy must be 'strict' or 'repair', not {policy!r}")
    _check_schema(df)
    df = df.select(BARS_COLUMNS).with_columns(
        pl.col("volume").cast(pl.Float64), pl.col("ts").cast(BARS_SCHEMA["ts"])
    )
    if df.height == 0:
        raise BarsError("The bars frame is empty: no rows to work with.", rule="empty")
    if not bar_problems(df):
        return df
    if policy == "repair":
        out, report = repair_bars(df)
        if report.changed:
            log.warning(report.describe())
        return out

    for rule, mask in _rule_masks(df).items():
        if mask.any():
            rows = _rows(mask)
            raise BarsError(
                f"{int(mask.sum())} row(s) have {_RULE_TEXT[rule]} (first rows {rows}); "
                "fix the data or use policy='repair'.",
                rule=rule,
                rows=rows,
            )
    keys = df.select("symbol", "ts")
    dup = keys.is_duplicated()
    if dup.any():
        rows = _rows(dup)
        raise BarsError(
            f"{int(dup.sum())} rows share a (symbol, ts) with another row (first rows {rows}); "
            "timestamps must be unique per symbol.",
            rule="duplicate_ts",
            rows=rows,
        )
    order = keys.with_row_index("_i").sort("symbol", "ts")["_i"]
    if not order.equals(pl.Series("_i", range(df.height), dtype=order.dtype)):
        unsorted = (order != pl.Series(range(df.height)).cast(order.dtype))
        rows = _rows(unsorted)
        raise BarsError(
            f"Rows are not sorted by (symbol, ts) (first out of place {rows}); "
            "sort them or use policy='repair'.",
            rule="unsorted",
            rows=rows,
        )
    return df


def repair_bars(df: pl.DataFrame) -> tuple[pl.DataFrame, RepairReport]:
    """Drop or fix broken rows; return the repaired frame and what was done."""
    _check_schema(df)
    n0 = df.height
    df = df.select(BARS_COLUMNS).with_columns(
        pl.col("volume").cast(pl.Float64), pl.col("ts").cast(BARS_SCHEMA["ts"])
    )
    if n0 and not bar_problems(df):  # nothing to repair: one pass, no copy
        return df, RepairReport(rows_in=n0, rows_out=n0)
    masks = _rule_masks(df)
    bad_vol = int(masks["negative_volume"].sum())
    df = df.with_columns(
        pl.when(masks["negative_volume"]).then(None).otherwise(pl.col("volume")).alias("volume")
    )
    counts: dict[str, int] = {}
    drop = pl.Series([False] * df.height)
    for rule in ("null", "empty_symbol", "non_finite", "non_positive", "high_low"):
        new = masks[rule] & ~drop
        counts[rule] = int(new.sum())
        drop = drop | masks[rule]
    df = df.filter(~drop)
    sorted_df = df.sort("symbol", "ts", maintain_order=True)
    resorted = not sorted_df.select("symbol", "ts").equals(df.select("symbol", "ts"))
    deduped = sorted_df.unique(subset=["symbol", "ts"], keep="last", maintain_order=True)
    report = RepairReport(
        rows_in=n0,
        rows_out=deduped.height,
        dropped_null=counts["null"] + counts["empty_symbol"],
        dropped_non_finite=counts["non_finite"],
        dropped_non_positive=counts["non_positive"],
        dropped_high_low=counts["high_low"],
        dropped_duplicates=sorted_df.height - deduped.height,
        volume_nulled=bad_vol,
        resorted=resorted,
    )
    if deduped.height == 0:
        raise BarsError("No valid bars are left after repair.", rule="empty")
    return deduped, report
