"""Forecasters for the point-in-time replay, behind one small interface.

A forecaster is fitted once on a :class:`~candletok.evaluation.history.History` (train rows,
and val rows where it tunes something), then asked for forecasts at origin rows: at the
close of candle t it may read rows up to t of the same series (and any row of an earlier
split), never a later one. The evaluator checks that with a property test.

Each forecast is a :class:`Forecast` holding whichever quantities the forecaster makes:

* ``p_up``: P(close at t + h above the close at t);
* ``range_mean`` and ``range_sq``: the next candle's ln(H/L) and its square, in *raw*
  units that the evaluator maps with one fitted constant each (``a * range_mean`` for the
  range, ``b * range_sq`` for its variance), so that a forecaster is not judged on a
  scale it never had the chance to learn;
* ``quantiles``: the forward log return's quantiles at :data:`LEVELS` (10/50/90%, then
  5/95% so that older code reading the first three columns still reads the same levels);
* ``qgrid``: its quantiles at :data:`CRPS_LEVELS`, a fine grid from which the evaluator
  computes the CRPS (a forecaster without a whole distribution leaves it None);

Each forecaster *declares* what it is a reference for (``roles``: ``"direction"``,
``"range"``, ``"quantiles"``), so that a reference keeps its role whatever its name
or window (:func:`roles_of`).

Forecasters with a next-token distribution (n-gram, CandleGPT) also offer
``bits(hist, rows)``: -log2 P of the candle that came next, a score rather than a
forecast. Distributions are handled in chunks of origins and never kept, so memory stays
bounded on a long test split.

Pattern-search analogues plug in the same way: they return ``p_up`` (and quantiles) from
their matches with ``n_eff`` (the effective number of independent matches), and
:func:`shrink_to_base` pulls a thin sample toward the base rate.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np
import polars as pl

from candletok.core.ids import N_SPECIAL
from candletok.evaluation.history import History, token_up_rates
from candletok.model.baselines import NGramModel, fit_baselines

LEVELS: tuple[float, ...] = (0.1, 0.5, 0.9, 0.05, 0.95)
"""Quantile levels of the forward return forecasts: 10-90% is the 80% interval, 5-95% the
90% one. The 5/95% levels come *after* the old three so that column 0, 1 and 2 still mean
10, 50 and 90% to every reader written before them."""

PINBALL_LEVELS = 3
"""The pinball loss averages the first three levels (10/50/90%), as it always did, so its
figures stay comparable with older runs and forecasters without 5/95% still get one."""

INTERVALS: dict[float, tuple[int, int]] = {0.8: (0, 2), 0.9: (3, 4)}
"""Central intervals scored for coverage: nominal coverage -> (lower, upper) column."""

CRPS_POINTS = 100
CRPS_LEVELS: np.ndarray = (np.arange(CRPS_POINTS) + 0.5) / CRPS_POINTS
"""Mid-point quantile levels: CRPS = 2 * integral over tau of the pinball loss, and the
mid-point rule on this grid is within a fraction of a percent of it for smooth laws (a
test checks a normal against its closed form)."""

ROLES: tuple[str, ...] = ("direction", "range", "quantiles")
"""What a forecaster can be the reference for: P(up), the next range, return quantiles."""

HV_WINDOW = 20
T = TypeVar("T")


@dataclass
class Forecast:
    """Forecasts at ``rows`` (the origins covered: all of those asked, or a subsample)."""

    rows: np.ndarray
    p_up: np.ndarray | None = None
    range_mean: np.ndarray | None = None
    range_sq: np.ndarray | None = None
    quantiles: np.ndarray | None = None  # (n, len(LEVELS))
    n_eff: np.ndarray | None = None
    qgrid: np.ndarray | None = None  # (n, CRPS_POINTS) quantiles at CRPS_LEVELS

    def select(self, keep: np.ndarray) -> Forecast:
        """The forecasts at the positions ``keep`` (a boolean mask or indices)."""
        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[keep]

        return Forecast(self.rows[keep], pick(self.p_up), pick(self.range_mean),
                        pick(self.range_sq), pick(self.quantiles), pick(self.n_eff),
                        pick(self.qgrid))


def pad_levels(q: np.ndarray) -> np.ndarray:
    """(n, k) quantiles at the first k :data:`LEVELS` as (n, len(LEVELS)), NaN for the
    levels a source does not make (the pattern search answers 10/50/90% only)."""
    q = np.asarray(q, dtype=np.float64)
    out = np.full((q.shape[0], len(LEVELS)), np.nan)
    out[:, : q.shape[1]] = q
    return out


def roles_of(f: object) -> frozenset[str]:
    """The roles a forecaster declares (``roles``; none when it declares nothing)."""
    return frozenset(getattr(f, "roles", frozenset()))


@runtime_checkable
class Forecaster(Protocol):
    """What the evaluator needs from a forecaster.

    ``learned`` forecasters have parameters fit on train, so their train forecasts are
    in-sample: their calibration maps and range constants are fit on val. The others'
    one range constant is fit on train."""

    name: str
    learned: bool
    # optional: ``roles``, a frozenset of :data:`ROLES` this forecaster is the reference for

    def fit(self, hist: History) -> None:
        """Learn from the train rows (and tune on val); never read the test rows."""

    def forecast(self, hist: History, rows: np.ndarray, horizon: int) -> Forecast | None:
        """Forecasts made at the close of each origin row, or None for a horizon this
        forecaster does not cover."""


def shrink_to_base(p: np.ndarray, n_eff: np.ndarray, base: float,
                   prior: float = 20.0) -> np.ndarray:
    """An analogue probability pulled toward the base rate: ``(n_eff * p + prior * base) /
    (n_eff + prior)``. With few independent matches the answer is mostly the base rate;
    with many, mostly the matches (a beta prior worth ``prior`` observations)."""
    n = np.maximum(np.asarray(n_eff, dtype=np.float64), 0.0)
    return (n * np.asarray(p, dtype=np.float64) + prior * base) / (n + prior)


def origin_keys(hist: History, seed: int) -> np.ndarray:
    """A fixed pseudo-random key (uint64) per row, from its symbol, its time and ``seed``
    only: a row keeps its key whatever else the history holds, so dropping or adding bars
    elsewhere (after a query time, in another symbol) never changes which of the remaining
    rows a subsample picks. SplitMix64's finalizer mixes the bits."""
    sym = np.array([zlib.crc32(s.encode()) for s in hist.symbols], dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = (hist.ts.astype(np.int64).view(np.uint64) ^ (sym[hist.series] << np.uint64(32))
             ^ (np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)))
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def pick_subsample(hist: History, rows: np.ndarray, size: int, seed: int) -> np.ndarray:
    """A seeded subsample of origins for costly forecasters: the ``size`` rows with the
    smallest :func:`origin_keys`, so the choice does not depend on which horizon or which
    other rows are asked (it mostly overlaps between horizons), nor on bars the history
    holds elsewhere."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size <= size:
        return np.sort(rows)
    key = origin_keys(hist, seed)[rows]
    return np.sort(rows[np.argsort(key, kind="stable")[:size]])


def train_quantiles(hist: History, horizon: int, unit: np.ndarray,
                    levels: tuple[float, ...] | np.ndarray = LEVELS) -> np.ndarray:
    """Unconditional quantiles (at ``levels``) of the train forward log return at
    ``horizon``, in units of ``unit`` (a per-row volatility known at the origin)."""
    rows, _ = hist.origins("train", horizon)
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero unit: flat data, dropped
        z = hist.forward(rows, horizon)["ret"] / unit[rows]
    z = z[np.isfinite(z)]
    if z.size == 0:
        return np.full(len(levels), np.nan)
    return np.quantile(z, levels)


def scaled_quantiles(hist: History, rows: np.ndarray, horizon: int, unit: np.ndarray,
                     cache: _Cache, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """Train quantiles of the forward return in units of ``unit`` (at :data:`LEVELS` and at
    :data:`CRPS_LEVELS`), times the unit at ``rows``: the return spread of every
    volatility forecaster, each in its own unit."""
    q, g = cache.get(hist, (tag, horizon), lambda: (
        train_quantiles(hist, horizon, unit), train_quantiles(hist, horizon, unit,
                                                              CRPS_LEVELS)))
    u = unit[rows][:, None]
    return q[None, :] * u, g[None, :] * u


class _Cache:
    """Per-history memo: values computed from one :class:`History`, forgotten when asked
    about another (keyed by identity, and holding the history so the id stays its own)."""

    def __init__(self) -> None:
        self.hist: History | None = None
        self.values: dict[object, object] = {}

    def get(self, hist: History, key: object, compute: Callable[[], T]) -> T:
        if self.hist is not hist:
            self.hist, self.values = hist, {}
        if key not in self.values:
            self.values[key] = compute()
        return self.values[key]  # type: ignore[return-value]


class BaseRate:
    """The train frequency of an up move at each horizon, and train return quantiles in
    volatility units times the scale known at the origin (the EWMA of the true range)."""

    name = "base rate"
    learned = False
    roles = frozenset({"direction", "quantiles"})

    def __init__(self) -> None:
        self._cache = _Cache()

    def fit(self, hist: History) -> None:
        self._cache = _Cache()

    def rate(self, hist: History, horizon: int) -> tuple[float, np.ndarray]:
        """The train up-frequency at ``horizon`` and the train return quantiles in
        volatility units."""
        def compute() -> tuple[float, np.ndarray]:
            rows, _ = hist.origins("train", horizon)
            p = float(hist.forward(rows, horizon)["up"].mean()) if rows.size else 0.5
            return p, train_quantiles(hist, horizon, hist.next_scale)

        return self._cache.get(hist, horizon, compute)

    def forecast(self, hist: History, rows: np.ndarray, horizon: int) -> Forecast:
        p, _ = self.rate(hist, horizon)
        q, g = scaled_quantiles(hist, rows, horizon, hist.next_scale, self._cache, "q")
        return Forecast(rows, p_up=np.full(rows.size, p), quantiles=q, qgrid=g)


class EWMAVol:
    """The causal EWMA of the log true range (the scale the next candle will be measured
    in) as the next range. Its return spread is the base rate's (same unit)."""

    name = "EWMA"
    learned = False
    roles = frozenset({"range"})

    def fit(self, hist: History) -> None:
        pass

    def forecast(self, hist: History, rows: np.ndarray, horizon: int) -> Forecast | None:
        if horizon != 1:
            return None
        s = hist.next_scale[rows]
        return Forecast(rows, range_mean=s, range_sq=s * s)


def hist_vol(hist: History, window: int = HV_WINDOW) -> np.ndarray:
    """Per row, the standard deviation of the last ``window`` close-to-close log returns
    through that candle (same series; at least 5; NaN before that)."""
    df = pl.DataFrame({"s": hist.series, "r": hist.log_return})
    return df.select(pl.col("r").rolling_std(window, min_samples=5).over("s"))["r"].to_numpy()


class HistVol:
    """The 20-bar historical volatility of close-to-close returns, for the next range and,
    with train quantiles in its own units, for the return spread."""

    learned = False
    roles = frozenset({"range"})

    def __init__(self, window: int = HV_WINDOW) -> None:
        self.window = window
        self.name = f"HistVol{window}"
        self._cache = _Cache()

    def fit(self, hist: History) -> None:
        self._cache = _Cache()

    def vol(self, hist: History) -> np.ndarray:
        return self._cache.get(hist, "vol", lambda: hist_vol(hist, self.window))

    def forecast(self, hist: History, rows: np.ndarray, horizon: int) -> Forecast:
        v = self.vol(hist)
        q, g = scaled_quantiles(hist, rows, horizon, v, self._cache, "q")
        ok = np.isfinite(v[rows]) & (v[rows] > 0)
        fc = Forecast(rows, quantiles=q, qgrid=g)
        if horizon == 1:
            fc.range_mean, fc.range_sq = v[rows], v[rows] ** 2
        return fc.select(ok)


@dataclass
class TokenTable:
    """What each candle token meant for the forecast quantities on train, in volatility
    units: a token is a bin of candles, and its representative alone understates the
    spread inside the bin (with a coarse vocabulary the 10-90% interval of the
    representatives' mixture covered about 60% of outcomes instead of 80%). So, like the
    up rates, every figure is learned from the train candles of that token, smoothed
    toward the representative with the weight of ``prior`` candles (a token unseen in
    train keeps its representative)."""

    up: np.ndarray  # (n_candle,) P(close up | token)
    rng: np.ndarray  # E[ln(H/L) / scale | token]
    rng_sq: np.ndarray  # E[(ln(H/L) / scale)^2 | token]
    grid: np.ndarray  # (G,) return grid in volatility units
    cdf: np.ndarray  # (n_candle, G) P(ln(C / C_prev) / scale <= grid | token)

    @classmethod
    def build(cls, hist: History, up_rates: np.ndarray | None = None, prior: float = 2.0,
              points: int = 1024) -> TokenTable:
        tok = hist.tok
        Vc = tok.vocab_size - N_SPECIAL
        F = np.asarray(tok.decode_features(np.arange(N_SPECIAL, tok.vocab_size)), np.float64)
        up = token_up_rates(hist) if up_rates is None else np.asarray(up_rates, np.float64)
        tr = hist.split == 0
        k = hist.token[tr] - N_SPECIAL
        s = hist.scale[tr]
        z = hist.log_return[tr] / s
        r = hist.log_range[tr] / s
        n = np.bincount(k, minlength=Vc)[:Vc] + prior
        rep_ret, rep_rng = F[:, 0] + F[:, 1], F[:, 2] + F[:, 3] + np.abs(F[:, 1])
        rng = (np.bincount(k, weights=r, minlength=Vc)[:Vc] + prior * rep_rng) / n
        rng_sq = (np.bincount(k, weights=r * r, minlength=Vc)[:Vc] + prior * rep_rng ** 2) / n
        both = np.concatenate([z[np.isfinite(z)], rep_ret])
        grid = np.linspace(both.min(), both.max(), points)
        cell = np.arange(Vc) * points  # each token's row in the flattened (Vc, G) table
        counts = (np.bincount(cell[k] + np.searchsorted(grid, z), minlength=Vc * points)
                  + prior * np.bincount(cell + np.searchsorted(grid, rep_ret),
                                        minlength=Vc * points))
        cdf = np.cumsum(counts[: Vc * points].reshape(Vc, points), axis=1) / n[:, None]
        return cls(up[N_SPECIAL:], rng, rng_sq, grid, cdf)


def rowwise_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` with every row's result bit for bit the same whichever other rows it is
    computed with. Why: BLAS picks its kernel by shape (a single row goes through gemv,
    not gemm) and vectorizes across rows, so the same row one ulp apart was enough to make
    ``predict --at T`` differ from the row ``evaluate --forecasts`` wrote for T; shown
    must equal scored exactly. ``einsum`` without path optimization never calls BLAS: it
    sums each output over ``a``'s columns in one fixed order."""
    return np.einsum("ij,jk->ik", a, b, optimize=False)


#: Booleans (rows x grid points x levels) one block of :func:`mixture_quantiles` compares.
QUANTILE_BLOCK_CELLS = 1 << 22


def mixture_quantiles(dist: np.ndarray, table: TokenTable,
                      levels: tuple[float, ...] | np.ndarray = LEVELS) -> np.ndarray:
    """(n, len(levels)) quantiles, in volatility units, of the return whose distribution
    is the ``dist``-weighted mixture of the tokens' train returns (linear between grid
    points)."""
    cdf = rowwise_matmul(np.asarray(dist, dtype=np.float64), table.cdf)  # (n, G)
    cdf /= np.maximum(cdf[:, -1:], 1e-300)
    g = table.grid
    lv = np.asarray(levels, dtype=np.float64)
    out = np.empty((cdf.shape[0], lv.size))
    # every level at once over blocks of rows (a loop over ~100 levels cost a single origin,
    # a live update, 20 ms of call overhead); the same elementwise operations on the same
    # numbers, so each row's quantiles are the same bits whatever the block size
    step = max(1, QUANTILE_BLOCK_CELLS // max(1, g.size * lv.size))
    for a in range(0, cdf.shape[0], step):
        c = cdf[a:a + step]
        rows = np.arange(c.shape[0])[:, None]
        i = np.clip((c[:, :, None] < lv[None, None, :]).sum(axis=1), 1, g.size - 1)
        c0, c1 = c[rows, i - 1], c[rows, i]
        w = np.where(c1 > c0, (lv - c0) / np.where(c1 > c0, c1 - c0, 1.0), 1.0)
        out[a:a + step] = g[i - 1] + np.clip(w, 0.0, 1.0) * (g[i] - g[i - 1])
    return out


def token_forecast(rows: np.ndarray, dist: np.ndarray, table: TokenTable,
                   scale: np.ndarray) -> Forecast:
    """Push next-token distributions (n, n_candle) through the token table: P(up), the
    range and its square, and the quantiles of the return mixture, times ``scale``."""
    d = np.asarray(dist, dtype=np.float64)
    both = mixture_quantiles(d, table, (*LEVELS, *CRPS_LEVELS)) * scale[:, None]
    m = rowwise_matmul(d, np.column_stack([table.up, table.rng, table.rng_sq]))
    return Forecast(rows, p_up=m[:, 0], range_mean=m[:, 1] * scale,
                    range_sq=m[:, 2] * scale ** 2,
                    quantiles=both[:, : len(LEVELS)], qgrid=both[:, len(LEVELS):])


DistChunks = Iterator[tuple[slice, np.ndarray]]
"""Next-token distributions of consecutive slices of the origins, chunk by chunk."""

CHUNK_CELLS = 4_000_000  # origins x tokens per chunk (32 MB of float64)


def chunk_size(n_candles: int) -> int:
    return max(1, CHUNK_CELLS // max(1, n_candles))


def forecast_from(rows: np.ndarray, chunks: DistChunks, table: TokenTable,
                  scale: np.ndarray) -> Forecast:
    """:func:`token_forecast` over chunks of origins, glued back together."""
    parts = [token_forecast(rows[sl], d, table, scale[sl]) for sl, d in chunks]
    if not parts:
        return Forecast(rows, np.zeros(0), np.zeros(0), np.zeros(0),
                        np.zeros((0, len(LEVELS))), qgrid=np.zeros((0, CRPS_POINTS)))

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(p, name) for p in parts])

    return Forecast(rows, cat("p_up"), cat("range_mean"), cat("range_sq"), cat("quantiles"),
                    qgrid=cat("qgrid"))


def bits_from(hist: History, rows: np.ndarray, chunks: DistChunks) -> np.ndarray:
    """-log2 P(the candle that came after each origin), chunk by chunk."""
    out = np.empty(rows.size)
    nxt = hist.token[np.minimum(rows + 1, hist.n - 1)] - N_SPECIAL
    for sl, d in chunks:
        p = d[np.arange(d.shape[0]), nxt[sl]]
        out[sl] = -np.log2(np.maximum(p, 1e-300))
    return out


class NGram:
    """The smoothed n-gram of the order (0-3) with the fewest bits per candle on val, as
    :func:`candletok.model.evaluate.compare_to_baselines` picks it; h = 1 only."""

    learned = True

    def __init__(self) -> None:
        self.name = "n-gram"
        self.model: NGramModel | None = None
        self.table: TokenTable | None = None
        self.val_bits: dict[str, float] = {}

    def fit(self, hist: History) -> None:
        V = int(hist.tok.vocab_size)
        train, val = hist.series_tokens("train"), hist.series_tokens("val")
        models = fit_baselines(train, V, tune=val or None)
        cands = {k: m for k, m in models.items() if m is not None}
        self.val_bits = {k: m.bits_per_candle(val) if val else math.nan
                         for k, m in cands.items()}
        best = min(cands, key=lambda k: self.val_bits[k]) if val else "ngram-1"
        self.model = cands[best]
        self.name = best
        self.table = TokenTable.build(hist)

    def dists(self, hist: History, rows: np.ndarray) -> DistChunks:
        """Next-token distributions at ``rows``, chunk by chunk."""
        assert self.model is not None
        k = max(1, self.model.order)
        step = chunk_size(self.model.n_candles)
        for a in range(0, rows.size, step):
            yield slice(a, a + step), self.model.distribution(hist.contexts(rows[a:a + step], k))

    def forecast(self, hist: History, rows: np.ndarray, horizon: int) -> Forecast | None:
        if horizon != 1 or self.model is None or self.table is None:
            return None
        return forecast_from(rows, self.dists(hist, rows), self.table, hist.next_scale[rows])

    def bits(self, hist: History, rows: np.ndarray) -> np.ndarray:
        return bits_from(hist, rows, self.dists(hist, rows))

