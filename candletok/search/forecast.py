"""The analogue forecast: what the matches of one query say about the query's own next
bars, the one function ``similar`` prints and the evaluation harness scores.

Two choices turn a set of matches into a forecast, each chosen on val
(``docs/forecasts.md``, *Analogue forecasts*):

* **Weights.** A match nearer the query may speak louder: weight ``w = exp(-(d / b)^2 / 2)``
  on its distance d as the mode reports it, with the bandwidth b the k-th (largest)
  distance of the matches themselves, so the weights depend on no unit of any mode
  (the farthest match keeps ``exp(-1/2)`` = 61% of the nearest's weight). Equal
  distances (``exact`` mode: one distance) give equal weights. The weights' effective
  size (Kish: ``(sum w)^2 / sum w^2``, at most the count) scales the matches' effective
  n, so the intervals widen as the weights concentrate.
* **Units.** The matches' forward returns and next ranges in volatility units (over the
  scale known when each match closed) times the query's own causal scale (the scale its
  next candle will be measured in), so a calm-period analogue speaks to today's
  volatility; or the matches' raw log returns and ranges ("raw %").

The defaults :data:`WEIGHTED` and :data:`RESCALED` are the val winners.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from candletok.core.stats import wilson
from candletok.search.index import SearchIndex
from candletok.search.timerule import Cut, effective_n
from candletok.tokenize.base import Tokenizer
from candletok.tokenize.features import ewma_scale_step, floor_scale

QUANTILES = (0.1, 0.5, 0.9)
WEIGHTED = False  # val: see docs/forecasts.md, "Analogue forecasts"
RESCALED = True  # val: see docs/forecasts.md, "Analogue forecasts"


@dataclass(frozen=True)
class Inputs:
    """What an analogue forecast is made from: the matches (window ends and distances),
    the cross-symbol correlation their effective n uses and the query's next scale."""

    e: np.ndarray
    dist: np.ndarray
    rho: float
    scale: float  # the volatility unit of the query's next candle (causal: known at T)


def kernel_weights(dist: np.ndarray) -> np.ndarray:
    """Gaussian weights on the distances with the largest of them as the bandwidth:
    1 for the nearest possible (d = 0), ``exp(-1/2)`` for the k-th; all equal when the
    distances are (and when every distance is 0 or not finite)."""
    d = np.asarray(dist, dtype=np.float64)
    if d.size == 0:
        return np.zeros(0)
    d = np.where(np.isfinite(d), np.abs(d), np.nan)
    b = float(np.nanmax(d)) if np.isfinite(d).any() else 0.0
    if not b > 0.0 or float(np.nanmin(d)) == b:
        return np.ones(d.size)
    return np.exp(-0.5 * np.square(np.nan_to_num(d, nan=b) / b))


def kish_n(w: np.ndarray) -> float:
    """The weights' effective sample size, ``(sum w)^2 / sum w^2`` (the count when equal)."""
    w = np.asarray(w, dtype=np.float64)
    s2 = float(np.square(w).sum())
    return float(w.sum()) ** 2 / s2 if s2 > 0 else 0.0


def weighted_quantiles(x: np.ndarray, w: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """Quantiles of ``x`` under weights ``w``: the linear interpolation of ``np.quantile``
    (its default, Hyndman-Fan type 7) carried to weights. The i-th order statistic sits
    at the middle of its weight, ``S_i - w_i / 2`` (S: cumulative weights), rescaled so
    that the smallest sits at 0 and the largest at 1; equal weights put it at
    ``(i - 1) / (n - 1)``, which is ``np.quantile(x, qs)`` exactly."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return [float("nan")] * len(qs)
    if x.size == 1:
        return [float(x[0])] * len(qs)
    o = np.argsort(x, kind="stable")
    xs, ws = x[o], np.asarray(w, dtype=np.float64)[o]
    mid = np.cumsum(ws) - ws / 2
    den = mid[-1] - mid[0]
    if not den > 0 or np.all(ws == ws[0]):
        return [float(v) for v in np.quantile(x, qs)]
    pos = (mid - mid[0]) / den
    return [float(v) for v in np.interp(qs, pos, xs)]


def query_scale(idx: SearchIndex, tok: Tokenizer, q_end: int | None,
                candles: pl.DataFrame) -> float:
    """The scale the query's next candle will be measured in, known at its close T: the
    stored scale of the next row of its series when the dataset has one (a function of
    the bars up to T only), else the EWMA stepped once over its last bar (the harness's
    ``History.next_scale`` by the same rule)."""
    if q_end is not None:
        sid = int(idx.sid[q_end])
        if q_end + 1 < int(idx.starts[sid + 1]):
            return float(idx.scale[q_end + 1])
    sc = candles["scale"].to_numpy()
    hi, lo, cl = (candles[c].to_numpy() for c in ("high", "low", "close"))
    prev = float(cl[-2]) if candles.height >= 2 else float("nan")
    if not math.isfinite(prev):
        return float(sc[-1])
    return float(floor_scale(ewma_scale_step(float(sc[-1]), float(hi[-1]), float(lo[-1]),
                                             prev, tok.features), tok.features))


def _ranges(idx: SearchIndex, e1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ln(high / low), its scale) of candles ``e1`` (those with a stored bar)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        lr = np.log(np.asarray(idx.high[e1]) / np.asarray(idx.low[e1]))
    return lr, np.asarray(idx.scale[e1], dtype=np.float64)


def forecast_rows(idx: SearchIndex, cut: Cut, inp: Inputs, horizons: tuple[int, ...],
                  weighted: bool = WEIGHTED, rescaled: bool = RESCALED) -> pl.DataFrame:
    """Per horizon, the analogue forecast of the query: P(up) with its 95% Wilson
    interval on the (weighted) effective n, the 10/50/90% forward log-return quantiles
    and, at h = 1, the next candle's ln(H/L) mean and mean square (``range_mean``,
    ``range_sq``: what the QLIKE of the range forecast reads), in the query's own units
    when ``rescaled``. Only matches whose forward window closed by T count."""
    rows = []
    e_all = np.asarray(inp.e, dtype=np.int64)
    d_all = np.asarray(inp.dist, dtype=np.float64)
    for h in horizons:
        ok = cut.available(e_all, h)
        e, d = e_all[ok], d_all[ok]
        w = kernel_weights(d) if weighted else np.ones(e.size)
        n_cl, _ = effective_n(idx, e, h, inp.rho)
        n_eff = n_cl * (kish_n(w) / e.size) if e.size else 0.0
        r = idx.log_close[e + h] - idx.log_close[e]
        x = r / np.asarray(idx.scale[e + 1]) * inp.scale if rescaled else r
        nan = float("nan")
        row = {"horizon": h, "n": int(e.size), "n_eff": n_eff, "weighted": weighted,
               "rescaled": rescaled, "scale": inp.scale, "p_up": nan, "p_lo": nan,
               "p_hi": nan, "range_mean": nan, "range_sq": nan, "range_pct": nan}
        qs = weighted_quantiles(x, w, QUANTILES)
        for q, v in zip(QUANTILES, qs, strict=True):
            row[f"q{int(q * 100)}_log"] = v
            row[f"q{int(q * 100)}_pct"] = 100.0 * math.expm1(v) if math.isfinite(v) else nan
        if e.size:
            p = float((w * (r > 0)).sum() / w.sum())
            row["p_up"] = p
            row["p_lo"], row["p_hi"] = wilson(p * n_eff, n_eff)
        if h == 1 and e.size:
            lr, sc = _ranges(idx, e + 1)
            good = np.isfinite(lr)
            if good.any():
                y = lr[good] / sc[good] * inp.scale if rescaled else lr[good]
                wg = w[good] / w[good].sum()
                row["range_mean"] = float((wg * y).sum())
                row["range_sq"] = float((wg * np.square(y)).sum())
                row["range_pct"] = 100.0 * math.expm1(row["range_mean"])
        rows.append(row)
    return pl.DataFrame(rows)


__all__ = ["QUANTILES", "RESCALED", "WEIGHTED", "Inputs", "forecast_rows", "kernel_weights",
           "kish_n", "query_scale", "weighted_quantiles"]
