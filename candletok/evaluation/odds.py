"""Stop and target odds, the pure math: P(+k volatility units before -k, -k before +k,
neither) in h bars, from the closed form of a driftless random walk, from sampled OHLC
paths, and from the real bars that followed.

A trader who enters at the last close with a target k vol units above and a stop k below
asks which is touched first within h bars. The answers live here, in the evaluation
layer, because the harness scores them (:mod:`~candletok.evaluation.oddsscore`) and must
not import ``predict``; ``predict --odds`` imports them from here (one home).

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
  intervals from the number of paths; :func:`touch_weights` is the touch rule itself.
* :func:`forward_odds`, the same counted on the real bars after rows of a history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from candletok.core.errors import ModelError
from candletok.core.stats import wilson

#: How a bar that touches both barriers is split (see :func:`touch_weights`).
AMBIGUOUS_RULES = ("path", "half", "stop")

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


def touch_weights(o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray,
                  tgt: np.ndarray, stp: np.ndarray, ambiguous: str = "path"
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per path: the weight of "target first", of "stop first" (each 0, 1 or a split of
    an ambiguous bar) and whether the deciding bar was ambiguous.

    ``o, h, lo, c`` have shape ``(..., n)`` (bars last), ``tgt`` and ``stp`` the leading
    shape ``(...)`` (price levels). A barrier is touched in the first bar whose high
    (target) or low (stop) reaches it. A bar that touches both is ambiguous: the bars do
    not say which came first. If the bar opens beyond one barrier, that one came first (a
    gap). Otherwise ``ambiguous`` says how it is split: ``"path"`` reads the bar as open
    -> low -> high -> close when it closes above its open (stop first) and open -> high ->
    low -> close when it closes below (target first), the usual OHLC-path convention, and
    half/half when it closes at its open; ``"half"`` splits it half/half; ``"stop"`` (the
    conservative rule ``evaluate`` scores by) counts it as the stop first: a trader whose
    stop and target are both inside one bar cannot know the target filled first, and
    assuming so would overstate the odds of a win. Vectorized over every leading axis."""
    if ambiguous not in AMBIGUOUS_RULES:
        raise ModelError(f"Unknown ambiguous rule {ambiguous!r}; use "
                         f"{', '.join(AMBIGUOUS_RULES)}.")
    n = h.shape[-1]
    hit_u, hit_d = h >= tgt[..., None], lo <= stp[..., None]
    tu = np.where(hit_u.any(-1), hit_u.argmax(-1), n)  # first touch; n = none
    td = np.where(hit_d.any(-1), hit_d.argmax(-1), n)
    both = (tu == td) & (tu < n)
    t = np.minimum(tu, n - 1)[..., None]
    bo = np.take_along_axis(np.broadcast_to(o, hit_u.shape), t, -1)[..., 0]
    bc = np.take_along_axis(np.broadcast_to(c, hit_u.shape), t, -1)[..., 0]
    gap_u = both & (bo >= tgt)
    gap_d = both & (bo <= stp) & ~gap_u
    amb = both & ~gap_u & ~gap_d
    if ambiguous == "path":
        w = np.where(bc < bo, 1.0, np.where(bc > bo, 0.0, 0.5))
    else:
        w = np.full(amb.shape, 0.5 if ambiguous == "half" else 0.0)
    w_up = ((tu < td) | gap_u) + amb * w
    w_down = ((td < tu) | gap_d) + amb * (1.0 - w)
    return w_up.astype(np.float64), w_down.astype(np.float64), amb


def path_odds(paths: dict[str, np.ndarray], entry: float | np.ndarray,
              up: float | np.ndarray, down: float | np.ndarray, horizon: int | None = None,
              ambiguous: str = "path", unit: float | np.ndarray = 1.0) -> Odds:
    """P(target first), P(stop first), P(neither) counted on sampled OHLC paths.

    ``paths`` holds ``open``, ``high``, ``low``, ``close`` arrays of shape (S, n) (as
    :meth:`~candletok.tokenize.base.Tokenizer.rebuild_paths` gives them); the target is
    ``entry * exp(up)``, the stop ``entry * exp(-down)`` (``up``, ``down``: log distances,
    one per barrier pair, broadcast to K pairs), each times the path's ``unit`` (one per
    path: analogues from several markets each in their own volatility unit); the first
    ``horizon`` bars count. Touches and ambiguous bars as :func:`touch_weights` decides
    them; the share of ambiguous paths is reported either way."""
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
    tgt = e[None, :] * np.exp(ua[:, None] * u[None, :])  # (K, S)
    stp = e[None, :] * np.exp(-da[:, None] * u[None, :])
    w_up, w_down, amb = touch_weights(o[None], h[None], lo[None], c[None], tgt, stp,
                                      ambiguous)
    k_up, k_down = w_up.sum(-1), w_down.sum(-1)
    k_nei = (S - k_up - k_down).round(9)
    shape = np.broadcast(np.asarray(up), np.asarray(down)).shape  # scalars in: scalars out
    iv = {name: tuple(v.reshape(shape) for v in wilson(k, S))
          for name, k in (("p_up", k_up), ("p_down", k_down), ("p_neither", k_nei))}
    return Odds((k_up / S).reshape(shape), (k_down / S).reshape(shape),
                (k_nei / S).reshape(shape), n_paths=S,
                ambiguous=(amb.sum(-1) / S).reshape(shape), intervals=iv)  # type: ignore[arg-type]


def forward_paths(hist: Any, rows: np.ndarray, horizon: int) -> dict[str, np.ndarray]:
    """The real bars after each of ``rows`` of a
    :class:`~candletok.evaluation.history.History` as (len(rows), horizon) OHLC arrays
    (the caller keeps only rows with ``horizon`` bars after them in their series). The
    history holds no opens: each bar opens at the previous close, so no gap past a
    barrier is seen and a bar touching both is decided by the ambiguous rule."""
    fwd = np.asarray(rows, dtype=np.int64)[:, None] + 1 + np.arange(horizon)[None, :]
    return {"open": hist.prev_close[fwd], "high": hist.high[fwd], "low": hist.low[fwd],
            "close": hist.close[fwd]}


def forward_outcomes(hist: Any, rows: np.ndarray, ks: Sequence[float], horizon: int,
                     ambiguous: str = "stop") -> tuple[np.ndarray, np.ndarray]:
    """What really happened after each origin: (K, len(rows)) 1.0 where the target
    (+k scale units above the origin's close, the scale known at the close,
    ``next_scale``) was touched first within ``horizon`` bars, and the same for the stop.
    A bar touching both counts as the stop first (``ambiguous="stop"``, the conservative
    rule, see :func:`touch_weights`), so each outcome is 0 or 1. Every row needs
    ``horizon`` bars after it in its series (``History.origins`` checks that)."""
    r = np.asarray(rows, dtype=np.int64)
    kk = np.asarray(list(ks), dtype=np.float64)[:, None]
    p = forward_paths(hist, r, horizon)
    c0, u = hist.close[r][None, :], hist.next_scale[r][None, :]
    w_up, w_down, _ = touch_weights(p["open"][None], p["high"][None], p["low"][None],
                                    p["close"][None], c0 * np.exp(kk * u),
                                    c0 * np.exp(-kk * u), ambiguous)
    return w_up, w_down


def forward_odds(hist: Any, rows: np.ndarray, ks: Sequence[float], horizon: int,
                 ambiguous: str = "path") -> Odds:
    """Stop and target odds counted on the real bars after ``rows`` of a
    :class:`~candletok.evaluation.history.History` (the analogues' forward paths: each
    match's last candle is a row): entry at the row's close, barriers ``k`` times the
    scale known there (``next_scale``), touches by the next ``horizon`` bars' highs and
    lows in the same series (:func:`forward_paths`). Rows without ``horizon`` bars after
    them in their series are left out."""
    r = np.asarray(rows, dtype=np.int64).reshape(-1)
    r = r[r + horizon < hist.ends[hist.series[r]]]
    if r.size == 0:
        raise ModelError(f"No row has {horizon} bars after it in its series.")
    kk = np.asarray(list(ks), dtype=np.float64)
    return path_odds(forward_paths(hist, r, horizon), hist.close[r], kk, kk, horizon,
                     ambiguous, unit=hist.next_scale[r])
