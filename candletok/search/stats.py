"""Forward outcomes of a set of windows, their base rate, and how sure we can be.

Every probability comes with a 95% Wilson interval computed on the *effective* number of
independent windows, and every figure of the matches stands beside the same figure for
the base rate (all windows of the same history under the same time rule). The
difference in P(close up) is tested with an exact binomial test against the base rate,
on the effective counts; a result that is not significant says so in words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from candletok.core.stats import wilson
from candletok.search import baserate
from candletok.search.baserate import interpolate, quantile_ranks
from candletok.search.index import SearchIndex
from candletok.search.timerule import Cut, TimeRule, effective_n

ALPHA = 0.05
QUANTILES = (0.1, 0.5, 0.9)


def binom_pvalue(k: float, n: float, p0: float) -> float:
    """Two-sided exact binomial test of k up-moves in n (effective counts, rounded) against
    the base rate p0; nan when there is nothing to test."""
    ni = round(float(n))
    if ni < 1 or not (0.0 < p0 < 1.0):
        return float("nan")
    ki = int(min(ni, max(0, round(k))))
    return float(sps.binomtest(ki, ni, p0).pvalue)


@dataclass
class Outcome:
    """The figures of one set of windows at one horizon."""

    horizon: int
    who: str  # "matches" or "base"
    n: int  # windows with this forward window inside the data and by T
    truncated: int  # windows whose forward window runs past T or the series end
    n_eff: float
    p_up: float
    p_lo: float
    p_hi: float
    mean_log: float
    median_log: float
    q_pct: tuple[float, float, float]  # 10/50/90% of the simple return, in percent
    q_vol: tuple[float, float, float]  # the same quantiles of the log return / scale
    p_value: float = float("nan")  # matches only: binomial test against the base rate
    q_value: float = float("nan")  # motifs only: Benjamini-Hochberg adjusted

    def row(self) -> dict[str, float | int | str]:
        d: dict[str, float | int | str] = {
            "horizon": self.horizon, "who": self.who, "n": self.n,
            "truncated": self.truncated, "n_eff": self.n_eff, "p_up": self.p_up,
            "p_lo": self.p_lo, "p_hi": self.p_hi, "mean_log": self.mean_log,
            "median_log": self.median_log,
        }
        for q, a, b in zip(QUANTILES, self.q_pct, self.q_vol, strict=True):
            d[f"q{int(q * 100)}_pct"] = a
            d[f"q{int(q * 100)}_vol"] = b
        d["p_value"] = self.p_value
        d["q_value"] = self.q_value
        return d


def forward(idx: SearchIndex, e: np.ndarray, h: int) -> tuple[np.ndarray, np.ndarray]:
    """(log return, log return / scale) from the close of ``e`` to the close h bars on.
    The scale is that of candle e + 1: the causal volatility known when e closed."""
    logc = idx.log_close
    r = logc[e + h] - logc[e]
    return r, r / np.asarray(idx.scale[e + 1])


def quantiles(x: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """``np.quantile(x, qs)`` (linear interpolation) with one partition for all of them:
    the order statistics they read (:func:`~candletok.search.baserate.quantile_ranks`),
    interpolated as the base-rate table does."""
    n = x.size
    if n == 0:
        return [float("nan")] * len(qs)
    kth = quantile_ranks(n, qs)
    part = np.partition(x, kth)
    return interpolate(n, qs, {k: float(part[k]) for k in kth})


def summarize(r: np.ndarray, rv: np.ndarray, horizon: int, who: str, truncated: int,
              n_eff: float) -> Outcome:
    """An :class:`Outcome` from forward log returns ``r`` and their vol-unit version."""
    n = int(r.size)
    return outcome(n, float((r > 0).sum()), float(r.mean()) if n else float("nan"),
                   quantiles(r, QUANTILES), quantiles(rv, QUANTILES), horizon, who,
                   truncated, n_eff)


def outcome(n: int, up: float, mean: float, qs: list[float], qv: list[float], horizon: int,
            who: str, truncated: int, n_eff: float) -> Outcome:
    """An :class:`Outcome` from its figures (``qs``, ``qv``: the QUANTILES of the log
    return and of it in vol units): the one place both the full pass and the table's
    lookup turn counts into rates and intervals."""
    p = up / n if n else float("nan")
    lo, hi = wilson(p * n_eff, n_eff) if n else (float("nan"), float("nan"))
    return Outcome(
        horizon=horizon, who=who, n=n, truncated=truncated, n_eff=n_eff, p_up=p,
        p_lo=lo, p_hi=hi, mean_log=mean,
        median_log=qs[QUANTILES.index(0.5)],  # QUANTILES holds 0.5
        q_pct=tuple(100.0 * math.expm1(v) if math.isfinite(v) else v  # type: ignore[misc]
                    for v in qs),
        q_vol=tuple(qv),  # type: ignore[arg-type]
    )


def match_outcome(cut: Cut, e: np.ndarray, h: int, rho: float, base: Outcome) -> Outcome:
    """Outcomes of matches ``e`` at horizon h, tested against ``base``."""
    ok = cut.available(e, h)
    eh = e[ok]
    r, rv = forward(cut.idx, eh, h)
    n_eff, _ = effective_n(cut.idx, eh, h, rho)
    out = summarize(r, rv, h, "matches", int((~ok).sum()), n_eff)
    if out.n:
        out.p_value = binom_pvalue(out.p_up * n_eff, n_eff, base.p_up)
    return out


def range_mask(idx: SearchIndex, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Boolean mask over positions of the union of per-series ranges [lo, hi)."""
    n = idx.n
    lo = np.minimum(lo, n)
    hi = np.minimum(np.maximum(hi, lo), n)
    delta = np.bincount(lo, minlength=n + 1) - np.bincount(hi, minlength=n + 1)
    return np.cumsum(delta[:n]) > 0


def base_forward(cut: Cut, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Forward log returns (and in vol units) of every window of the base rate at h,
    from contiguous differences of the whole arrays (no index arrays)."""
    idx = cut.idx
    n = idx.n
    if n <= h:
        return np.zeros(0), np.zeros(0)
    logc = idx.log_close
    m = range_mask(idx, *cut.window_ranges(h))[: n - h]
    r = (logc[h:] - logc[: n - h])[m]
    return r, r / np.asarray(idx.scale[1 : n - h + 1])[m]


def _base_size(cut: Cut, h: int, n: int, rho: float, mbar: float) -> tuple[int, float]:
    """(truncated, effective n) of n base windows at h: the effective size divides by h
    (overlapping h-bar windows of one series) and by the cross-symbol design effect
    1 + (m - 1) rho (m symbols share a bar time on average)."""
    lo0, hi0 = cut.window_ranges(cut.rule.h0)
    truncated = int(np.maximum(hi0 - lo0, 0).sum()) - n
    return max(truncated, 0), (n / (h * (1.0 + (mbar - 1.0) * rho)) if n else 0.0)


def base_outcome(cut: Cut, h: int, rho: float, mbar: float) -> Outcome:
    """Every window of the same history under the same rule at horizon h, looked up in
    the index's base-rate table (:mod:`candletok.search.baserate`: O(S * N + zone) reads
    for the counts and sums, a few thousand values for the quantiles, no pass over the
    windows); equal to :func:`base_outcome_scan`."""
    n, up, mean, qs, qv = baserate.base_figures(cut, h, QUANTILES)
    truncated, n_eff = _base_size(cut, h, n, rho, mbar)
    return outcome(n, up, mean, qs, qv, h, "base", truncated, n_eff)


def base_outcome_scan(cut: Cut, h: int, rho: float, mbar: float) -> Outcome:
    """:func:`base_outcome` by a pass over every window (the reference the table is
    tested and benchmarked against)."""
    r, rv = base_forward(cut, h)
    truncated, n_eff = _base_size(cut, h, int(r.size), rho, mbar)
    return summarize(r, rv, h, "base", truncated, n_eff)


def next_range(idx: SearchIndex, e: np.ndarray | None, cut: Cut | None = None,
               scan: bool = False) -> dict[str, float]:
    """The next candle's range (its stored high / low): median and mean in percent and in
    vol units (ln(high / low) / its scale), after windows ``e`` -- or, with ``e`` None,
    after every base-rate window of ``cut`` (looked up in the base-rate table; with
    ``scan``, by a pass over them). Candles without a stored bar are left out."""
    if e is None and not scan:
        assert cut is not None
        return baserate.base_next_range(cut)
    if e is None:
        assert cut is not None
        m = range_mask(idx, *cut.window_ranges(1))[: idx.n - 1]
        hi1, lo1 = np.asarray(idx.high[1:])[m], np.asarray(idx.low[1:])[m]
        sc1 = np.asarray(idx.scale[1:])[m]
    else:
        e1 = np.asarray(e, dtype=np.int64) + 1
        hi1, lo1 = np.asarray(idx.high[e1]), np.asarray(idx.low[e1])
        sc1 = np.asarray(idx.scale[e1])
    with np.errstate(divide="ignore", invalid="ignore"):
        lr = np.log(hi1 / lo1)
    ok = np.isfinite(lr)
    lr, sc1 = lr[ok], sc1[ok]
    if lr.size == 0:
        nan = float("nan")
        return {"n": 0, "median_pct": nan, "mean_pct": nan, "median_vol": nan, "mean_vol": nan,
                "mean_sq_vol": nan}
    rv = lr / sc1
    pct = 100.0 * np.expm1(lr)
    return {"n": int(lr.size), "median_pct": quantiles(pct, (0.5,))[0],
            "mean_pct": float(pct.mean()), "median_vol": quantiles(rv, (0.5,))[0],
            "mean_vol": float(rv.mean()), "mean_sq_vol": float(np.square(rv).mean())}


def verdict(m: Outcome, b: Outcome, alpha: float = ALPHA) -> str:
    """One sentence on a horizon: the matches' P(up) with its interval, the base rate and
    whether the difference is significant."""
    if m.n == 0:
        base = (f"the base rate {b.p_up:.1%}" if math.isfinite(b.p_up) else
                "the base rate, which has no window that long by T either")
        return (f"{m.horizon} bar{'s' if m.horizon > 1 else ''}: no match has a forward "
                f"window by T ({m.truncated} truncated); nothing to compare with {base}.")
    bars = f"{m.horizon} bar{'s' if m.horizon > 1 else ''}"
    head = (f"{bars}: up in {m.p_up:.0%} of {m.n} matches (95% CI {m.p_lo:.0%}-{m.p_hi:.0%}, "
            f"effective n {m.n_eff:.1f}) vs {b.p_up:.1%} base rate")
    p = m.q_value if math.isfinite(m.q_value) else m.p_value
    # raw: one test of one horizon of one search; the answer's own verdict is the val
    # replay's (simcal), and the caller says how many horizons were looked at
    what = "BH-adjusted q" if math.isfinite(m.q_value) else "raw binomial p"
    if not math.isfinite(p):
        return head + "; too few matches to test the difference."
    if p < alpha:
        side = "more" if m.p_up > b.p_up else "less"
        return head + (f": raw difference ({what} = {p:.3g}); up {side} often than the base "
                       "rate on this one test.")
    return head + (f": no raw difference ({what} = {p:.2g}); these matches do not move "
                   "differently from the base rate.")


def looks_note(horizons: int, alpha: float = ALPHA) -> str | None:
    """The multiple-comparisons note beside raw p-values: ``horizons`` tests at once (and
    every other ``--mode`` a user tries is another look), so a raw p must be below
    alpha / horizons (Bonferroni) before any one of them stands out. None for one test."""
    if horizons <= 1:
        return None
    return (f"{horizons} horizons tested at once (and each other --mode tried is another "
            f"look): a raw p must be below {alpha:g}/{horizons} = {alpha / horizons:.3g} "
            "(Bonferroni) before any one stands out; the calibrated verdict (the same search "
            "replayed on val) is the one that accounts for the search itself.")


def base_sample(idx: SearchIndex, rule: TimeRule, h: int, size: int = 200_000
                ) -> np.ndarray:
    """Forward log returns of (at most ``size``, evenly strided) base-rate windows at h:
    what a chart draws the base distribution from."""
    r = base_forward(Cut.of(idx, rule), h)[0]
    return r[:: max(1, r.size // size)]
