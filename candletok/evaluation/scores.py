"""Proper scores, their baselines and their uncertainty: the yardsticks of every forecast.

Everything here is a plain function of numpy arrays so that each can be checked against a
hand computation. Intervals come from a circular block bootstrap over *dates* (forecasts
of one date across symbols share the market, and overlapping horizons share bars, so
neither rows nor dates are independent); scipy has no block bootstrap, and the one in
``arch`` would bring pandas and statsmodels for thirty lines of index arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats


def brier(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-forecast Brier loss ``(p - y)**2`` of a probability ``p`` for a 0/1 outcome."""
    return (np.asarray(p, dtype=np.float64) - np.asarray(y, dtype=np.float64)) ** 2


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> list[tuple[float, float,
                                                                           float, int]]:
    """Reliability table over equal-width probability bins: ``(bin lower edge, mean
    forecast, observed frequency, count)`` for every non-empty bin."""
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    b = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    cnt = np.bincount(b, minlength=bins)
    mp = np.bincount(b, weights=p, minlength=bins) / np.maximum(cnt, 1)
    of = np.bincount(b, weights=y, minlength=bins) / np.maximum(cnt, 1)
    return [(float(edges[i]), float(mp[i]), float(of[i]), int(cnt[i]))
            for i in np.flatnonzero(cnt)]


def ece(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: the count-weighted mean |mean forecast - frequency|
    over the reliability bins."""
    table = reliability(p, y, bins)
    n = sum(r[3] for r in table)
    return float(sum(r[3] * abs(r[1] - r[2]) for r in table) / n) if n else float("nan")


def qlike(forecast_var: np.ndarray, realized_var: np.ndarray) -> np.ndarray:
    """QLIKE loss ``r/f - ln(r/f) - 1`` of a variance forecast ``f`` for a realized
    variance proxy ``r`` (0 when equal; robust to noise in the proxy, Patton 2011)."""
    ratio = np.asarray(realized_var, dtype=np.float64) / np.asarray(forecast_var, np.float64)
    return ratio - np.log(ratio) - 1.0


def pinball(q_pred: np.ndarray, y: np.ndarray, level: float) -> np.ndarray:
    """Pinball (quantile) loss of the ``level`` quantile forecast ``q_pred``."""
    u = np.asarray(y, dtype=np.float64) - np.asarray(q_pred, dtype=np.float64)
    return np.maximum(level * u, (level - 1.0) * u)


@dataclass(frozen=True)
class DMTest:
    """Diebold–Mariano test of equal expected loss. ``mean_diff`` is the mean of
    ``loss_a - loss_b`` (negative: a is better), ``stat`` the HAC t-statistic and
    ``p_value`` its two-sided p-value (Student t with n - 1 degrees of freedom after the
    Harvey–Leybourne–Newbold small-sample correction)."""

    mean_diff: float
    stat: float
    p_value: float
    n: int


def hac_variance(d: np.ndarray, lag: int) -> float:
    """Newey–West (Bartlett kernel) long-run variance of the series ``d``."""
    d = np.asarray(d, dtype=np.float64)
    n = d.size
    e = d - d.mean()
    v = float(e @ e) / n
    for k in range(1, min(lag, n - 1) + 1):  # lag <= horizon: a handful of array ops
        v += 2.0 * (1.0 - k / (lag + 1)) * float(e[k:] @ e[:-k]) / n
    return v


def diebold_mariano(loss_a: np.ndarray, loss_b: np.ndarray, horizon: int = 1) -> DMTest:
    """DM test of ``loss_a`` against ``loss_b`` (one loss per date, in time order).

    Forecasts ``horizon`` steps ahead overlap, so the loss differential is MA(h-1): its
    variance is the Newey–West estimate with ``horizon - 1`` lags (at least the plain
    variance)."""
    d = np.asarray(loss_a, dtype=np.float64) - np.asarray(loss_b, dtype=np.float64)
    n = d.size
    if n < 3:
        return DMTest(float(d.mean()) if n else float("nan"), float("nan"), float("nan"), n)
    h = max(1, int(horizon))
    var = hac_variance(d, h - 1)
    if var <= 0:
        return DMTest(float(d.mean()), float("nan"), float("nan"), n)
    dm = float(d.mean()) / math.sqrt(var / n)
    hln = math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    stat = dm * hln
    return DMTest(float(d.mean()), stat, float(2 * stats.t.sf(abs(stat), df=n - 1)), n)


def block_bootstrap_indices(n: int, n_boot: int = 1000, block: int | None = None,
                            seed: int = 0) -> np.ndarray:
    """(n_boot, n) indices of circular block bootstrap resamples of a length-``n`` series:
    blocks of ``block`` consecutive positions (default ``ceil(n ** (1/3))``) starting at
    uniform positions, wrapped around the end. Vectorized: one array, no loop per draw."""
    if n <= 0:
        return np.zeros((n_boot, 0), dtype=np.int64)
    b = max(1, int(block) if block else math.ceil(n ** (1 / 3)))
    n_blocks = -(-n // b)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n, size=(n_boot, n_blocks))
    idx = (starts[:, :, None] + np.arange(b)[None, None, :]) % n
    return idx.reshape(n_boot, n_blocks * b)[:, :n]


@dataclass(frozen=True)
class Estimate:
    """A statistic with its 95% block-bootstrap interval."""

    value: float
    lo: float
    hi: float

    @property
    def excludes_zero(self) -> bool:
        return bool(self.lo > 0 or self.hi < 0)

    def text(self, digits: int = 4, signed: bool = False) -> str:
        """The value with its interval, as every table prints it: ``+0.012 [-0.004,
        +0.028]`` (``-`` when undefined; the value alone when the interval is)."""
        if not math.isfinite(self.value):
            return "-"
        f = f"{{:{'+' if signed else ''}.{digits}f}}"
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)):
            return f.format(self.value)
        return f"{f.format(self.value)} [{f.format(self.lo)}, {f.format(self.hi)}]"


def bootstrap(stat: Callable[[np.ndarray], np.ndarray], n: int, n_boot: int = 1000,
              block: int | None = None, seed: int = 0) -> Estimate:
    """``stat`` on the full sample and a 95% percentile interval from a circular block
    bootstrap over its ``n`` dates. ``stat`` maps an (n_boot, n) index array (or one
    (1, n) row of ``arange(n)``) to one value per row, so every resample is computed in
    one vectorized call."""
    full = float(stat(np.arange(n)[None, :])[0])
    if n < 2:
        return Estimate(full, float("nan"), float("nan"))
    vals = np.asarray(stat(block_bootstrap_indices(n, n_boot, block, seed)), np.float64)
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return Estimate(full, float("nan"), float("nan"))
    lo, hi = np.quantile(vals, [0.025, 0.975])
    return Estimate(full, float(lo), float(hi))


def mean_estimate(per_date: np.ndarray, **kw: int) -> Estimate:
    """Mean of a per-date series with its block-bootstrap interval."""
    x = np.asarray(per_date, dtype=np.float64)
    return bootstrap(lambda idx: x[idx].mean(axis=1), x.size, **kw)


def skill_estimate(loss: np.ndarray, loss_ref: np.ndarray, **kw: int) -> Estimate:
    """Skill ``1 - sum(loss) / sum(loss_ref)`` over dates (positive: better than the
    reference), with its block-bootstrap interval (dates resampled jointly)."""
    a = np.asarray(loss, dtype=np.float64)
    r = np.asarray(loss_ref, dtype=np.float64)

    def stat(idx: np.ndarray) -> np.ndarray:
        # a reference with zero loss (data without variation): the skill is undefined
        # (NaN, printed as such), not a numpy warning
        with np.errstate(divide="ignore", invalid="ignore"):
            return 1.0 - a[idx].sum(axis=1) / r[idx].sum(axis=1)

    return bootstrap(stat, a.size, **kw)


def per_date(dates: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum of ``values`` per unique date (sorted), and the count per date: the unit the
    bootstrap and the DM test resample, since a date's forecasts share one market."""
    uniq, inv = np.unique(np.asarray(dates), return_inverse=True)
    sums = np.bincount(inv, weights=np.asarray(values, dtype=np.float64), minlength=uniq.size)
    counts = np.bincount(inv, minlength=uniq.size)
    return sums, counts


def ratio_estimate(num: np.ndarray, den: np.ndarray, **kw: int) -> Estimate:
    """``sum(num) / sum(den)`` over dates (a mean per forecast when ``den`` counts the
    forecasts of each date), with its block-bootstrap interval (dates resampled jointly)."""
    a = np.asarray(num, dtype=np.float64)
    b = np.asarray(den, dtype=np.float64)

    def stat(idx: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return a[idx].sum(axis=1) / b[idx].sum(axis=1)

    return bootstrap(stat, a.size, **kw)


def ece_estimate(p: np.ndarray, y: np.ndarray, dates: np.ndarray, bins: int = 10,
                 **kw: int) -> Estimate:
    """:func:`ece` with its block-bootstrap interval over dates: per date and bin the
    count, forecast sum and outcome sum, so that a resample of dates is three sums."""
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    uniq, inv = np.unique(np.asarray(dates), return_inverse=True)
    b = np.clip(np.searchsorted(np.linspace(0.0, 1.0, bins + 1), p, side="right") - 1,
                0, bins - 1)
    cell = inv * bins + b
    size = uniq.size * bins
    cnt = np.bincount(cell, minlength=size).reshape(uniq.size, bins).astype(np.float64)
    sp = np.bincount(cell, weights=p, minlength=size).reshape(uniq.size, bins)
    sy = np.bincount(cell, weights=y, minlength=size).reshape(uniq.size, bins)

    def stat(idx: np.ndarray) -> np.ndarray:
        c, P, Y = cnt[idx].sum(axis=1), sp[idx].sum(axis=1), sy[idx].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.abs(P - Y).sum(axis=1) / c.sum(axis=1)  # sum_b n_b |mean p - freq|

    return bootstrap(stat, uniq.size, **kw)


# ---- distribution scores ------------------------------------------------------------------
def crps_from_quantiles(q: np.ndarray, y: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Per-forecast CRPS of a distribution given by its quantiles ``q`` (n, m) at mid-point
    ``levels`` (m,), for outcomes ``y`` (n,).

    CRPS(F, y) = 2 * integral over tau in (0, 1) of the pinball loss of F's tau-quantile
    (Gneiting and Raftery 2007, eq. 21); on m mid-point levels the integral is their mean.
    This scores every forecaster the same way from what it can give (quantiles of a
    parametric law, of a token mixture or of sampled paths) without a library per law."""
    q = np.asarray(q, dtype=np.float64)
    u = np.asarray(y, dtype=np.float64)[:, None] - q
    lv = np.asarray(levels, dtype=np.float64)[None, :]
    return 2.0 * np.maximum(lv * u, (lv - 1.0) * u).mean(axis=1)


@dataclass(frozen=True)
class CoverageTest:
    """Christoffersen's (1998) interval tests of a hit sequence (1: the outcome fell outside
    the interval). ``p_uc``: the miss rate is 1 - coverage; ``p_ind``: a miss does not make
    the next one likelier (first-order Markov alternative); ``p_cc``: both at once
    (``lr_cc = lr_uc + lr_ind``, chi-squared with 2 degrees of freedom)."""

    n: int
    misses: int
    lr_uc: float
    p_uc: float
    lr_ind: float
    p_ind: float
    lr_cc: float
    p_cc: float


def _loglik(k0: float, k1: float, p: float) -> float:
    """ln((1 - p)**k0 * p**k1), with 0 * ln 0 = 0."""
    from scipy.special import xlogy

    return float(xlogy(k0, 1.0 - p) + xlogy(k1, p))


def christoffersen(miss: np.ndarray, coverage: float,
                   new_run: np.ndarray | None = None) -> CoverageTest:
    """Unconditional coverage, independence and conditional coverage LR tests of a miss
    sequence (in time order) for intervals of nominal ``coverage``. ``new_run`` marks the
    positions that start a new sequence (another series): no transition is counted into
    them, so the independence test pools the series' transitions without joining them."""
    x = np.asarray(miss, dtype=bool)
    n = x.size
    nan = float("nan")
    if n == 0:
        return CoverageTest(0, 0, nan, nan, nan, nan, nan, nan)
    p = 1.0 - coverage
    n1 = int(x.sum())
    n0 = n - n1
    pi = n1 / n
    lr_uc = -2.0 * (_loglik(n0, n1, p) - _loglik(n0, n1, pi))
    link = np.ones(n, dtype=bool) if new_run is None else ~np.asarray(new_run, dtype=bool)
    link[0] = False
    prev, cur = x[:-1][link[1:]], x[1:][link[1:]]
    n00 = int((~prev & ~cur).sum())
    n01 = int((~prev & cur).sum())
    n10 = int((prev & ~cur).sum())
    n11 = int((prev & cur).sum())
    t = n00 + n01 + n10 + n11
    if t == 0:
        lr_ind = nan
    else:
        p01 = n01 / max(n00 + n01, 1)
        p11 = n11 / max(n10 + n11, 1)
        p2 = (n01 + n11) / t
        lr_ind = -2.0 * (_loglik(n00 + n10, n01 + n11, p2)
                         - _loglik(n00, n01, p01) - _loglik(n10, n11, p11))
    lr_uc, lr_ind = max(lr_uc, 0.0), (max(lr_ind, 0.0) if math.isfinite(lr_ind) else nan)
    lr_cc = lr_uc + lr_ind
    return CoverageTest(n, n1, lr_uc, float(stats.chi2.sf(lr_uc, 1)), lr_ind,
                        float(stats.chi2.sf(lr_ind, 1)), lr_cc, float(stats.chi2.sf(lr_cc, 2)))


def mcs_members(losses: np.ndarray, size: float = 0.10, block: int | None = None,
                reps: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Hansen, Lunde and Nason's Model Confidence Set over the columns of ``losses``
    (T dates x k forecasters, on the same dates): which forecasters stay in the set of
    best ones at level ``size``, and each one's MCS p-value. arch's implementation
    (range statistic, stationary bootstrap with mean block ``block``), imported here only:
    it brings pandas."""
    from arch.bootstrap import MCS

    L = np.asarray(losses, dtype=np.float64)
    k = L.shape[1]
    # identical loss columns (a calibrated forecast that *is* the base rate) have a loss
    # difference of variance zero, which the MCS statistic divides by: score one of each
    # and give its verdict to all
    U, inv = np.unique(L, axis=1, return_inverse=True)
    inv = np.asarray(inv).ravel()
    if U.shape[1] < 2 or L.shape[0] < 3:
        return np.ones(k, dtype=bool), np.ones(k)
    b = max(1, int(block) if block else math.ceil(L.shape[0] ** (1 / 3)))
    m = MCS(U, size=size, reps=reps, block_size=b, method="R", bootstrap="stationary",
            seed=seed)
    m.compute()
    pv = m.pvalues.sort_index().to_numpy().ravel()
    inc = np.zeros(U.shape[1], dtype=bool)
    inc[np.asarray(m.included, dtype=np.int64)] = True
    return inc[inv], pv[inv]
