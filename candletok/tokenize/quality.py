"""How faithfully tokens rebuild the bars: reconstruction errors and bits per candle.

``candletok encode`` reports, per split, the median and p95 error of the rebuilt open,
high, low and close (each candle anchored on its true previous close) and the unigram bits
per candle. The error kernel avoids the decode-and-join of the readable reference
(:func:`reconstruction_errors`) on the fast path, with the same IEEE operations.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl

from candletok.tokenize.base import Tokenizer
from candletok.tokenize.features import fast_path_applies, rebuild_bars


def reconstruction_errors(
    tok: Tokenizer, encoded: pl.DataFrame, bars: pl.DataFrame
) -> pl.DataFrame:
    """|ln(rebuilt / true)| in basis points for O/H/L/C of every encoded candle, each candle
    rebuilt from its own true previous close and scale (anchored decoding)."""
    if encoded.height == 0:
        return pl.DataFrame(schema={c: pl.Float64 for c in ("open", "high", "low", "close")})
    rebuilt = tok.decode(encoded)
    joined = rebuilt.join(bars, on=["symbol", "ts"], suffix="_true")
    return joined.select(
        [
            ((pl.col(c) / pl.col(f"{c}_true")).log().abs() * 1e4).alias(c)
            for c in ("open", "high", "low", "close")
        ]
    )


def entropy_bits(counts: np.ndarray) -> float:
    """Entropy (bits) of the distribution with these counts (NaN when they are all zero):
    the bits per candle of a unigram code. The one home of this formula."""
    c = np.asarray(counts, dtype=np.float64)
    n = c.sum()
    if n <= 0:
        return float("nan")
    p = c[c > 0] / n
    return float(-(p * np.log2(p)).sum()) + 0.0  # one token: 0 bits, not -0


def unigram_bits(tokens: np.ndarray) -> float:
    """Entropy (bits) of the empirical token distribution: bits per candle of a unigram code."""
    return entropy_bits(np.bincount(np.asarray(tokens).astype(np.int64)))


ERR_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")


_ERR_CHUNK = 1 << 16  # rows per work item of the error kernel: its arrays stay in cache


def anchored_errors(
    tok: Tokenizer, enc: pl.DataFrame, bars: pl.DataFrame, pool: ThreadPoolExecutor,
    stride: int = 1,
) -> np.ndarray | None:
    """:func:`reconstruction_errors` without the decode frame and the join: a (4, n)
    array of O/H/L/C errors (bps) aligned with the rows of ``enc``, NaN where the token
    decodes to no price (the join's nulls, which every median skips).

    ``enc`` must be ``tok.encode(bars)`` of bars sorted by (symbol, ts) on the fast path:
    its rows are then the bars' rows minus each series' first. Returns None when that
    alignment cannot be vouched for (the caller then joins). Same IEEE operations as the
    decode + Polars expression (``rebuild_bars``, then ``|ln(rebuilt / true)| * 1e4``),
    computed in cache-sized chunks on ``pool``'s threads. With ``stride`` > 1 only every
    ``stride``-th row is measured (columns of the result = ``enc`` rows ``0, stride, ...``)."""
    if not fast_path_applies(bars, check_runs=False):
        return None
    lengths = bars["symbol"].rle().struct.field("len").to_numpy()
    n = enc.height
    if n != bars.height - lengths.size:
        return None
    keep = np.ones(bars.height, dtype=bool)
    keep[np.cumsum(lengths)[:-1]] = False
    keep[0] = False
    pos = np.flatnonzero(keep)  # the bars row of each encoded row
    tokens = enc["token"].to_numpy()
    pc, sc = enc["prev_close"].to_numpy(), enc["scale"].to_numpy()
    if stride > 1:
        pos, tokens, pc, sc = pos[::stride], tokens[::stride], pc[::stride], sc[::stride]
        n = pos.size
    true = [bars[c].to_numpy() for c in ERR_COLUMNS]
    out = np.empty((len(ERR_COLUMNS), n))

    def work(a: int) -> None:
        b = min(a + _ERR_CHUNK, n)
        rebuilt = rebuild_bars(tok.decode_features(tokens[a:b]), pc[a:b], sc[a:b])
        rows = pos[a:b]
        for j, r in enumerate(rebuilt):
            e = out[j, a:b]
            np.divide(r, true[j][rows], out=e)  # NaN stays NaN through log/abs/scale
            np.log(e, out=e)
            np.abs(e, out=e)
            e *= 1e4

    list(pool.map(work, range(0, n, _ERR_CHUNK)))
    return out


def frame_errors(err: pl.DataFrame) -> np.ndarray:
    """A :func:`reconstruction_errors` frame as a (4, n) array, nulls as NaN."""
    return np.stack([err[c].fill_null(np.nan).to_numpy() for c in ERR_COLUMNS])


def error_stats(parts: list[np.ndarray]) -> tuple[float, float, float, float] | None:
    """Median and p95 of the close errors, then of all four prices pooled, over every
    candle that decodes to a price (exact order statistics: Polars' median and its
    default 'nearest' quantile, as before; the pooled order does not matter). ``parts``
    are (4, k) arrays, NaN already dropped: one concatenation, which Polars reads in place
    (its quantiles on a many-chunk Series were several times slower).
    """
    e = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0] if parts else None
    if e is None or e.shape[1] == 0:
        return None
    c = pl.Series("c", e[ERR_COLUMNS.index("close")])
    v = pl.Series("v", e.reshape(-1))
    return (float(c.median()), float(c.quantile(0.95)),  # type: ignore[arg-type]
            float(v.median()), float(v.quantile(0.95)))  # type: ignore[arg-type]
