"""A seeded generator of realistic-looking OHLCV bars, for offline work and tests.

Why these ingredients: a tokenizer and a model trained on Gaussian random walks learn
nothing that transfers. Real bars have fat tails, volatility that comes in clusters,
overnight gaps, wicks whose size depends on volatility, and volume that rises with the
size of the move. This generator reproduces those stylized facts cheaply:

- returns ``r = sqrt(h) * z`` with standardized Student-t ``z`` (fat tails) and a
  GARCH(1,1) variance ``h`` (clustering), split into a gap (open vs. previous close) and a
  body (close vs. open); intraday, the first bar of each session gets an overnight-sized gap;
- high/low from the exact distribution of the maximum/minimum of a Brownian bridge
  between open and close (so wicks scale with volatility and never break OHLC rules);
- volume ``base * lognormal * (1 + k |r| / sigma)`` with a U-shaped intraday profile.

Each symbol draws from its own stream seeded by ``(seed, blake2b(symbol))`` -- stable
across runs and machines, unlike Python's ``hash()`` -- so a symbol's bars do not depend
on which other symbols are asked for. Everything is vectorized in numpy; only the GARCH
recursion steps through time, across all symbols at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

import numpy as np
import polars as pl

from candletok.core.errors import SourceError
from candletok.core.times import INTERVALS, normalize_interval, parse_time
from candletok.data.bars import BARS_COLUMNS
from candletok.data.clean import normalize_symbols

DEFAULT_N_BARS = 1000
DEFAULT_START_DAILY = datetime(2000, 1, 3, tzinfo=timezone.utc)
DEFAULT_START_INTRADAY = datetime(2024, 1, 2, tzinfo=timezone.utc)
SESSION_OPEN = timedelta(hours=9, minutes=30)
SESSION_MINUTES = 390  # 09:30-16:00 exchange time
EXCHANGE_TZ = "America/New_York"
DAILY_VOL = 0.016  # typical daily return volatility of a large stock
TRADING_DAYS = {"1d": 1, "1wk": 5, "1mo": 21}


def symbol_seed(seed: int, symbol: str) -> np.random.SeedSequence:
    """A stable per-(seed, symbol) seed: blake2b of the symbol, never Python's ``hash()``."""
    digest = hashlib.blake2b(symbol.encode("utf-8"), digest_size=16).digest()
    words = np.frombuffer(digest, dtype=np.uint32).tolist()
    return np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *words])


# --------------------------------------------------------------------------- calendars


def _business_days(first: date, n: int | None, last: date | None) -> np.ndarray:
    """Weekdays from ``first``: ``n`` of them, or all before ``last`` (datetime64[D])."""
    d0 = np.datetime64(first, "D")
    if n is None:
        assert last is not None
        days = np.arange(d0, np.datetime64(last, "D"), dtype="datetime64[D]")
        return days[np.is_busday(days)]
    span = int(n * 7 // 5 + 10)
    days = np.arange(d0, d0 + span, dtype="datetime64[D]")
    return days[np.is_busday(days)][:n]


def _to_utc_us(local: np.ndarray) -> pl.Series:
    """Naive exchange-local datetime64 values to a UTC ``Datetime("us")`` Series (DST-aware)."""
    s = pl.Series("ts", local.astype("datetime64[us]"))
    return (
        s.dt.replace_time_zone(EXCHANGE_TZ, ambiguous="earliest", non_existent="null")
        .dt.convert_time_zone("UTC")
    )


def calendar(
    interval: str, start: datetime, n_bars: int | None = None, end: datetime | None = None
) -> tuple[pl.Series, np.ndarray]:
    """Bar open times (UTC) and a "first bar of a session" flag.

    Daily bars sit at 00:00 UTC on weekdays, weekly bars on Mondays, monthly on the first;
    intraday bars fill 09:30-16:00 New York time on weekdays, converted to UTC.
    Either ``n_bars`` or ``end`` (exclusive) bounds the calendar."""
    step = INTERVALS[interval]
    first_day = start.astimezone(timezone.utc).date()
    last_day = end.astimezone(timezone.utc).date() + timedelta(days=1) if end else None
    if interval == "1d":
        days = _business_days(first_day, n_bars, last_day)
        ts = pl.Series("ts", days.astype("datetime64[us]")).dt.replace_time_zone("UTC")
        return _clip(ts, np.ones(len(days), dtype=bool), start, end, n_bars)
    if interval in ("1wk", "1mo"):
        unit = "W" if interval == "1wk" else "M"
        # numpy weeks start on Thursday (the epoch); shift by 4 days to land on Mondays.
        offset = np.timedelta64(4, "D") if unit == "W" else np.timedelta64(0, "D")
        k0 = (np.datetime64(first_day, "D") - offset).astype(f"datetime64[{unit}]")
        if n_bars is None:
            assert last_day is not None
            k1 = (np.datetime64(last_day, "D") - offset).astype(f"datetime64[{unit}]") + 1
            periods = np.arange(k0, k1)
        else:
            periods = np.arange(k0, k0 + n_bars + 1)
        days = periods.astype("datetime64[D]") + offset
        days = days[days >= np.datetime64(first_day, "D")]
        ts = pl.Series("ts", days.astype("datetime64[us]")).dt.replace_time_zone("UTC")
        return _clip(ts, np.ones(len(days), dtype=bool), start, end, n_bars)

    minutes = int(step.total_seconds() // 60)
    per_session = -(-SESSION_MINUTES // minutes)
    if n_bars is None:
        days = _business_days(first_day - timedelta(days=1), None, last_day)
    else:
        days = _business_days(first_day - timedelta(days=1), -(-n_bars // per_session) + 2,
                              None)
    offsets = SESSION_OPEN + np.arange(per_session) * step
    local = (
        days.astype("datetime64[us]")[:, None]
        + np.array(offsets, dtype="timedelta64[us]")[None, :]
    ).ravel()
    first = np.zeros((len(days), per_session), dtype=bool)
    first[:, 0] = True
    ts = _to_utc_us(local)
    return _clip(ts, first.ravel(), start, end, n_bars)


def _clip(
    ts: pl.Series, first: np.ndarray, start: datetime, end: datetime | None, n: int | None
) -> tuple[pl.Series, np.ndarray]:
    keep = (ts >= start).to_numpy()
    if end is not None:
        keep &= (ts < end).to_numpy()
    keep &= ts.is_not_null().to_numpy()
    idx = np.flatnonzero(keep)
    if n is not None:
        idx = idx[:n]
    return ts.gather(idx), first[idx]


# --------------------------------------------------------------------------- generator


def _garch(z: np.ndarray, omega: np.ndarray, alpha: np.ndarray, beta: np.ndarray,
           h0: np.ndarray) -> np.ndarray:
    """Conditional variances of a GARCH(1,1) driven by innovations ``z`` (time x symbols).

    ``h[t] = omega + alpha * r[t-1]**2 + beta * h[t-1]`` with ``r = sqrt(h) * z``, i.e.
    ``h[t] = omega + h[t-1] * (alpha * z[t-1]**2 + beta)``: one fused multiply-add per
    step over all symbols at once (the recursion itself is inherently sequential)."""
    T = z.shape[0]
    h = np.empty_like(z)
    h[0] = h0
    mult = alpha * z * z + beta  # (T, S), precomputed in one vectorized pass
    prev = h0.copy()
    for t in range(1, T):
        np.multiply(prev, mult[t - 1], out=prev)
        prev += omega
        h[t] = prev
    return h


def synthetic_bars(
    symbols: str | Sequence[str],
    n_bars: int | None = None,
    interval: str = "1d",
    seed: int = 0,
    start: str | date | datetime | None = None,
    end: str | date | datetime | None = None,
) -> pl.DataFrame:
    """Seeded synthetic OHLCV bars in the canonical schema, sorted by ``(symbol, ts)``.

    ``n_bars`` bars per symbol from ``start`` (default 1,000 from 2000-01-03 for daily and
    longer, 2024-01-02 for intraday); with ``end`` and no ``n_bars``, every bar in
    ``[start, end)``. Same arguments, same frame; a different seed or symbol, other bars.

    The arrays are (symbols x time) throughout: every step below is whole-array numpy
    work, one pass per symbol at most (its own random stream), never one per bar.
    """
    interval = normalize_interval(interval)
    syms = sorted(normalize_symbols(symbols))
    if not syms:
        raise SourceError("Give at least one symbol to generate.")
    if n_bars is not None and n_bars < 1:
        raise SourceError(f"--bars must be at least 1, not {n_bars}.")
    intraday = INTERVALS[interval] < timedelta(days=1)
    t0 = parse_time(start, "start") or (DEFAULT_START_INTRADAY if intraday else
                                        DEFAULT_START_DAILY)
    t1 = parse_time(end, "end")
    if n_bars is None and t1 is None:
        n_bars = DEFAULT_N_BARS
    ts, first = calendar(interval, t0, n_bars, t1)
    T, S = len(ts), len(syms)
    if T == 0:
        raise SourceError("The requested synthetic range holds no trading bars; widen it.")
    # Per-bar volatility scale: daily vol shrunk to the bar's share of a session.
    minutes = INTERVALS[interval].total_seconds() / 60
    bar_days = minutes / SESSION_MINUTES if intraday else TRADING_DAYS[interval]

    rngs = [np.random.default_rng(symbol_seed(seed, s)) for s in syms]
    p = _Params.draw(rngs, bar_days)
    z, zg, e_up, e_dn, nv = _innovations(rngs, T, p.nu)
    # The recursion runs (time x symbols); transpose back so every later op is contiguous.
    h = np.ascontiguousarray(
        _garch(np.ascontiguousarray(z.T), p.omega, p.alpha, p.beta, p.sigma**2).T)
    session = _session_profile(first, minutes) if intraday else None
    if session is not None:  # intraday volatility is U-shaped across the session
        h *= (_vol_profile(session) ** 2)[None, :]
    body, r_total, logc = _returns(z, zg, h, p, first if intraday else None, bar_days)
    open_, high, low, close = _candles(body, logc, h, e_up, e_dn)
    volume = _volume(r_total, nv, p, bar_days, session)

    # Row-major flatten of (symbols x time): all bars of symbol 0, then symbol 1...
    ts_all = pl.concat([ts] * S) if S > 1 else ts
    df = pl.DataFrame({
        "symbol": pl.Series("symbol", syms).gather(np.repeat(np.arange(S), T)),
        "ts": ts_all,
        "open": open_.ravel(),
        "high": high.ravel(),
        "low": low.ravel(),
        "close": close.ravel(),
        "volume": volume.ravel(),
    })
    return df.select(BARS_COLUMNS)


@dataclass
class _Params:
    """Per-symbol parameters (each an (S,) array), drawn from each symbol's own stream."""

    vol_mult: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    nu: np.ndarray
    logp0: np.ndarray
    drift_ann: np.ndarray
    logv0: np.ndarray
    sigma: np.ndarray  # unconditional per-bar sd
    omega: np.ndarray

    @classmethod
    def draw(cls, rngs: list[np.random.Generator], bar_days: float) -> _Params:
        params = np.array([
            [r.uniform(0.6, 1.6), r.uniform(0.05, 0.10), r.uniform(0.86, 0.92),
             r.uniform(4.0, 7.0), r.uniform(np.log(8), np.log(400)), r.uniform(-0.3, 0.5),
             r.uniform(np.log(2e5), np.log(5e7))]
            for r in rngs
        ])
        vol_mult, alpha, beta, nu, logp0, drift_ann, logv0 = params.T
        beta = np.minimum(beta, 0.98 - alpha)  # alpha + beta < 1: stationary, omega > 0
        sigma = DAILY_VOL * vol_mult * np.sqrt(bar_days)
        omega = sigma**2 * (1 - alpha - beta)
        return cls(vol_mult, alpha, beta, nu, logp0, drift_ann, logv0, sigma, omega)


def _innovations(rngs: list[np.random.Generator], T: int, nu: np.ndarray) -> tuple[
        np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Body and gap shocks (Student-t), two Exp(1) draws for the wicks and volume noise,
    each symbol from its own stream, laid out (symbols x time) so every row is contiguous.

    Student-t as a normal over a shared chi-square mixing variable: a "news" bar gets both
    a large gap and a large body, and it costs one gamma draw."""
    S = len(rngs)
    z, zg, w, e_up, e_dn, nv = (np.empty((S, T)) for _ in range(6))
    for j, r in enumerate(rngs):  # one pass per symbol (not per bar): its own stream
        r.standard_normal(T, out=z[j])
        r.standard_normal(T, out=zg[j])
        r.standard_gamma(nu[j] / 2, T, out=w[j])
        r.standard_exponential(T, out=e_up[j])
        r.standard_exponential(T, out=e_dn[j])
        r.standard_normal(T, out=nv[j])
    # t_nu / sd(t_nu) = N * sqrt((nu - 2) / chi2_nu), with chi2_nu = 2 * gamma(nu / 2).
    np.divide(((nu - 2) / 2)[:, None], w, out=w)
    np.sqrt(w, out=w)
    z *= w
    zg *= w
    return z, zg, e_up, e_dn, nv


_COL = (slice(None), None)  # per-symbol parameters broadcast over time


def _returns(z: np.ndarray, zg: np.ndarray, h: np.ndarray, p: _Params,
             first: np.ndarray | None, bar_days: float) -> tuple[
                 np.ndarray, np.ndarray, np.ndarray]:
    """Body, total log return and log close from the shocks and the GARCH variance ``h``.

    The gap (open vs previous close) is small inside a session and overnight-sized at its
    open (``first`` marks session opens; None for daily and longer bars)."""
    sd = np.sqrt(h)
    mu = ((p.drift_ann / 252.0) * bar_days - 0.5 * p.sigma**2)[_COL]
    if first is not None:
        overnight = (DAILY_VOL * p.vol_mult * 0.5 / p.sigma)[_COL]  # about half a day's vol
        gap_scale: Any = np.where(first[None, :], overnight, 0.05)
    else:
        gap_scale = 0.35
    gap = zg
    gap *= sd
    gap *= gap_scale
    gap[:, 0] = 0.0
    body = z
    body *= sd
    body += mu
    r_total = gap + body
    logc = np.cumsum(r_total, axis=1)
    logc += p.logp0[_COL]
    return body, r_total, logc


def _candles(body: np.ndarray, logc: np.ndarray, h: np.ndarray, e_up: np.ndarray,
             e_dn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Open, high, low, close. Brownian bridge extremes between open (0) and close (b) with
    variance sd**2: P(max >= m) = exp(-2 m (m - b) / sd**2) => m = (b + sqrt(b**2 + 2 sd**2
    E)) / 2, E ~ Exp(1); the wick above max(0, b) and below min(0, b) follow, exactly.
    ``h``, ``e_up`` and ``e_dn`` are overwritten."""
    b2 = body * body
    h *= 2.0  # 2 * sd**2, in place
    e_up *= h
    e_up += b2
    np.sqrt(e_up, out=e_up)  # sqrt(b**2 + 2 sd**2 E)
    e_dn *= h
    e_dn += b2
    np.sqrt(e_dn, out=e_dn)
    absb = np.abs(body)
    upper = e_up
    upper -= absb
    upper *= 0.5
    lower = e_dn
    lower -= absb
    lower *= 0.5
    np.maximum(upper, 0.0, out=upper)
    np.maximum(lower, 0.0, out=lower)
    close = np.exp(logc)
    open_ = np.exp(logc - body)
    high = np.maximum(open_, close)
    high *= np.exp(upper)
    low = np.minimum(open_, close)
    low *= np.exp(-lower)
    return open_, high, low, close


def _session_profile(first: np.ndarray, minutes: float) -> np.ndarray:
    """(T,) position of each intraday bar in its session, from -1 (open) to +1 (close)."""
    T = first.size
    session_id = np.cumsum(first) - 1
    pos = np.arange(T) - np.flatnonzero(first)[session_id]
    per = max(1, -(-SESSION_MINUTES // int(minutes)))
    return (pos / max(per - 1, 1) - 0.5) * 2


def _vol_profile(session: np.ndarray) -> np.ndarray:
    """(T,) multiplier of each intraday bar's volatility: U-shaped across the session, as
    in real markets (busy open and close, quiet lunch: about 1.9x the midday level at the
    open and close), normalized to a mean square of 1 over a full session so the daily
    volatility is unchanged."""
    g = 0.7 + 0.65 * session * session
    full = np.linspace(-1.0, 1.0, 79)  # a dense session grid: the normalization is fixed
    return g / np.sqrt(np.mean((0.7 + 0.65 * full * full) ** 2))


def _volume(r_total: np.ndarray, nv: np.ndarray, p: _Params, bar_days: float,
            session: np.ndarray | None) -> np.ndarray:
    """Volume: lognormal noise, more on big moves, U-shaped across an intraday session.
    ``r_total`` and ``nv`` are overwritten."""
    k = 0.8
    base = (np.exp(p.logv0) * bar_days)[_COL]
    if session is not None:
        base = base * (0.6 + 0.9 * session * session)[None, :]
    np.abs(r_total, out=r_total)
    r_total *= (k / p.sigma)[_COL]
    r_total += 1.0
    nv *= 0.35
    nv -= 0.06
    np.exp(nv, out=nv)
    nv *= r_total
    nv *= base
    return np.round(nv, out=nv)
