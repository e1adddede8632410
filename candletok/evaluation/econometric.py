"""The econometric references of the replay: GARCH(1,1) with Student-t innovations (fit by
``arch`` on each series' train returns, filtered forward point in time) and a HAR model of
the log Parkinson range variance (1-, 5- and 22-bar means, least squares on train).

The forecasters a quant would use before any language model, kept apart from
:mod:`candletok.evaluation.forecasters` (the interface, the base rate, EWMA, HistVol and the
token forecasters) because they are fits of their own; each declares the roles it is a
reference for. Both fits give the same bits on any thread count (one BLAS thread for the
optimizer, einsum for HAR's normal equations), so a Predictor refitting them answers with
the numbers evaluate's forecasts file holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from candletok.evaluation.forecasters import (
    CRPS_LEVELS,
    LEVELS,
    Forecast,
    _Cache,
    scaled_quantiles,
)
from candletok.evaluation.history import History

GARCH_MIN_TRAIN = 250
"""Fewest finite train returns a series needs for its own GARCH fit (else no forecast)."""
PCT = 100.0  # arch fits returns in percent: its optimizer is tuned for that scale


def garch_backcast(resid: np.ndarray) -> float:
    """arch's GARCH backcast: the 0.94-weighted mean of the first (up to) 75 squared
    residuals. Taken on the demeaned train returns it is where arch's own fit started
    the recursion, so the filter below reproduces arch's variances on the train rows."""
    tau = min(75, resid.size)
    w = 0.94 ** np.arange(tau)
    return float(np.sum(resid[:tau] ** 2 * (w / w.sum())))


def garch_filter(resid: np.ndarray, omega: float, alpha: float, beta: float,
                 backcast: float) -> np.ndarray:
    """One-step GARCH(1,1) variances ``s[t] = Var(r[t + 1] | r up to t)`` for every t of
    one series, with fixed parameters.

    The recursion ``s[t] = omega + alpha * e[t]**2 + beta * s[t - 1]`` is a first-order
    linear filter of the squared residuals, so scipy's ``lfilter`` runs it in C with no
    Python loop per candle; ``s[-1]`` is arch's first conditional variance
    ``omega + (alpha + beta) * backcast``. Each s[t] reads residuals up to t only."""
    from scipy.signal import lfilter

    x = omega + alpha * np.asarray(resid, dtype=np.float64) ** 2
    s0 = omega + (alpha + beta) * backcast
    y, _ = lfilter([1.0], [1.0, -beta], x, zi=[beta * s0])
    return y


@dataclass
class GARCHFit:
    """One series' GARCH(1,1)-t parameters (returns in percent) and its filter's start."""

    mu: float
    omega: float
    alpha: float
    beta: float
    nu: float
    backcast: float


def fit_garch_t(returns: np.ndarray) -> GARCHFit | None:
    """GARCH(1,1) with a constant mean and Student-t innovations, fit by arch on one
    series' train returns (None when too short or the fit fails)."""
    r = PCT * np.asarray(returns, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size < GARCH_MIN_TRAIN or not np.ptp(r) > 0:
        # returns that never move have no variance to model: arch would only divide by 0
        return None
    from arch import arch_model  # lazy: import candletok stays light
    from threadpoolctl import threadpool_limits

    try:
        # one BLAS thread: the optimizer's steps round alike on any machine, so a
        # Predictor refitting it gets the parameters evaluate's forecasts file used
        with threadpool_limits(1):
            res = arch_model(r, mean="Constant", vol="GARCH", p=1, q=1, dist="t",
                             rescale=False).fit(disp="off", show_warning=False)
    except (ValueError, np.linalg.LinAlgError):
        return None
    mu, omega, alpha, beta, nu = (float(res.params[k]) for k in
                                  ("mu", "omega", "alpha[1]", "beta[1]", "nu"))
    # arch's fit started its recursion from the backcast of the demeaned train returns
    return GARCHFit(mu, omega, alpha, beta, nu, garch_backcast(r - r.mean()))


class GARCHt:
    """GARCH(1,1) with Student-t innovations: parameters fit by arch on each series' train
    returns, then filtered forward with those fixed parameters over every later row
    (:func:`garch_filter`), so the variance at origin t reads returns up to t only.

    The next range's raw forecasts are the one-step standard deviation and variance (the
    evaluator's one constant per loss maps a return variance to a range); the return
    quantiles at h = 1 are the fitted t's, at h > 1 train quantiles in units of the
    h-step volatility (the GARCH variance path summed over the horizon)."""

    name = "GARCH-t"
    learned = True  # parameters fit on train: its train forecasts are in-sample
    roles = frozenset({"range"})

    def __init__(self) -> None:
        self.fits: dict[str, GARCHFit] = {}
        self._cache = _Cache()

    def fit(self, hist: History) -> None:
        self._cache = _Cache()
        self.fits = {}
        r = hist.log_return
        for k, sym in enumerate(hist.symbols):
            a, b = int(hist.starts[k]), int(hist.ends[k])
            tr = hist.split[a:b] == 0
            g = fit_garch_t(r[a:b][tr])
            if g is not None:
                self.fits[sym] = g

    def variance(self, hist: History) -> np.ndarray:
        """Per row t, Var(r[t + 1] | returns up to t) in log-return units (NaN for a series
        without a fit). The backcast is the train one (rows of an earlier split)."""
        def compute() -> np.ndarray:
            out = np.full(hist.n, np.nan)
            r = PCT * hist.log_return
            for k, sym in enumerate(hist.symbols):  # one C-level recursion per series
                g = self.fits.get(sym)
                if g is None:
                    continue
                a, b = int(hist.starts[k]), int(hist.ends[k])
                e = np.where(np.isfinite(r[a:b]), r[a:b] - g.mu, 0.0)
                out[a:b] = garch_filter(e, g.omega, g.alpha, g.beta, g.backcast) / PCT ** 2
            return out

        return self._cache.get(hist, "var", compute)

    def params(self, hist: History, name: str) -> np.ndarray:
        """One fitted parameter per row (NaN for a series without a fit)."""
        vals = np.array([getattr(self.fits[s], name) if s in self.fits else np.nan
                         for s in hist.symbols])
        return vals[hist.series]

    def horizon_variance(self, hist: History, horizon: int) -> np.ndarray:
        """Var of the h-step return at each origin: the sum of the GARCH variance path,
        ``sum_k (uncond + (alpha + beta)**k * (s1 - uncond))`` for k < h."""
        s1 = self.variance(hist)
        if horizon == 1:
            return s1
        pers = self.params(hist, "alpha") + self.params(hist, "beta")
        unc = self.params(hist, "omega") / np.maximum(1.0 - pers, 1e-6) / PCT ** 2
        k = np.arange(horizon)[None, :]
        return (unc[:, None] + pers[:, None] ** k * (s1 - unc)[:, None]).sum(axis=1)

    def forecast(self, hist: History, rows: np.ndarray, horizon: int) -> Forecast | None:
        if not self.fits:
            return None
        from scipy import stats

        var = self.horizon_variance(hist, horizon)
        sd = np.sqrt(var)
        ok = np.isfinite(sd[rows]) & (sd[rows] > 0)
        if horizon == 1:
            nu = self.params(hist, "nu")[rows]
            mu = self.params(hist, "mu")[rows] / PCT
            unit = np.sqrt(np.maximum(nu - 2.0, 1e-6) / nu)  # a unit-variance t
            lv = np.asarray((*LEVELS, *CRPS_LEVELS))
            z = stats.t.ppf(lv[None, :], np.where(np.isfinite(nu), nu, 5.0)[:, None])
            q = mu[:, None] + (sd[rows] * unit)[:, None] * z
            fc = Forecast(rows, range_mean=sd[rows], range_sq=var[rows],
                          quantiles=q[:, : len(LEVELS)], qgrid=q[:, len(LEVELS):])
        else:
            q, g = scaled_quantiles(hist, rows, horizon, sd, self._cache, ("q", horizon))
            fc = Forecast(rows, quantiles=q, qgrid=g)
        return fc.select(ok)


HAR_LAGS: tuple[int, ...] = (1, 5, 22)
"""HAR windows in bars: a day, a week and a month of daily bars (Corsi 2009)."""


def parkinson_log_var(hist: History) -> np.ndarray:
    """ln of Parkinson's range variance ``ln(H/L)**2 / (4 ln 2)`` of every candle, a
    zero range floored at the tokenizer's ``min_scale`` (it has no log)."""
    floor = float(getattr(getattr(hist.tok, "features", None), "min_scale", 1e-6))
    r = np.maximum(hist.log_range, floor)
    return np.log(r * r / (4.0 * math.log(2.0)))


def har_design(x: np.ndarray, series: np.ndarray,
               lags: tuple[int, ...] = HAR_LAGS) -> np.ndarray:
    """(n, 1 + len(lags)) HAR regressors at each row: a constant and the means of ``x``
    over the last 1, 5 and 22 rows of the same series through that row (NaN until a
    window is full). Rolling means by polars, per series."""
    df = pl.DataFrame({"s": series, "x": x})
    cols = [pl.col("x").rolling_mean(w, min_samples=w).over("s").alias(f"m{w}") for w in lags]
    m = df.select(cols).to_numpy()
    return np.column_stack([np.ones(x.size), m])


def fit_har(x: np.ndarray, series: np.ndarray, train: np.ndarray,
            lags: tuple[int, ...] = HAR_LAGS) -> tuple[np.ndarray, float]:
    """Least-squares HAR coefficients of ``x[t + 1]`` on :func:`har_design` at t, over the
    rows t where t and t + 1 are train rows of the same series, and the residual
    variance. Returns (coefficients, residual variance)."""
    X = har_design(x, series, lags)
    nxt = np.r_[x[1:], np.nan]
    same = np.r_[series[1:] == series[:-1], False]
    use = (train & np.r_[train[1:], False] & same & np.isfinite(X).all(axis=1)
           & np.isfinite(nxt))
    if use.sum() <= X.shape[1]:
        return np.full(X.shape[1], np.nan), math.nan
    # normal equations summed by einsum, not BLAS: the same bits on any thread count, so
    # a Predictor refitting HAR gives the coefficients evaluate's file was written with
    Xu, yu = X[use], nxt[use]
    # least squares on the 4 x 4 normal equations: a singular one (flat data) still solves
    beta = np.linalg.lstsq(np.einsum("ij,ik->jk", Xu, Xu, optimize=False),
                           np.einsum("ij,i->j", Xu, yu, optimize=False), rcond=None)[0]
    resid = yu - np.einsum("ij,j->i", Xu, beta, optimize=False)
    return beta, float(np.einsum("i,i->", resid, resid, optimize=False)
                       / max(1, use.sum() - X.shape[1]))


class HARRange:
    """HAR of the log Parkinson range variance: ``ln RV[t + 1]`` regressed on its 1-, 5-
    and 22-bar means through t (four coefficients, least squares on the train rows of
    every series pooled). Its variance forecast is ``exp(fit + s2 / 2)``, the log-normal
    mean, and the range ``exp(fit / 2 + s2 / 8)``; the return quantiles at h = 1 are train
    quantiles in units of its volatility.

    Parkinson and not Garman–Klass: a dataset row keeps high, low and close but not the
    open, which Garman–Klass needs."""

    name = "HAR-RV"
    learned = True  # coefficients fit on train
    roles = frozenset({"range"})

    def __init__(self, lags: tuple[int, ...] = HAR_LAGS) -> None:
        self.lags = lags
        self.coef = np.full(1 + len(lags), np.nan)
        self.resid_var = math.nan
        self._cache = _Cache()

    def fit(self, hist: History) -> None:
        self._cache = _Cache()
        self.coef, self.resid_var = fit_har(parkinson_log_var(hist), hist.series,
                                            hist.split == 0, self.lags)

    def log_var(self, hist: History) -> np.ndarray:
        """The fitted ln RV of the next candle at every row (NaN before 22 bars)."""
        return self._cache.get(hist, "fit", lambda: np.einsum(  # rowwise: no BLAS
            "ij,j->i", har_design(parkinson_log_var(hist), hist.series, self.lags),
            self.coef, optimize=False))

    def forecast(self, hist: History, rows: np.ndarray, horizon: int) -> Forecast | None:
        if horizon != 1 or not np.isfinite(self.coef).all():
            return None
        f = self.log_var(hist)
        s2 = self.resid_var
        sd = np.exp(f / 2.0 + s2 / 8.0)
        q, g = scaled_quantiles(hist, rows, 1, sd, self._cache, "q")
        fc = Forecast(rows, range_mean=sd[rows], range_sq=np.exp(f[rows] + s2 / 2.0),
                      quantiles=q, qgrid=g)
        return fc.select(np.isfinite(f[rows]))
