"""Yahoo Finance bars via yfinance, reshaped to the canonical frame and cached.

Why this module is careful: yfinance 1.7's ``download()`` never raises. A failed ticker
comes back as all-NaN columns (or, when every ticker fails, an empty frame) and a line in
the ``yfinance`` log -- and a dead network looks exactly like a bad symbol, because the
time-zone probe fails first and is reported as "possibly delisted". So the default fetch
listens to that log, tells network trouble (retried with backoff, then
:class:`YahooUnreachable`) from symbols that have no data (``BarsError(rule="fetch_failed")``),
and the download itself sits behind an injectable ``fetch`` callable so tests replay
recorded frames and never touch the network.

pandas is used only at the boundary (``pl.from_pandas``); every reshaping step is Polars.
"""

from __future__ import annotations

import ast
import logging
import os
import re
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import polars as pl

from candletok.core.errors import BarsError, CandletokError, SourceError
from candletok.core.times import INTERVALS, normalize_interval
from candletok.data import cache as _cache
from candletok.data.bars import BARS_COLUMNS, canonicalize, repair_bars
from candletok.data.clean import finish, strict_bars

log = logging.getLogger(__name__)

#: Fields yfinance can put in a column level; used to tell the field level from the ticker one.
YF_FIELDS = frozenset(
    {"Open", "High", "Low", "Close", "Adj Close", "Volume", "Dividends", "Stock Splits",
     "Capital Gains", "Repaired?"}
)
#: History Yahoo keeps per intraday interval, and the longest span one 1m request may ask.
INTRADAY_LIMITS: dict[str, timedelta] = {
    "1m": timedelta(days=30),
    "2m": timedelta(days=60), "5m": timedelta(days=60), "15m": timedelta(days=60),
    "30m": timedelta(days=60), "90m": timedelta(days=60),
    "60m": timedelta(days=730),
}
ONE_MINUTE_CHUNK = timedelta(days=7)
#: Where an open start of daily-or-longer bars begins (fixed, so the cache range is stable).
DEFAULT_DAILY_START = datetime(1930, 1, 1, tzinfo=timezone.utc)

_NETWORK_PATTERNS = (
    "could not resolve host", "failed to perform", "curl: (", "connectionerror", "dnserror",
    "connection refused", "connection reset", "connection aborted", "network is unreachable",
    "timed out", "timeout", "temporary failure in name resolution", "max retries exceeded",
    "ssl", "too many requests", "rate limit", "yfratelimiterror", "proxyerror",
)
_TRANSIENT_NAMES = ("timeout", "connection", "dnserror", "ratelimit", "proxyerror", "sslerror")
#: Errors that say the machine is offline (no name resolution, no route, nothing listening):
#: retrying in a few seconds would not help, so the first one gives up at once.
_OFFLINE_PATTERNS = (
    "could not resolve host", "name or service not known", "temporary failure in name "
    "resolution", "nodename nor servname", "getaddrinfo failed", "failed to resolve",
    "no address associated", "nameresolutionerror", "network is unreachable",
    "no route to host", "couldn't connect to server", "could not connect to server",
    "connection refused", "offline mode",
)

FetchFn = Callable[..., Any]
SleepFn = Callable[[float], None]

#: Module-level so a CLI test can make retries instant with ``monkeypatch``.
SLEEP: SleepFn = time.sleep


class YahooUnreachable(SourceError):  # noqa: N818 - a state, not a bug to fix
    """Yahoo could not be reached after retries (no network, DNS, rate limit, timeouts)."""

    def __init__(self, reason: str):
        super().__init__(f"Yahoo Finance could not be reached ({reason}).")
        self.reason = reason


# --------------------------------------------------------------------------- fetching


class _LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.lines.append(record.getMessage())


def _failed_symbols(lines: Sequence[str]) -> dict[str, str]:
    """Parse yfinance's summary lines ``['AAPL', 'MSFT']: reason`` into ``{symbol: reason}``."""
    out: dict[str, str] = {}
    for line in lines:
        for m in re.finditer(r"^(\[[^\]]*\]): (.+)$", line, flags=re.MULTILINE):
            try:
                syms = ast.literal_eval(m.group(1))
            except (ValueError, SyntaxError):
                continue
            for s in syms:
                out[str(s).upper()] = m.group(2).strip()
    return out


def short_reason(text: str) -> str:
    """The gist of a network error line, for a one-sentence message."""
    text = text.strip().splitlines()[-1] if text.strip() else ""
    text = re.sub(r"^Failed to get ticker '[^']*' reason: ", "", text)
    text = re.sub(r"^\[[^\]]*\]: ", "", text)
    text = re.sub(r"^[A-Za-z]+Error\('(.*)'\)$", r"\1", text)
    text = re.sub(r"Failed to perform, curl: \(\d+\) ", "", text)
    text = re.sub(r"\.?\s*See https?://\S+.*$", "", text)
    return text.strip().rstrip(".")[:160] or "network error"


def looks_like_network(text: str) -> bool:
    low = text.lower()
    return any(p in low for p in _NETWORK_PATTERNS)


def yf_download(
    symbols: Sequence[str], *, interval: str, start: datetime | None, end: datetime | None
) -> Any:
    """The default fetch: one ``yf.download`` call, its log captured and classified.

    Raises ``ConnectionError`` when yfinance logged network trouble (retried by the caller);
    otherwise returns the pandas frame, with ``{symbol: reason}`` for failed symbols in
    ``frame.attrs["candletok_errors"]``."""
    if os.environ.get("CANDLETOK_OFFLINE"):
        # Tests and air-gapped machines: never open a connection, fail as "unreachable".
        raise YahooUnreachable("offline mode: CANDLETOK_OFFLINE is set")
    import yfinance as yf

    capture = _LogCapture()
    yf_log = logging.getLogger("yfinance")
    yf_log.addHandler(capture)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame = yf.download(
                list(symbols), start=start, end=end, interval=interval, auto_adjust=True,
                progress=False, group_by="column", threads=min(8, max(1, len(symbols))),
                multi_level_index=True, timeout=20,
            )
    finally:
        yf_log.removeHandler(capture)
    network = [ln for ln in capture.lines if looks_like_network(ln)]
    if network:
        raise ConnectionError(short_reason(network[-1]))
    if frame is not None:
        frame.attrs["candletok_errors"] = _failed_symbols(capture.lines)
    return frame


def looks_offline(exc: BaseException) -> bool:
    """True when ``exc`` says the machine cannot reach the network at all (DNS failure,
    no route, connection refused), as opposed to a slow or rate-limited server."""
    import socket

    if isinstance(exc, (socket.gaierror, ConnectionRefusedError)):
        return True
    text = f"{type(exc).__name__}: {exc}".lower()
    return any(p in text for p in _OFFLINE_PATTERNS)


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    name = type(exc).__name__.lower()
    return any(k in name for k in _TRANSIENT_NAMES) or (
        isinstance(exc, OSError) and looks_like_network(str(exc))
    )


def fetch_with_retry(
    fetch: FetchFn,
    symbols: Sequence[str],
    *,
    interval: str,
    start: datetime | None,
    end: datetime | None,
    retries: int = 3,
    backoff: float = 0.5,
    sleep: SleepFn | None = None,
) -> Any:
    """Call ``fetch``; on a transient network error wait ``backoff * 2**k`` and retry.

    After ``retries`` retries the last error becomes :class:`YahooUnreachable`, and so
    does the first error that says the machine is offline (:func:`looks_offline`: no DNS,
    no route), without waiting; any other exception becomes a :class:`SourceError`."""
    wait = sleep if sleep is not None else SLEEP
    for attempt in range(retries + 1):
        try:
            return fetch(list(symbols), interval=interval, start=start, end=end)
        except YahooUnreachable:
            raise
        except Exception as exc:
            if not _is_transient(exc):
                raise SourceError(
                    f"The Yahoo download failed unexpectedly ({type(exc).__name__}: {exc}); "
                    "try again, or work offline with source='sample' (or 'synthetic', or a "
                    "CSV/Parquet path)."
                ) from exc
            if attempt == retries or looks_offline(exc):
                if attempt < retries:
                    log.debug("Yahoo fetch failed (%s); offline, so no retry", exc)
                raise YahooUnreachable(short_reason(str(exc)) if str(exc).strip()
                                       else type(exc).__name__) from exc
            delay = backoff * 2**attempt
            log.info("Yahoo fetch failed (%s); retrying in %.1fs", exc, delay)
            wait(delay)
    raise AssertionError("unreachable")  # pragma: no cover


# --------------------------------------------------------------------------- reshaping


def _field_level(columns: Any) -> int:
    """Which level of yfinance's 2-level columns holds the field names (Open, Close...)."""
    names = list(columns.names)
    if "Price" in names:
        return names.index("Price")
    if "Ticker" in names:
        return 1 - names.index("Ticker")
    level0 = set(columns.get_level_values(0))
    return 0 if level0 <= YF_FIELDS else 1


def reshape_yf(frame: Any, symbols: Sequence[str]) -> tuple[pl.DataFrame, list[str]]:
    """A yfinance ``download()`` frame as canonical bars (unvalidated), plus the symbols
    that came back empty, all-NaN or missing.

    Handles MultiIndex columns in either level order, flat single-ticker columns
    (``multi_level_index=False``), a tz-naive daily index and a tz-aware intraday index
    (converted to UTC). Rows that are NaN in every price only pad the shared index of a
    multi-ticker download and are dropped; partly-NaN rows are kept for repair to judge.
    """
    import pandas as pd

    wanted = [s.upper() for s in symbols]
    if frame is None or len(frame.columns) == 0:
        return pl.DataFrame(schema=_cache.BARS_SCHEMA), wanted
    cols = frame.columns
    if isinstance(cols, pd.MultiIndex):
        if cols.nlevels != 2:
            raise SourceError(f"Unexpected yfinance column levels {cols.nlevels}; expected 2.")
        fl = _field_level(cols)
        pairs = [(str(c[fl]), str(c[1 - fl]).upper()) for c in cols]
    else:
        if len(wanted) != 1:
            raise SourceError(
                "yfinance returned flat columns for several symbols; cannot tell them apart."
            )
        pairs = [(str(c), wanted[0]) for c in cols]
    flat = frame.copy(deep=False)
    keys = [f"{sym}\x1f{field}" for field, sym in pairs]
    flat.columns = keys
    flat.index = flat.index.rename("__ts")
    pdf = flat.reset_index()
    wide = pl.from_pandas(pdf)
    present = {sym for _, sym in pairs}

    parts: list[pl.DataFrame] = []
    empty: list[str] = []
    for sym in wanted:
        if sym not in present:
            empty.append(sym)
            continue
        fields = {field: f"{sym}\x1f{field}" for field, s in pairs if s == sym}
        if not {"Open", "High", "Low", "Close"} <= set(fields):
            empty.append(sym)
            continue
        raw = wide.select(
            pl.col("__ts").alias("Date"),
            *[pl.col(key).cast(pl.Float64, strict=False).alias(field)
              for field, key in fields.items()
              if field in ("Open", "High", "Low", "Close", "Adj Close", "Volume")],
        )
        raw = raw.with_columns(
            pl.col(f).fill_nan(None) for f in raw.columns if f != "Date"
        ).filter(~pl.all_horizontal(pl.col(["Open", "High", "Low", "Close"]).is_null()))
        if raw.height == 0:
            empty.append(sym)
            continue
        parts.append(canonicalize(raw, symbol=sym, adjust=True))
    if not parts:
        return pl.DataFrame(schema=_cache.BARS_SCHEMA), empty
    return pl.concat(parts, how="vertical").sort("symbol", "ts"), empty


# --------------------------------------------------------------------------- ranges


def resolve_range(
    interval: str, start: datetime | None, end: datetime | None, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """Concrete ``[start, end)`` for a Yahoo request, within Yahoo's intraday history.

    An open start means "as far back as Yahoo keeps" (intraday) or 1930 (daily and up).
    A start older than the intraday limit is clamped with a warning; a range entirely
    outside it is a :class:`SourceError` saying what is possible."""
    now = now or datetime.now(timezone.utc)
    e = end or now
    limit = INTRADAY_LIMITS.get(interval)
    if limit is None:
        return (start or DEFAULT_DAILY_START), e
    earliest = now - limit + timedelta(hours=1)
    if e <= earliest:
        raise SourceError(
            f"Yahoo keeps {interval} bars only for the last {limit.days} days (from "
            f"{earliest:%Y-%m-%d}); ask for a later end=, a longer interval= "
            "or source='synthetic'."
        )
    if start is None:
        return earliest, e
    if start < earliest:
        log.warning(
            "Yahoo keeps %s bars only for the last %d days; starting at %s instead of %s",
            interval, limit.days, f"{earliest:%Y-%m-%d %H:%M}", f"{start:%Y-%m-%d}",
        )
        return earliest, e
    return start, e


def _chunks(interval: str, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """1m bars must be asked for at most ~7 days at a time; other intervals in one piece."""
    if interval != "1m":
        return [(start, end)]
    out: list[tuple[datetime, datetime]] = []
    t = start
    while t < end:
        out.append((t, min(end, t + ONE_MINUTE_CHUNK)))
        t = out[-1][1]
    return out


def _yahoo_interval(interval: str) -> str:
    return "1h" if interval == "60m" else interval


# --------------------------------------------------------------------------- loading


def _fetch_range(
    fetch: FetchFn, symbols: list[str], interval: str, start: datetime, end: datetime,
    *, retries: int, sleep: SleepFn | None,
) -> tuple[pl.DataFrame, list[str], dict[str, str]]:
    frames: list[pl.DataFrame] = []
    got: set[str] = set()
    reasons: dict[str, str] = {}
    for a, b in _chunks(interval, start, end):
        pdf = fetch_with_retry(
            fetch, symbols, interval=_yahoo_interval(interval), start=a, end=b,
            retries=retries, sleep=sleep,
        )
        reasons.update(getattr(pdf, "attrs", {}).get("candletok_errors", {}) or {})
        bars, _ = reshape_yf(pdf, symbols)
        frames.append(bars)
        got.update(bars["symbol"].unique().to_list())
    bars = pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=_cache.BARS_SCHEMA)
    return bars, [s for s in symbols if s not in got], reasons


def load_yahoo(
    symbols: Sequence[str],
    *,
    interval: str = "1d",
    start: datetime | None = None,
    end: datetime | None = None,
    cache_dir: str | Path | None = None,
    fetch: FetchFn | None = None,
    use_cache: bool = True,
    retries: int = 3,
    sleep: SleepFn | None = None,
    now: datetime | None = None,
    repair: bool = True,
) -> pl.DataFrame:
    """Canonical, validated Yahoo bars for ``symbols``, served from the cache when it covers
    the range and otherwise fetched for the missing head/tail only.

    Symbols with cached data whose missing part comes back empty (a weekend, a holiday)
    are fine: the empty range is recorded as covered. A symbol with no bars at all raises
    ``BarsError(rule="fetch_failed")`` naming it (after caching the others). When Yahoo
    is unreachable but every symbol has cached bars, those are served with one line on
    stderr; otherwise :class:`YahooUnreachable` is raised for the caller to handle.

    Fresh bars with broken rows are repaired (and the repair logged); with
    ``repair=False`` they are refused instead with a :class:`BarsError` (bars served from
    the cache were checked when they were fetched).
    """
    fetch = fetch or yf_download
    interval = normalize_interval(interval)
    now = now or datetime.now(timezone.utc)
    syms = [s.upper() for s in symbols]
    s, e = resolve_range(interval, start, end, now)
    # Bars that may still be forming are never recorded as final.
    settled = now - INTERVALS[interval]

    entries = {sym: _cache.read_cache(cache_dir, sym, interval) if use_cache else None
               for sym in syms}
    plan: dict[tuple[tuple[datetime, datetime], ...], list[str]] = {}
    for sym in syms:
        gaps = tuple(_cache.missing_ranges(entries[sym], s, e))
        if gaps:
            plan.setdefault(gaps, []).append(sym)

    failed: dict[str, str] = {}
    try:
        for gaps, group in plan.items():
            for a, b in gaps:
                bars, empty, reasons = _fetch_range(
                    fetch, group, interval, a, b, retries=retries, sleep=sleep
                )
                if bars.height:
                    bars = (_repaired(bars) if repair
                            else strict_bars(bars, what=f"Yahoo {interval} bars"))
                for sym in group:
                    if sym in empty and entries[sym] is None:
                        failed[sym] = reasons.get(sym, "")
                        continue
                    new = bars.filter(pl.col("symbol") == sym)
                    entry = _cache.merge(entries[sym], new, a, min(b, max(a, settled)))
                    entries[sym] = entry
                    if use_cache:
                        use_cache = _cached(cache_dir, sym, interval, entry)
    except YahooUnreachable as exc:
        if not all(entries[sym] is not None for sym in syms):
            raise
        log.warning(
            "Yahoo Finance unreachable (%s); using cached bars (possibly not up to date) "
            "for %s.", exc.reason, ", ".join(syms),
        )
    if failed:
        why = "; ".join(sorted({r for r in failed.values() if r})) or "no data returned"
        rng = f"{interval}, {s:%Y-%m-%d} to {e:%Y-%m-%d}"
        raise BarsError(
            f"Yahoo returned no bars for {', '.join(sorted(failed))} ({rng}: {why}); "
            "check the symbol spelling (e.g. BRK-B, ^GSPC) or the date range.",
            rule="fetch_failed",
        )
    out = [entries[sym].bars for sym in syms if entries[sym] is not None]  # type: ignore[union-attr]
    df = pl.concat(out, how="vertical").select(BARS_COLUMNS).sort("symbol", "ts")
    return finish(df, repair=False, what=f"Yahoo {interval} bars", start=s, end=e)


def _cached(cache_dir: str | Path | None, sym: str, interval: str,
            entry: _cache.CacheEntry) -> bool:
    """Store ``entry`` in the cache; False (after one warning) when the cache cannot be
    written: the bars just fetched are still served, they only are not kept."""
    try:
        _cache.write_cache(cache_dir, sym, interval, entry.bars, entry.start, entry.end)
    except (OSError, CandletokError) as exc:
        where = _cache.cache_path(cache_dir, sym, interval).parent
        log.warning("the cache %s could not be written (%s); using the downloaded bars "
                    "without caching them (set %s to a writable folder).", where,
                    getattr(exc, "strerror", None) or exc, _cache.ENV_VAR)
        return False
    return True


def _repaired(bars: pl.DataFrame) -> pl.DataFrame:
    """Yahoo data can be dirty (zero prices, high < low): repair it and say what changed."""
    try:
        fixed, report = repair_bars(bars)
    except BarsError:
        return bars.clear()
    if report.changed:
        log.warning("Yahoo bars: %s", report.describe())
    return fixed


__all__ = [
    "YahooUnreachable",
    "fetch_with_retry",
    "load_yahoo",
    "reshape_yf",
    "resolve_range",
    "yf_download",
]


def fetch_fresh(
    symbols: Sequence[str],
    *,
    interval: str,
    start: datetime,
    end: datetime,
    fetch: FetchFn | None = None,
    retries: int = 0,
    sleep: SleepFn | None = None,
) -> pl.DataFrame:
    """The bars of ``[start, end)`` straight from Yahoo, never from the cache, repaired (an
    empty frame when none came back yet): what a live poll asks, so that a bar Yahoo
    published late is seen on the next poll even where the cache already counts its time
    as covered. Errors as :func:`fetch_with_retry` (``retries=0``: the caller backs off)."""
    interval = normalize_interval(interval)
    syms = [s.upper() for s in symbols]
    bars, _, _ = _fetch_range(fetch or yf_download, syms, interval, start, end,
                              retries=retries, sleep=sleep)
    return _repaired(bars) if bars.height else bars


def extend_cache(cache_dir: str | Path | None, symbol: str, interval: str,
                 bars: pl.DataFrame, start: datetime, end: datetime) -> bool:
    """Add one symbol's final ``bars``, fetched for ``[start, end)``, to its cache entry
    and count it complete up to ``end``; only an entry whose range reaches ``start`` is
    extended (a hole between them would be recorded as covered). False when nothing was
    written."""
    interval = normalize_interval(interval)
    entry = _cache.read_cache(cache_dir, symbol, interval)
    if entry is None or bars.height == 0 or entry.end < start:
        return False
    merged = _cache.merge(entry, bars.select(BARS_COLUMNS), entry.end, max(end, entry.end))
    return _cached(cache_dir, symbol, interval, merged)
