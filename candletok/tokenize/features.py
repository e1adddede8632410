"""Candle features in log space, normalized by a causal volatility scale.

For candle t with previous close ``C[t-1]``::

    gap   = ln(O / C[t-1])            body  = ln(C / O)
    upper = ln(H / max(O, C)) >= 0    lower = ln(min(O, C) / L) >= 0
    vol   = ln(V / mean(V[t-N .. t-1]))          (optional; null/zero volume -> 0)

The four price features are divided by ``scale[t]``, an EWMA (``adjust=False``, so its
state is one number) of the log true range ``ln(max(H, C[t-1]) / min(L, C[t-1]))`` over
bars *before* t, seeded with bar 0's ``ln(H/L)`` and floored at ``min_scale``. Dividing by
it is what lets one vocabulary serve calm and wild markets and every ticker; using only
earlier bars is what keeps a token from leaking the future.

The map is exactly invertible given ``C[t-1]`` and ``scale[t]`` (:func:`rebuild_bars`),
which is what makes ``encode(generate_bars(tokens)) == tokens`` possible.

The first bar of each series only provides the anchor close, so it yields no row.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import polars as pl

from candletok.core.errors import TokenizerError

PRICE_FEATURES: tuple[str, ...] = ("gap", "body", "upper", "lower")
# A normalized feature below this in size is exactly 0 (open == previous close, close ==
# open, no wick, or no volume change): the ratio was 1 up to float noise.
ZERO_TOL = 1e-9
# A feature that is 0 on at least this share of the fit candles has a point mass at 0:
# both schemes then give it an exact zero (a bin or centroids with representative 0), so
# a flat open decodes to open == previous close instead of a small gap. Below it an exact
# zero costs more resolution than it buys: on the bundled sample (about 3% flat opens and
# 3% missing wicks) a 1% threshold raised the test p95 close error from 51 to 56 bps
# (bins) and from 34 to 38 (kmeans); a daily index before 2006 has 95-98% flat opens.
POINT_MASS_MIN = 0.05


def zero_shares(X: np.ndarray, names: tuple[str, ...]) -> dict[str, float]:
    """Per feature, the share of rows of ``X`` (n, d) that are exactly 0 (``ZERO_TOL``)."""
    n = max(X.shape[0], 1)
    return {name: float(np.count_nonzero(np.abs(X[:, j]) < ZERO_TOL)) / n
            for j, name in enumerate(names)}


@dataclass(frozen=True)
class FeatureConfig:
    """How candles become feature vectors; saved in every vocab file.

    ``alpha`` is the EWMA weight of the newest true range (0.1 ~ a 19-bar span);
    ``min_scale`` floors the scale so zero-range candles never divide by zero;
    ``volume`` adds the ``vol`` feature over a ``vol_window``-bar mean.
    """

    alpha: float = 0.1
    min_scale: float = 1e-6
    volume: bool = False
    vol_window: int = 20

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha <= 1.0:
            raise TokenizerError(f"FeatureConfig.alpha must be in (0, 1], not {self.alpha}.")
        if not self.min_scale > 0.0:
            raise TokenizerError("FeatureConfig.min_scale must be positive.")
        if self.vol_window < 1:
            raise TokenizerError("FeatureConfig.vol_window must be at least 1.")

    @property
    def names(self) -> tuple[str, ...]:
        """Feature column names, in the order every array in candletok uses."""
        return (*PRICE_FEATURES, "vol") if self.volume else PRICE_FEATURES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise TokenizerError(
                f"Unknown feature setting(s) {sorted(unknown)} in the vocab file; "
                "it was written by a newer candletok."
            )
        return cls(**d)


def _np_log(s: pl.Series) -> pl.Series:
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 -> -inf, <0 -> NaN, as numpy
        return np.log(s)  # the ufunc on a Series keeps its nulls


def _ln(x: pl.Expr) -> pl.Expr:
    """Natural log with numpy's ``log``, not Polars' own.

    The fast path computes in numpy, and numpy's SIMD log and the libm log Polars calls
    disagree in the last bit on a few percent of inputs: every log that feeds a feature
    or a scale goes through numpy, so the two paths (and the fitted edges, and so the
    fingerprints) agree bit for bit.
    """
    return x.map_batches(_np_log, return_dtype=pl.Float64, is_elementwise=True)


# Rows per work item of the numpy kernels: small enough that a chunk's arrays stay in
# cache between the ufunc calls, large enough that each ufunc call runs long against the
# GIL hand-off between the two worker threads (8k-row chunks were 3x slower than 128k).
CHUNK_ROWS = 1 << 17
# EWMA restart: a later series' recursion is stepped vectorized across series until it
# meets the global one bit for bit; after this many e-folds of (1 - alpha) the rest is
# recomputed per series (only flat, non-converging series ever get there).
_RESTART_EFOLDS = 40.0
_RESTART_BLOCK = 64
_WORKERS = max(1, min(2, os.cpu_count() or 1))


@dataclass(frozen=True)
class FeatureArrays:
    """Features of *every* row of a bars frame, as numpy arrays (the fast path's output).

    Row i is computed against row i-1's close; the first row of each series only anchors
    the next candle, so its features are set to 0 and ``keep`` is False exactly there.
    ``X`` is (n, d) float64 in column-major order (each feature contiguous), or None when
    the chunks were handed to a consumer instead of being stored.
    """

    X: np.ndarray | None
    close: np.ndarray
    scale: np.ndarray
    keep: np.ndarray
    starts: np.ndarray  # row index where each series starts (ascending; starts[0] == 0)

    @property
    def first_only(self) -> bool:
        """True when the only dropped row is row 0 (one series): a slice, not a filter."""
        return self.starts.size == 1

    def kept_frame(self, bars: pl.DataFrame, columns: dict[str, np.ndarray]) -> pl.DataFrame:
        """``symbol, ts``, then the full-length ``columns``, then ``prev_close, scale``,
        on the kept rows only (one filter over the frame).

        The previous close is the close shifted inside Polars rather than a numpy copy:
        Polars' allocator reuses its pages from call to call, while a large numpy array is
        fresh memory each time, and page faults cost as much as the arithmetic here.
        """
        df = pl.DataFrame({
            "symbol": bars["symbol"],
            "ts": bars["ts"],
            **columns,
            "prev_close": pl.Series(self.close).shift(1),  # row 0 is a start: dropped
            "scale": self.scale,
        })
        return df.slice(1) if self.first_only else df.filter(pl.Series(self.keep))


def _series_starts(symbol: pl.Series) -> np.ndarray | None:
    """Start row of each run of equal symbols, or None when some symbol has more than one
    run (rows not grouped by symbol: only the per-group Polars path handles that)."""
    runs = symbol.rle()
    lengths = runs.struct.field("len").to_numpy()
    values = runs.struct.field("value")
    if values.n_unique() != values.len():
        return None
    starts = np.zeros(lengths.size, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    return starts


def fast_path_applies(bars: pl.DataFrame, check_runs: bool = True) -> bool:
    """Whether :func:`candle_feature_arrays` handles this frame: some rows, Float64 prices
    without nulls, and (``check_runs``) each symbol's rows contiguous."""
    cols = ("open", "high", "low", "close")
    if bars.height == 0 or "symbol" not in bars.columns:
        return False
    for c in cols:
        if c not in bars.columns or bars.schema[c] != pl.Float64 or bars[c].null_count():
            return False
    return not check_runs or _series_starts(bars["symbol"]) is not None


def _chunks(lo: int, n: int) -> list[tuple[int, int]]:
    return [(s, min(s + CHUNK_ROWS, n)) for s in range(lo, n, CHUNK_ROWS)]


def _ewma_restarted(
    tr: np.ndarray, starts: np.ndarray, alpha: float
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """EWMA (adjust=False) of ``tr`` restarted at every series start, bit for bit what
    ``ewm_mean(...).over("symbol")`` gives, without per-group windows.

    One global Polars ``ewm_mean`` is exact for the first series. For each later series
    the fresh recursion (``e += alpha * (x - e)``, Polars' arithmetic) is stepped from its
    start, ``_RESTART_BLOCK`` steps at a time and vectorized across series, until it
    equals the global value bit for bit: both are then the same deterministic recursion
    on the same inputs, so they agree for the rest of the series. That takes about
    -36/ln(1-alpha) steps; a series that has not met the global path after
    ``_RESTART_EFOLDS`` e-folds (flat data can stall a last ulp apart, NaN never meets)
    is recomputed on its own slice. Returns the global EWMA and (rows, values)
    corrections to apply on top of it.
    """
    n = tr.size
    g = np.empty(n)
    # one global EWMA per part, the parts split at series starts (each part's first row
    # restarts, as its series does) and run on the worker threads (Polars drops the GIL)
    cut = starts[np.searchsorted(starts, np.linspace(0, n, _WORKERS + 1)[1:-1])] if (
        _WORKERS > 1 and n >= 2 * CHUNK_ROWS) else np.empty(0, dtype=np.int64)
    bounds = np.unique(np.concatenate([[0], cut[cut < n], [n]])).tolist()

    def part(i: int) -> None:
        a, b = bounds[i], bounds[i + 1]
        g[a:b] = pl.Series(tr[a:b]).ewm_mean(alpha=alpha, adjust=False).to_numpy()

    with ThreadPoolExecutor(_WORKERS) as ex:
        list(ex.map(part, range(len(bounds) - 1)))
    fixes: list[tuple[np.ndarray, np.ndarray]] = []
    first = starts[1:]
    end = np.append(starts[1:], n)[1:]  # end row of each later series
    pos = first.copy()  # next row to step, per active series
    e = np.empty(first.size)  # recursion state before row ``pos``
    steps = math.ceil(_RESTART_EFOLDS / -math.log1p(-alpha)) if alpha < 1 else 1
    ks = np.arange(_RESTART_BLOCK)[:, None]
    done = 0
    while pos.size and done < steps + _RESTART_BLOCK:
        rows = pos[None, :] + ks  # (block, series) rows stepped in this block
        valid = rows < end[None, :]
        np.minimum(rows, (end - 1)[None, :], out=rows)
        xb = tr[rows]
        ev = np.empty_like(xb)
        k0 = 0
        if done == 0:
            e = xb[0].copy()  # the restart: e = x at the series' first row
            ev[0] = e
            k0 = 1
        for k in range(k0, _RESTART_BLOCK):  # steps since the block start, over series
            e = e + alpha * (xb[k] - e)
            ev[k] = e
        met = (ev == g[rows]) & valid
        hit = met.any(axis=0)
        upto = np.where(hit, met.argmax(axis=0), _RESTART_BLOCK)
        wrong = (ks < upto[None, :]) & valid
        fixes.append((rows[wrong], ev[wrong]))
        more = ~hit & valid[-1]
        pos, e, end, first = pos[more] + _RESTART_BLOCK, e[more], end[more], first[more]
        done += _RESTART_BLOCK
    for s0, s1 in zip(first.tolist(), end.tolist(), strict=True):  # stalled series only
        ew = pl.Series(tr[s0:s1]).ewm_mean(alpha=alpha, adjust=False).to_numpy()
        fixes.append((np.arange(s0, s1), ew))
    return g, fixes


ChunkConsumer = Callable[[int, int, np.ndarray], None]
# (start, stop, R, scale): R holds the four price features' log arguments (the ratios
# O/C[t-1], C/O, H/max(O,C), min(O,C)/L) as float64, before log, scale and clip.
RatioConsumer = Callable[[int, int, np.ndarray, np.ndarray], None]


def candle_feature_arrays(
    bars: pl.DataFrame,
    cfg: FeatureConfig | None = None,
    consume: ChunkConsumer | None = None,
    consume_ratios: RatioConsumer | None = None,
) -> FeatureArrays | None:
    """The fast path of :func:`candle_features`: numpy on contiguous float64 arrays, two
    threads, shifts by one row with the series starts masked, and a restarted global EWMA
    instead of per-symbol ``.over()`` windows. Results are bit-identical to the grouped
    Polars expressions (same IEEE operations in the same order; the EWMA restart is
    exact, see :func:`_ewma_restarted`).

    With ``consume``, each finished chunk ``(start, stop, X_chunk)`` is handed to it on a
    worker thread (X_chunk is a reused, cache-sized buffer: use it before returning)
    instead of being stored, so an encoder never materializes the (n, d) matrix.
    ``consume_ratios`` (price features only) instead gets each chunk's float64 ratios
    ``(start, stop, R, scale)`` before the logs: ``feature j = ln(R[:, j]) / scale``
    (wicks clipped at 0), for consumers that only need to know where the features fall.

    Returns None when the frame is not in the shape the fast path relies on: rows of one
    symbol not contiguous, a null or non-Float64 price, or no rows. Validated bars always
    qualify.
    """
    cfg = cfg or FeatureConfig()
    cols = ("open", "high", "low", "close")
    n = bars.height
    starts = _series_starts(bars["symbol"]) if fast_path_applies(bars, check_runs=False) else None
    if starts is None:
        return None
    frame = bars.select(cols)
    if any(frame[c].n_chunks() > 1 for c in cols):
        frame = frame.rechunk()
    o, h, lo, c = (frame[x].to_numpy() for x in cols)
    d = len(cfg.names)
    vol = _volume_feature(bars, cfg) if cfg.volume else None
    if consume_ratios is not None:
        if cfg.volume:
            raise ValueError("consume_ratios covers the four price features only")
        consume = consume or (lambda s, t, Xc: None)
    X = None if consume is not None else np.empty((d, n)).T  # column-major
    tr = np.empty(n)
    local = threading.local()

    def buf(m: int) -> np.ndarray:
        if getattr(local, "b", None) is None:
            local.b = np.empty(CHUNK_ROWS)
        return local.b[:m]

    def xbuf(m: int) -> np.ndarray:
        if getattr(local, "x", None) is None:
            local.x = np.empty((d, CHUNK_ROWS))
        return local.x[:, :m].T

    def prev(s: int, t: int) -> np.ndarray:
        # C[t-1] for rows s..t-1; row 0 has none (it is a series start): use its own close
        return c[s - 1 : t - 1] if s else np.concatenate([c[:1], c[: t - 1]])

    def true_range_chunk(s: int, t: int) -> None:
        # ln(max(H, C[t-1]) / min(L, C[t-1])); fmax/fmin: max_horizontal ignores NaN too
        pc, b1 = prev(s, t), buf(t - s)
        np.fmax(h[s:t], pc, out=b1)
        np.fmin(lo[s:t], pc, out=tr[s:t])
        np.divide(b1, tr[s:t], out=b1)
        np.log(b1, out=tr[s:t])

    def feature_chunk(s: int, t: int) -> None:
        m = t - s
        Xc = X[s:t] if X is not None else xbuf(m)
        b1, os_, cs, sc = buf(m), o[s:t], c[s:t], scale[s:t]
        for j, (num, den) in enumerate(((os_, prev(s, t)), (cs, os_))):
            np.divide(num, den, out=Xc[:, j])  # gap = ln(O / C[t-1]), body = ln(C / O)
        np.fmax(os_, cs, out=b1)
        np.divide(h[s:t], b1, out=Xc[:, 2])  # upper = ln(H / max(O, C))
        np.fmin(os_, cs, out=b1)
        np.divide(b1, lo[s:t], out=Xc[:, 3])  # lower = ln(min(O, C) / L)
        if consume_ratios is not None:
            consume_ratios(s, t, Xc, sc)
            return
        for j in range(4):
            col = Xc[:, j]
            np.log(col, out=col)
            np.divide(col, sc, out=col)
        for j in (2, 3):  # clip: the wick features are >= 0 by construction
            np.maximum(Xc[:, j], 0.0, out=Xc[:, j])
        if vol is not None:
            Xc[:, 4] = vol[s:t]
        lo_i, hi_i = np.searchsorted(starts, (s, t))
        Xc[starts[lo_i:hi_i] - s] = 0.0  # anchor rows: finite placeholders
        if consume is not None:
            consume(s, t, Xc)

    a, floor = cfg.alpha, cfg.min_scale
    with ThreadPoolExecutor(_WORKERS) as ex:
        list(ex.map(lambda st: true_range_chunk(*st), _chunks(0, n)))
        # a series' first bar has no previous close: its true range is ln(H/L)
        tr[starts] = np.log(h[starts] / lo[starts])
        g, fixes = _ewma_restarted(tr, starts, a)
        scale = tr  # the true range is spent once the EWMA has it: reuse its memory
        scale[0] = floor
        np.fmax(g[:-1], floor, out=scale[1:])  # max_horizontal: a NaN EWMA gives the floor
        for rows, vals in fixes:
            nxt = rows + 1
            ok = nxt < n
            scale[nxt[ok]] = np.fmax(vals[ok], floor)
        list(ex.map(lambda st: feature_chunk(*st), _chunks(0, n)))
    keep = np.ones(n, dtype=bool)
    keep[starts] = False
    return FeatureArrays(X=X, close=c, scale=scale, keep=keep, starts=starts)


def _volume_feature(bars: pl.DataFrame, cfg: FeatureConfig) -> np.ndarray:
    """``vol`` for every row (per-symbol Polars windows; only the optional feature)."""
    v = pl.when(pl.col("volume") > 0).then(pl.col("volume")).otherwise(None)
    vmean = (
        v.shift(1).rolling_mean(window_size=cfg.vol_window, min_samples=1).over("symbol")
    )
    return (
        bars.lazy()
        .select(_ln(v / vmean).fill_null(0.0).fill_nan(0.0).alias("vol"))
        .collect()["vol"]
        .to_numpy()
    )


def frame_from_arrays(bars: pl.DataFrame, fa: FeatureArrays,
                       names: tuple[str, ...]) -> pl.DataFrame:
    """The public features frame, built once, first rows of each series dropped."""
    assert fa.X is not None
    return fa.kept_frame(bars, {name: fa.X[:, j] for j, name in enumerate(names)}).select(
        "symbol", "ts", "prev_close", "scale", *names)


def candle_features(bars: pl.DataFrame, cfg: FeatureConfig | None = None) -> pl.DataFrame:
    """Normalized features of every candle but each series' first (its anchor close).

    ``bars`` is a canonical frame sorted by ``(symbol, ts)``; returns ``symbol, ts,
    prev_close, scale, gap, body, upper, lower[, vol]`` in the same order. Nothing looks
    at a later bar. Frames whose symbols are contiguous runs (validated bars always are)
    take the numpy fast path; any other frame the per-symbol Polars windows, which give
    the same numbers.
    """
    cfg = cfg or FeatureConfig()
    fa = candle_feature_arrays(bars, cfg)
    if fa is None:
        return candle_features_grouped(bars, cfg)
    return frame_from_arrays(bars, fa, cfg.names)


def candle_features_grouped(
    bars: pl.DataFrame, cfg: FeatureConfig | None = None
) -> pl.DataFrame:
    """Reference implementation: per-symbol Polars window expressions (``.over``).

    Works on any row order, treats a null close as a series break; used when the fast
    path does not apply, and by the tests as the ground truth the fast path must match.
    """
    cfg = cfg or FeatureConfig()
    o, h, lo, c = (pl.col(x) for x in ("open", "high", "low", "close"))
    pc = pl.col("prev_close")
    first = pc.is_null()
    tr = _true_range_expr(h, lo, pc)
    cols = ["symbol", "ts", "open", "high", "low", "close"] + (["volume"] if cfg.volume else [])
    lf = bars.lazy().select(cols).with_columns(c.shift(1).over("symbol").alias("prev_close"))
    lf = lf.with_columns(tr.alias("_tr")).with_columns(
        pl.col("_tr").ewm_mean(alpha=cfg.alpha, adjust=False).over("symbol").alias("_ew")
    )
    lf = lf.with_columns(
        pl.max_horizontal(pl.col("_ew").shift(1).over("symbol"), pl.lit(cfg.min_scale))
        .alias("scale")
    )
    s = pl.col("scale")
    top, bot = pl.max_horizontal(o, c), pl.min_horizontal(o, c)
    exprs = [
        (_ln(o / pc) / s).alias("gap"),
        (_ln(c / o) / s).alias("body"),
        # clip: the wick features are >= 0 by construction on validated bars
        (_ln(h / top) / s).clip(lower_bound=0.0).alias("upper"),
        (_ln(bot / lo) / s).clip(lower_bound=0.0).alias("lower"),
    ]
    if cfg.volume:
        v = pl.when(pl.col("volume") > 0).then(pl.col("volume")).otherwise(None)
        lf = lf.with_columns(v.alias("_v")).with_columns(
            pl.col("_v")
            .shift(1)
            .rolling_mean(window_size=cfg.vol_window, min_samples=1)
            .over("symbol")
            .alias("_vmean")
        )
        exprs.append(
            _ln(pl.col("_v") / pl.col("_vmean")).fill_null(0.0).fill_nan(0.0).alias("vol")
        )
    out = (
        lf.filter(~first)
        .select("symbol", "ts", "prev_close", "scale", *exprs)
        .collect()
    )
    return out


def features_from_prices(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    prev_close: np.ndarray,
    scale: np.ndarray,
) -> np.ndarray:
    """The four normalized price features from arrays (numpy twin of the Polars map).

    Used to re-featurize rebuilt bars against a stored ``prev_close``/``scale``.
    """
    top, bot = np.maximum(open_, close), np.minimum(open_, close)
    out = np.empty((np.shape(open_)[0], 4), dtype=np.float64)
    out[:, 0] = np.log(open_ / prev_close) / scale
    out[:, 1] = np.log(close / open_) / scale
    out[:, 2] = np.maximum(np.log(high / top) / scale, 0.0)
    out[:, 3] = np.maximum(np.log(bot / low) / scale, 0.0)
    return out


def rebuild_bars(
    feats: np.ndarray, prev_close: np.ndarray | float, scale: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of the feature map: (n, >=4) normalized features -> O, H, L, C arrays.

    ``feats`` columns are gap, body, upper, lower (a ``vol`` column is ignored); NaN rows
    (special tokens) give NaN prices. A wick of exactly 0 gives ``H == max(O, C)`` exactly,
    so the zero-wick bin survives the trip through prices.
    """
    f = np.asarray(feats, dtype=np.float64)
    s = np.asarray(scale, dtype=np.float64)
    o = np.asarray(prev_close, dtype=np.float64) * np.exp(f[..., 0] * s)
    c = o * np.exp(f[..., 1] * s)
    h = np.maximum(o, c) * np.exp(f[..., 2] * s)
    lo = np.minimum(o, c) * np.exp(-f[..., 3] * s)
    return o, h, lo, c


def true_range(
    high: np.ndarray | float, low: np.ndarray | float, prev_close: np.ndarray | float
) -> np.ndarray:
    """Log true range ``ln(max(H, C[t-1]) / min(L, C[t-1]))`` (numpy, for generation)."""
    return np.log(np.maximum(high, prev_close) / np.minimum(low, prev_close))


def _true_range_expr(h: pl.Expr, lo: pl.Expr, pc: pl.Expr) -> pl.Expr:
    """The log true range as a Polars expression (``ln(H/L)`` for a series' first bar,
    which has no previous close): the one form the reference encoder and
    :func:`scale_state` share, so the scale a continuation starts from is the encoder's."""
    return (
        pl.when(pc.is_null())
        .then(_ln(h / lo))
        .otherwise(_ln(pl.max_horizontal(h, pc) / pl.min_horizontal(lo, pc)))
    )


def ewma_scale_step(
    ewma: np.ndarray | float,
    high: np.ndarray | float,
    low: np.ndarray | float,
    prev_close: np.ndarray | float,
    cfg: FeatureConfig,
) -> np.ndarray:
    """The scale EWMA after one more bar: ``alpha * true_range + (1 - alpha) * ewma``.

    The one home of the causal scale's step outside the vectorized encoder: free-running
    generation (:meth:`~candletok.tokenize.base.Tokenizer.rebuild_paths`) and continuing a
    real series (:func:`candletok.predict.continuation.continue_series`) both step with it.
    The scale the next candle sees is :func:`floor_scale` of the result."""
    return cfg.alpha * true_range(high, low, prev_close) + (1.0 - cfg.alpha) * np.asarray(ewma)


def floor_scale(ewma: np.ndarray | float, cfg: FeatureConfig) -> np.ndarray:
    """The scale a candle sees from the EWMA state after the previous bar: floored at
    ``min_scale`` so that a flat stretch never divides by zero."""
    return np.maximum(ewma, cfg.min_scale)


def scale_state(bars: pl.DataFrame, cfg: FeatureConfig) -> pl.DataFrame:
    """Per symbol: the last close and the scale the *next* (not yet seen) candle would get.

    This is what free-running generation needs to continue a real series right after its
    last bar, with the same arithmetic as :func:`candle_features`.
    """
    h, lo, c = pl.col("high"), pl.col("low"), pl.col("close")
    pc = c.shift(1).over("symbol")
    tr = _true_range_expr(h, lo, pc)
    return (
        bars.lazy()
        .with_columns(tr.alias("_tr"))
        .with_columns(
            pl.col("_tr").ewm_mean(alpha=cfg.alpha, adjust=False).over("symbol").alias("_ew")
        )
        .group_by("symbol", maintain_order=True)
        .agg(
            pl.col("close").last().alias("last_close"),
            pl.max_horizontal(pl.col("_ew").last(), pl.lit(cfg.min_scale)).alias("next_scale"),
        )
        .collect()
    )
