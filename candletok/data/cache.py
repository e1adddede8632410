"""A Parquet cache of downloaded bars, one file per (source, interval, symbol).

Why: Yahoo is slow, rate-limited and sometimes down; a second run over the same range must
be offline. Each file stores the bars *and* the half-open range ``[start, end)`` that was
requested (Parquet key-value metadata), so a range with no bars in it (a weekend, a
holiday) counts as covered and is not fetched again and again. Coverage is kept as one
contiguous range: a request before or after it fetches only the missing head or tail and
extends the file. Files are replaced atomically, so a killed write leaves the old file.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import polars as pl

from candletok.core.atomic import write_parquet_atomic
from candletok.data.bars import BARS_COLUMNS, BARS_SCHEMA, bar_problems

log = logging.getLogger(__name__)

CACHE_FORMAT = "candletok-cache/1"
META_KEY = "candletok.cache"
ENV_VAR = "CANDLETOK_CACHE"


def default_cache_dir() -> Path:
    """``$CANDLETOK_CACHE`` if set, else the platform's user cache dir for candletok."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("candletok"))


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def cache_path(
    cache_dir: str | os.PathLike[str] | None, symbol: str, interval: str, source: str = "yahoo"
) -> Path:
    """Where one symbol's bars live; odd characters (``^GSPC``, ``EURUSD=X``) are %-quoted."""
    name = quote(symbol, safe="-_.") or "_"
    return resolve_cache_dir(cache_dir) / source / interval / f"{name}.parquet"


@dataclass(frozen=True)
class CacheEntry:
    """Cached bars of one symbol and the range ``[start, end)`` they are complete for."""

    bars: pl.DataFrame
    start: datetime
    end: datetime

    def covers(self, start: datetime, end: datetime) -> bool:
        return self.start <= start and end <= self.end


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat()


def read_cache(
    cache_dir: str | os.PathLike[str] | None, symbol: str, interval: str, source: str = "yahoo"
) -> CacheEntry | None:
    """The cached entry, or None when absent; an unreadable file is logged and ignored."""
    path = cache_path(cache_dir, symbol, interval, source)
    if not path.exists():
        return None
    try:
        meta = json.loads(pl.read_parquet_metadata(path)[META_KEY])
        if meta.get("format") != CACHE_FORMAT:
            raise ValueError(f"unknown cache format {meta.get('format')!r}")
        bars = pl.read_parquet(path)
        if dict(bars.schema) != BARS_SCHEMA:
            raise ValueError("unexpected schema")
        start = datetime.fromisoformat(meta["start"])
        end = datetime.fromisoformat(meta["end"])
        _check_entry(bars, meta, symbol, interval)
    except Exception as exc:
        log.warning("ignoring unreadable cache file %s (%s); it will be refetched", path, exc)
        return None
    return CacheEntry(bars=bars, start=start, end=end)


def _check_entry(bars: pl.DataFrame, meta: dict[str, object], symbol: str,
                 interval: str) -> None:
    """Refuse a cache file whose bars are not the ones its name promises (another symbol
    or interval) or break a bar rule: served as they are, such bars fail later with an
    error that names no file, or worse pass. One pass over the bars (``bar_problems``)."""
    if meta.get("symbol") not in (None, symbol) or meta.get("interval") not in (None,
                                                                                 interval):
        raise ValueError(f"it holds {meta.get('symbol')} {meta.get('interval')} bars")
    if bars.height and not (bars["symbol"] == symbol).all():
        raise ValueError(f"it holds bars of {bars['symbol'].unique().head(3).to_list()}")
    problems = bar_problems(bars)
    if problems:
        raise ValueError(f"its bars break the rule(s) {', '.join(problems)}")


def write_cache(
    cache_dir: str | os.PathLike[str] | None,
    symbol: str,
    interval: str,
    bars: pl.DataFrame,
    start: datetime,
    end: datetime,
    source: str = "yahoo",
) -> Path:
    """Atomically store ``bars`` (canonical, one symbol) as complete for ``[start, end)``."""
    path = cache_path(cache_dir, symbol, interval, source)
    meta = {
        "format": CACHE_FORMAT, "source": source, "symbol": symbol, "interval": interval,
        "start": _iso(start), "end": _iso(end), "rows": bars.height,
    }
    bars = bars.select(BARS_COLUMNS).sort("ts")
    return write_parquet_atomic(bars, path, metadata={META_KEY: json.dumps(meta)})


def missing_ranges(
    entry: CacheEntry | None, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """The parts of ``[start, end)`` to fetch so that coverage stays one contiguous range.

    A request disjoint from the cached range also fetches the gap between them."""
    if entry is None:
        return [(start, end)]
    out: list[tuple[datetime, datetime]] = []
    if start < entry.start:
        out.append((start, entry.start))
    if end > entry.end:
        out.append((entry.end, end))
    return out


def merge(entry: CacheEntry | None, new: pl.DataFrame, start: datetime, end: datetime
          ) -> CacheEntry:
    """Cached bars extended by ``new`` (fetched for ``[start, end)``); new rows win on ties."""
    if entry is None:
        return CacheEntry(bars=new.sort("ts"), start=start, end=end)
    both = pl.concat([entry.bars, new], how="vertical")
    both = both.unique(subset=["ts"], keep="last", maintain_order=True).sort("ts")
    return CacheEntry(bars=both, start=min(entry.start, start), end=max(entry.end, end))


def clear_cache(cache_dir: str | os.PathLike[str] | None = None) -> int:
    """Delete every cached bars file; returns how many were removed."""
    root = resolve_cache_dir(cache_dir)
    n = 0
    for p in root.glob("*/*/*.parquet"):
        p.unlink()
        n += 1
    return n
