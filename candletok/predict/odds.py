"""Stop and target odds: P(+k volatility units before -k, -k before +k, neither) in h bars.

A trader who enters at the last close with a target k vol units above and a stop k below
asks which is touched first within h bars. Two answers live here:

* :func:`random_walk_odds`, the closed form for a driftless Brownian motion (the
  two-barrier first-passage series). Bars are decided by their intrabar high and low, so
  a barrier counts as touched the moment the continuous path reaches it: the
  continuous-time formula, not a random walk sampled at the closes, is the right
  reference. Its volatility comes from candletok's scale (an EWMA of the log true range,
  the "ATR" the k's are multiples of): a Brownian motion with sigma per bar has an
  expected high-low range of ``sqrt(8 / pi) * sigma``, so ``sigma = scale * sqrt(pi / 8)``
  (:func:`sigma_from_scale`).
* :func:`path_odds`, the same three probabilities counted on sampled OHLC paths
  (CandleGPT's continuations, or any other paths), vectorized over the paths, with Wilson
  intervals from the number of paths.

The odds are not calibrated or scored yet (``evaluate`` does not score them); whoever
shows them says so (:data:`NOT_SCORED`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from candletok.core.errors import ModelError
from candletok.core.stats import wilson

#: Said beside every odds table until ``evaluate`` scores them.
NOT_SCORED = ("These odds come straight from the sampled paths: they have not been "
              "calibrated or scored yet (evaluate does not score them), so no skill over "
              "the random walk beside them has been shown.")

#: Expected high-low range of a Brownian motion with unit sigma over one bar.
RANGE_PER_SIGMA = float(np.sqrt(8.0 / np.pi))


def sigma_from_scale(scale: float | np.ndarray) -> np.ndarray:
    """Per-bar sigma (log price) of the driftless Brownian motion whose expected high-low
    range is ``scale``: candletok's volatility unit measures ranges, the formula needs a
    standard deviation."""
    return np.asarray(scale, dtype=np.float64) / RANGE_PER_SIGMA


@dataclass(frozen=True)
class Odds:
    """P(target first), P(stop first), P(neither) per barrier pair (arrays, same shape).

    From paths also the interval of each (``*_lo``, ``*_hi``, Wilson 95%), the number of
    paths and the share of paths decided inside one bar that touched both barriers
    (``ambiguous``), split as :func:`path_odds` says."""

    p_up: np.ndarray
    p_down: np.ndarray
    p_neither: np.ndarray
    n_paths: int | None = None
    ambiguous: np.ndarray | None = None
    intervals: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def random_walk_odds(up: float | np.ndarray, down: float | np.ndarray,
                     sigma: float | np.ndarray, horizon: float) -> Odds:
    """Closed form for a driftless Brownian motion started at 0 with ``sigma`` per bar:
    P(it reaches ``+up`` before ``-down`` within ``horizon`` bars), P(``-down`` first),
    P(neither). All arguments broadcast; ``up``, ``down`` > 0 in the same (log) units.

    With width ``L = up + down``, ``x = down / L`` and ``lam_n = (n pi sigma)^2 / (2 L^2)``,
    the survival eigen-expansion gives

        P(up first by T)   = x     - sum_n 2 (-1)^(n+1) sin(n pi x) / (n pi) exp(-lam_n T)
        P(down first by T) = 1 - x - sum_n 2           sin(n pi x) / (n pi) exp(-lam_n T)

    (the first terms are the no-time-limit limits; the sums are their shortfall at T and
    converge like exp(-n^2), so terms are taken until ``lam_n T > 50``)."""
    a, b, s = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (up, down, sigma)))
    if np.any(a <= 0) or np.any(b <= 0) or np.any(s <= 0) or not horizon > 0:
        raise ModelError("Barrier odds need positive distances to both barriers, a positive "
                         "volatility and a positive horizon.")
    width = a + b
    x = b / width
    lam1 = (np.pi * s / width) ** 2 / 2.0  # lam_n = n^2 lam1
    n_max = int(np.clip(np.ceil(np.sqrt(50.0 / (lam1.min() * horizon))), 1, 200_000))
    n = np.arange(1, n_max + 1, dtype=np.float64)
    shape = a.shape
    xf, lf = x.reshape(-1, 1), lam1.reshape(-1, 1)
    w = 2.0 * np.sin(n * np.pi * xf) / (n * np.pi) * np.exp(-(n * n) * lf * horizon)
    sign = np.where(n % 2 == 1, 1.0, -1.0)
    p_up = np.clip(x.reshape(-1) - (w * sign).sum(axis=1), 0.0, 1.0).reshape(shape)
    p_down = np.clip((1.0 - x).reshape(-1) - w.sum(axis=1), 0.0, 1.0).reshape(shape)
    p_neither = np.clip(1.0 - p_up - p_down, 0.0, 1.0)
    return Odds(p_up, p_down, p_neither)


def path_odds(paths: dict[str, np.ndarray], entry: float | np.ndarray,
              up: float | np.ndarray, down: float | np.ndarray, horizon: int | None = None,
              ambiguous: str = "path", unit: float | np.ndarray = 1.0) -> Odds:
    """P(target first), P(stop first), P(neither) counted on sampled OHLC paths.

    ``paths`` holds ``open``, ``high``, ``low``, ``close`` arrays of shape (S, n) (as
    :meth:`~candletok.tokenize.base.Tokenizer.rebuild_paths` gives them); the target is
    ``entry * exp(up)``, the stop ``entry * exp(-down)`` (``up``, ``down``: log distances,
    one per barrier pair, broadcast to K pairs), each times the path's ``unit`` (one per
    path: analogues from several markets each in their own volatility unit); the first
    ``horizon`` bars count.

    A barrier is touched in the first bar whose high (target) or low (stop) reaches it. A
    bar that touches both is ambiguous: the bars do not say which came first. If the
    bar opens beyond one barrier, that one came first (a gap). Otherwise ``ambiguous``
    says how it is split: ``"path"`` (default) reads the bar as open -> low -> high ->
    close when it closes above its open (stop first) and open -> high -> low -> close when
    it closes below (target first), the usual OHLC-path convention, and half/half when it
    closes at its open; ``"half"`` splits every ambiguous path half/half. The share of
    ambiguous paths is reported either way."""
    if ambiguous not in ("path", "half"):
        raise ModelError(f"Unknown ambiguous rule {ambiguous!r}; use path or half.")
    o, h, lo, c = (np.atleast_2d(np.asarray(paths[k], dtype=np.float64))
                   for k in ("open", "high", "low", "close"))
    S, n = h.shape
    hz = n if horizon is None else int(horizon)
    if S == 0 or hz < 1 or hz > n:
        raise ModelError(f"Barrier odds need at least one path and 1 <= horizon <= {n} "
                         f"bars (got {S} paths, horizon {hz}).")
    o, h, lo, c = o[:, :hz], h[:, :hz], lo[:, :hz], c[:, :hz]
    e = np.broadcast_to(np.asarray(entry, dtype=np.float64), (S,))
    ua, da = np.broadcast_arrays(np.atleast_1d(np.asarray(up, dtype=np.float64)),
                                 np.atleast_1d(np.asarray(down, dtype=np.float64)))
    u = np.broadcast_to(np.asarray(unit, dtype=np.float64), (S,))
    tgt = e[None, :, None] * np.exp(ua[:, None] * u[None, :])[..., None]  # (K, S, 1)
    stp = e[None, :, None] * np.exp(-da[:, None] * u[None, :])[..., None]
    hit_u, hit_d = h[None] >= tgt, lo[None] <= stp  # (K, S, hz)
    never = hz  # first touch index; hz = no touch
    tu = np.where(hit_u.any(-1), hit_u.argmax(-1), never)
    td = np.where(hit_d.any(-1), hit_d.argmax(-1), never)
    up_first = tu < td
    down_first = td < tu
    both = (tu == td) & (tu < never)
    t = np.minimum(tu, hz - 1)
    pick = np.arange(S)[None, :]
    bo, bc = o[pick, t], c[pick, t]  # the ambiguous bar's open and close, (K, S)
    gap_u = both & (bo >= tgt[..., 0])
    gap_d = both & (bo <= stp[..., 0]) & ~gap_u
    amb = both & ~gap_u & ~gap_d
    if ambiguous == "path":
        w_up = np.where(bc < bo, 1.0, np.where(bc > bo, 0.0, 0.5))
    else:
        w_up = np.full(amb.shape, 0.5)
    k_up = (up_first | gap_u).sum(-1) + (amb * w_up).sum(-1)
    k_down = (down_first | gap_d).sum(-1) + (amb * (1.0 - w_up)).sum(-1)
    k_nei = (tu == never) & (td == never)
    k_nei = k_nei.sum(-1).astype(np.float64)
    shape = np.broadcast(np.asarray(up), np.asarray(down)).shape  # scalars in: scalars out
    iv = {name: tuple(v.reshape(shape) for v in wilson(k, S))
          for name, k in (("p_up", k_up), ("p_down", k_down), ("p_neither", k_nei))}
    return Odds((k_up / S).reshape(shape), (k_down / S).reshape(shape),
                (k_nei / S).reshape(shape), n_paths=S,
                ambiguous=(amb.sum(-1) / S).reshape(shape), intervals=iv)  # type: ignore[arg-type]


def forward_odds(hist: Any, rows: np.ndarray, ks: Sequence[float], horizon: int) -> Odds:
    """Stop and target odds counted on the real bars after ``rows`` of a
    :class:`~candletok.evaluation.history.History` (the analogues' forward paths: each
    match's last candle is a row): entry at the row's close, barriers ``k`` times the
    scale known there (``next_scale``), touches by the next ``horizon`` bars' highs and
    lows in the same series. Rows without ``horizon`` bars after them in their series are
    left out. The history holds no opens: each bar opens at the previous close, so a bar
    touching both barriers is split by its close against the previous close."""
    r = np.asarray(rows, dtype=np.int64).reshape(-1)
    r = r[r + horizon < hist.ends[hist.series[r]]]
    if r.size == 0:
        raise ModelError(f"No row has {horizon} bars after it in its series.")
    fwd = r[:, None] + 1 + np.arange(horizon)[None, :]
    paths = {"open": hist.prev_close[fwd], "high": hist.high[fwd], "low": hist.low[fwd],
             "close": hist.close[fwd]}
    kk = np.asarray(list(ks), dtype=np.float64)
    return path_odds(paths, hist.close[r], kk, kk, horizon, unit=hist.next_scale[r])


@dataclass
class OddsRow:
    """One k's odds from the paths beside the random walk's, for tables and JSON."""

    k: float
    horizon: int
    paths: Odds
    walk: Odds

    def to_dict(self) -> dict[str, Any]:
        p, w = self.paths, self.walk

        def one(name: str) -> dict[str, float]:
            lo, hi = p.intervals[name]
            return {"p": float(getattr(p, name)), "lo": float(lo), "hi": float(hi),
                    "random_walk": float(getattr(w, name))}

        return {"k": self.k, "horizon": self.horizon, "paths": p.n_paths,
                "target_first": one("p_up"), "stop_first": one("p_down"),
                "neither": one("p_neither"),
                "ambiguous_share": float(p.ambiguous) if p.ambiguous is not None else None}


def odds_rows(paths: dict[str, np.ndarray], entry: float, scale: float,
              ks: Sequence[float], horizon: int) -> list[OddsRow]:
    """Per ``k``: the paths' odds of +k before -k scale units (and the reverse, and
    neither) within ``horizon`` bars, beside the driftless random walk with sigma from the
    same scale (:func:`sigma_from_scale`)."""
    kk = np.asarray(list(ks), dtype=np.float64)
    if kk.size == 0 or np.any(kk <= 0):
        raise ModelError("Give barrier multiples k > 0, e.g. --odds 1,2.")
    po = path_odds(paths, entry, kk * scale, kk * scale, horizon)
    rw = random_walk_odds(kk * scale, kk * scale, sigma_from_scale(scale), horizon)
    rows = []
    for i, k in enumerate(kk):
        p = Odds(po.p_up[i], po.p_down[i], po.p_neither[i], po.n_paths,
                 None if po.ambiguous is None else po.ambiguous[i],
                 {name: (lo[i], hi[i]) for name, (lo, hi) in po.intervals.items()})
        w = Odds(rw.p_up[i], rw.p_down[i], rw.p_neither[i])
        rows.append(OddsRow(float(k), int(horizon), p, w))
    return rows


def parse_ks(text: str) -> list[float]:
    """``"1,2"`` -> [1.0, 2.0]; one clear sentence for anything else."""
    try:
        ks = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        ks = []
    if not ks or any(not np.isfinite(k) or k <= 0 for k in ks):
        raise ModelError(f"--odds takes positive volatility multiples separated by commas, "
                         f"e.g. --odds 1,2 (got {text!r}).")
    return ks


def sample_paths(model: Any, tok: Any, bars: Any, horizon: int, samples: int = 500,
                 seed: int = 0, temperature: float = 1.0,
                 exchange: str | None = "auto") -> tuple[dict[str, np.ndarray], float, float]:
    """``samples`` CandleGPT continuations of ``horizon`` candles after the last bar of
    ``bars`` (one symbol, canonical frame), rebuilt as OHLC paths from its last close with
    the causal scale; returns the paths, the last close and the scale the next candle sees
    (the vol unit the barriers are multiples of). Torch loads here, not on import."""
    import torch

    from candletok.core.ids import BOS
    from candletok.predict.predict import series_calendar
    from candletok.tokenize.calendar import CalendarSpec
    from candletok.tokenize.exchange import future_times, resolve_exchange

    if horizon < 1 or samples < 1:
        raise ModelError("Odds need a horizon of at least one bar and at least one path.")
    sym = str(bars["symbol"][0])
    enc = tok.encode(bars)
    if enc.height == 0:
        raise ModelError(f"{sym} has too few bars to encode; give it at least two bars.")
    toks = enc["token"].to_numpy().astype(np.int64)
    seq = np.concatenate([[BOS], toks])[-model.config.context:]
    fut = future_times(enc["ts"], horizon, model.calendar or CalendarSpec(),
                       resolve_exchange(sym, exchange or "none"))
    cal = series_calendar(model, enc["ts"], seq.size, horizon, fut.ts)
    idx = torch.from_numpy(seq)[None].repeat(samples, 1).to(model.device)
    g = torch.Generator(device=model.device).manual_seed(seed)
    with torch.no_grad():
        new = model.generate(idx, horizon, temperature=temperature, generator=g,
                             cal=None if cal is None else cal.repeat(samples, 1, 1))
    last_close, scale = tok.continuation_state(bars)[sym]
    paths = tok.rebuild_paths(new[:, seq.size:].cpu().numpy(), float(last_close), float(scale))
    return paths, float(last_close), float(scale)
