"""The query: the last N candles of a symbol as of a time, from the dataset itself or
from bars the caller brings, and the time T that every answer must respect.

From the dataset, the query candles are the symbol's stored rows up to ``at``: their
tokens, their own stored bars and the features computed from those bars. From bars
(``source=`` or a frame), they are encoded with the dataset's vocabulary. Either way the
nearest mode compares the query candles' own features with the windows' candles' own
features (from the stored bars), and only bars up to T are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import polars as pl

from candletok.core.errors import CandletokError
from candletok.core.times import parse_time
from candletok.search.index import SearchIndex
from candletok.search.timerule import series_limits
from candletok.tokenize.base import Tokenizer
from candletok.tokenize.features import features_from_prices

When = str | date | datetime | None


def to_us(when: When, name: str = "at") -> int | None:
    """A user time as int64 microseconds UTC (None stays None)."""
    dt = parse_time(when, name)
    if dt is None:
        return None
    return int(pl.Series([dt]).cast(pl.Datetime("us", "UTC")).to_physical()[0])


def from_us(us: int) -> datetime:
    return pl.Series([int(us)]).cast(pl.Datetime("us", "UTC")).to_list()[0]


@dataclass
class Query:
    """The query's candles (oldest first), their time T and where its series sits in the
    index (so its own window and neighbours are excluded)."""

    symbol: str
    tokens: np.ndarray  # every candle token up to T available for the query, oldest first
    feats: np.ndarray  # (len(tokens), d) features of those candles
    T: int
    candles: pl.DataFrame  # ts, open, high, low, close, volume, scale (for charts)
    q_sid: int | None
    q_end: int | None
    origin: str  # "dataset" or the source the bars came from

    def last(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        return self.tokens[-n:], self.feats[-n:]


def candles(idx: SearchIndex, a: int, b: int) -> pl.DataFrame:
    """Positions [a, b) of the index as the candles that were: each one's stored bar
    (format 2 datasets keep every candle's own open, high, low and close), never one
    rebuilt from its token, whose representative wicks and gap are only approximate. With
    its volume (NaN where the source had none) and its causal ``scale`` (the volatility
    unit its features were measured in), which the chart's volume panels and
    volatility-unit axes read."""
    ts = pl.Series("ts", np.asarray(idx.ts[a:b])).cast(pl.Datetime("us", "UTC"))
    return pl.DataFrame({"ts": ts, **{c: np.asarray(getattr(idx, c)[a:b], dtype=np.float64)
                                      for c in ("open", "high", "low", "close", "volume",
                                                "scale")}})


def own_features(idx: SearchIndex, tok: Tokenizer, a: int, b: int) -> np.ndarray:
    """(b - a, d) features of positions [a, b) computed from their stored bars, previous
    closes and scales (the map the tokens were encoded from), not their tokens'
    representatives; rows without a stored bar fall back to the representatives (and
    special tokens stay NaN rows).

    ``vol`` (when the vocabulary has it) is ln(volume / the mean of the previous
    ``vol_window`` volumes of the series) over the stored candles: the series' anchor bar
    keeps no volume, so the first ``vol_window`` candles of a series may differ slightly
    from what was encoded."""
    rep = tok.decode_features(np.asarray(idx.tokens[a:b]))
    X = np.empty_like(rep)
    prev = np.asarray(idx.prev_close[a:b])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        X[:, :4] = features_from_prices(
            np.asarray(idx.open[a:b]), np.asarray(idx.high[a:b]), np.asarray(idx.low[a:b]),
            np.asarray(idx.close[a:b]), prev, np.asarray(idx.scale[a:b]))
        if X.shape[1] > 4 and b > a:
            first = np.asarray(idx.starts)[idx.sid[a:b]]  # each position's series start
            s0 = int(first[0])
            firsts = np.concatenate([np.zeros(a - s0, np.int64), first - s0])
            X[:, 4] = _vol_feature(np.asarray(idx.volume[s0:b]), tok.features.vol_window,
                                   firsts)[a - s0:]
    ok = np.isfinite(X[:, :4]).all(axis=1)
    X[~ok] = rep[~ok]
    special = ~np.isfinite(rep).all(axis=1)
    X[special] = np.nan
    return X


def _vol_feature(v: np.ndarray, window: int, firsts: np.ndarray) -> np.ndarray:
    """ln(v / mean of the previous ``window`` positive volumes of the same series, at
    least one), 0 where undefined: the ``vol`` feature's rule, with cumulative sums
    instead of a loop. ``firsts`` is each position's series start."""
    v = np.where(v > 0, v, np.nan)
    ok = np.isfinite(v)
    cs = np.concatenate([[0.0], np.cumsum(np.where(ok, v, 0.0))])
    cn = np.concatenate([[0], np.cumsum(ok)])
    i = np.arange(v.size)
    lo = np.maximum(i - window, firsts)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = (cs[i] - cs[lo]) / (cn[i] - cn[lo])
        out = np.log(v / mean)
    return np.where(np.isfinite(out), out, 0.0)


def _limit(idx: SearchIndex, sid: int, T: int | None) -> int:
    """One past the series' last position with ts <= T (the series end without T)."""
    if T is None:
        return int(idx.starts[sid + 1])
    return int(series_limits(idx, T)[sid])


def from_dataset(idx: SearchIndex, tok: Tokenizer, symbol: str, at: When) -> Query:
    """The symbol's stored candles up to ``at`` (all of them without it). Symbols are
    stored upper-cased, as every source gives them, so ``aapl`` finds ``AAPL``."""
    sid = idx.series_of(symbol)
    if sid is None and idx.series_of(symbol.strip().upper()) is not None:
        symbol = symbol.strip().upper()
        sid = idx.series_of(symbol)
    if sid is None:
        shown = ", ".join(idx.symbols[:10]) + (" ..." if len(idx.symbols) > 10 else "")
        raise CandletokError(
            f"{symbol} is not in the dataset (it has {shown}); pass source= to load its bars."
        )
    start = int(idx.starts[sid])
    end = _limit(idx, sid, to_us(at))
    if end <= start:
        raise CandletokError(f"{symbol} has no candle at or before {at} in the dataset.")
    tokens = np.asarray(idx.tokens[start:end])
    return Query(symbol=symbol, tokens=tokens, feats=own_features(idx, tok, start, end),
                 T=int(idx.ts[end - 1]), candles=candles(idx, start, end), q_sid=sid,
                 q_end=end - 1, origin="dataset")


def from_bars(idx: SearchIndex, tok: Tokenizer, bars: pl.DataFrame, at: When,
              origin: str) -> Query:
    """Canonical bars of one symbol, cut at ``at``, encoded with the dataset's vocabulary."""
    if bars.height == 0:
        raise CandletokError("The query bars are empty.")
    syms = bars["symbol"].unique().to_list()
    if len(syms) != 1:
        raise CandletokError(f"The query bars hold {len(syms)} symbols; give one symbol.")
    cut = to_us(at)
    if cut is not None:
        bars = bars.filter(pl.col("ts").dt.epoch("us") <= cut)
    bars = bars.sort("ts")
    if bars.height < 2:
        raise CandletokError(f"{syms[0]} has fewer than 2 bars at or before {at}; the first "
                             "bar only anchors the next, so there is no candle to match.")
    enc = tok.encode(bars)
    _, X = tok.feature_matrix(bars)
    T = int(enc["ts"].dt.epoch("us")[-1])
    sid = idx.series_of(syms[0])
    q_end = None
    if sid is not None:
        lim = _limit(idx, sid, T)
        q_end = lim - 1 if lim > int(idx.starts[sid]) else None
    c = bars.tail(enc.height).select(
        "ts", "open", "high", "low", "close",
        (pl.col("volume").cast(pl.Float64) if "volume" in bars.columns
         else pl.lit(float("nan"))).fill_null(float("nan")).alias("volume"),
    ).with_columns(scale=enc["scale"].cast(pl.Float64))
    return Query(symbol=syms[0], tokens=enc["token"].to_numpy(), feats=np.asarray(X),
                 T=T, candles=c, q_sid=sid if q_end is not None else None, q_end=q_end,
                 origin=origin)
