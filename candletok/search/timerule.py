"""The time rule: which windows may answer a query asked at time T, and how many
independent answers they are.

A query carries its time T, the open time of its last bar. A window ending at position
``e`` is a *match* only when

* its N candles lie inside one series (``e - start >= N - 1``);
* its forward window for the shortest horizon ends at or before T -- ``ts[e + h] <= T``
  -- in whatever symbol it is: another symbol's future is market-wide information;
* in the query's own series, it is at least the exclusion zone ``Z = N + max(h)`` bars
  before the query's last candle, so neither the window nor its forward bars overlap the
  query's window.

A match's outcome at a longer horizon counts only when that forward window also ends by
T and inside the series; otherwise it is *truncated* (counted, never padded). Matches in
one series closer than Z bars overlap; they are thinned so that each keeps its own bars.

Everything here reads only positions whose time is <= T, so deleting or changing every
bar after T leaves the answer unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from candletok.search.grams import ranges_to_indices
from candletok.search.index import SearchIndex


@dataclass(frozen=True)
class TimeRule:
    """A query's time T (int64 microseconds UTC), window length N, horizons, and the
    position of its own last candle when its series is in the index."""

    T: int
    window: int
    horizons: tuple[int, ...]
    q_sid: int | None = None
    q_end: int | None = None

    @property
    def zone(self) -> int:
        """Exclusion zone in bars: a window plus its longest forward window."""
        return self.window + max(self.horizons)

    @property
    def h0(self) -> int:
        return min(self.horizons)

    def with_window(self, n: int) -> TimeRule:
        return replace(self, window=int(n))


def series_limits(idx: SearchIndex, T: int) -> np.ndarray:
    """For every series, one past its last position with ``ts <= T`` (its start when
    none). A vectorized bisection across all series at once: O(S log L), not O(n)."""
    lo = np.asarray(idx.starts[:-1], dtype=np.int64).copy()
    hi = np.asarray(idx.starts[1:], dtype=np.int64).copy()
    ts = idx.ts
    while True:
        open_ = lo < hi
        if not open_.any():
            return lo
        mid = (lo + hi) // 2
        safe = np.where(open_, mid, 0)
        go = open_ & (np.asarray(ts[safe]) <= T)
        lo = np.where(go, mid + 1, lo)
        hi = np.where(open_ & ~go, mid, hi)


@dataclass
class Cut:
    """A time rule applied to one index: per-series limits computed once per query."""

    idx: SearchIndex
    rule: TimeRule
    limits: np.ndarray

    @classmethod
    def of(cls, idx: SearchIndex, rule: TimeRule) -> Cut:
        return cls(idx, rule, series_limits(idx, rule.T))

    def eligible(self, e: np.ndarray) -> np.ndarray:
        """Mask of candidate window ends ``e`` that may be matches (see module doc)."""
        e = np.asarray(e, dtype=np.int64)
        sid = self.idx.sid[e]
        start = self.idx.starts[sid]
        ok = (e - start >= self.rule.window - 1) & (e + self.rule.h0 < self.limits[sid])
        r = self.rule
        if r.q_sid is not None and r.q_end is not None:
            ok &= ~((sid == r.q_sid) & (e > r.q_end - r.zone))
        return ok

    def available(self, e: np.ndarray, h: int) -> np.ndarray:
        """Mask: the h-bar forward window of ``e`` ends inside its series and by T."""
        e = np.asarray(e, dtype=np.int64)
        return e + h < self.limits[self.idx.sid[e]]

    def window_ranges(self, h: int) -> tuple[np.ndarray, np.ndarray]:
        """Per series, the [lo, hi) of window ends whose h-bar forward window counts:
        every window of the same history under the same rule (the base rate)."""
        r = self.rule
        lo = np.asarray(self.idx.starts[:-1], dtype=np.int64) + r.window - 1
        hi = self.limits - h
        if r.q_sid is not None and r.q_end is not None:
            hi[r.q_sid] = min(int(hi[r.q_sid]), r.q_end - r.zone + 1)
        return lo, np.maximum(hi, lo)

    def eligible_ranges(self, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per series, the ``[a, b)`` of positions in ``ends`` (every window end of the
        index, ascending) that :meth:`eligible` admits: the rule's own
        :meth:`window_ranges` found by binary search, so a search over every window can
        skip the rest by slices instead of testing each end."""
        lo, hi = self.window_ranges(self.rule.h0)
        ends = np.asarray(ends)
        return np.searchsorted(ends, lo), np.searchsorted(ends, hi)

    def count_eligible(self) -> int:
        """How many windows the rule lets answer (without listing them)."""
        lo, hi = self.window_ranges(self.rule.h0)
        return int((hi - lo).sum())

    def all_eligible(self) -> np.ndarray:
        """Every eligible window end, ascending (a full scan's candidates)."""
        return ranges_to_indices(*self.window_ranges(self.rule.h0))


def chain_from_first(nxt: np.ndarray) -> np.ndarray:
    """Indices visited by following ``nxt`` from 0 (``nxt[i] > i``; ``len(nxt)`` ends).

    Pointer doubling: after round k the visited set holds the first 2**k chain members,
    so the rounds are log2(chain length), each one vectorized gather over the array."""
    m = nxt.size
    if m == 0:
        return np.zeros(0, dtype=np.int64)
    jump = np.append(np.asarray(nxt, dtype=np.int64), m)
    visited = np.zeros(1, dtype=np.int64)
    while True:
        img = jump[visited]
        img = img[img < m]
        if img.size == 0:
            return visited
        visited = np.concatenate([visited, img])
        jump = jump[jump]


def thin_chronological(idx: SearchIndex, e: np.ndarray, zone: int) -> np.ndarray:
    """Greedy in time order: within each series keep the first window, then the next one
    at least ``zone`` bars later, and so on. ``e`` ascending; returns the kept ends."""
    e = np.asarray(e, dtype=np.int64)
    if e.size <= 1:
        return e
    sid = idx.sid[e]
    nxt = np.searchsorted(e, e + zone, side="left")
    next_series = np.searchsorted(sid, sid, side="right")  # first candidate of a later series
    return e[chain_from_first(np.minimum(nxt, next_series))]


def thin_by_distance(e: np.ndarray, dist: np.ndarray, sid: np.ndarray, zone: int,
                     k: int | None = None) -> np.ndarray:
    """Greedy in distance order (ties: earlier position first): keep a window unless a
    kept one of the same series is closer than ``zone`` bars; stop at ``k`` kept.
    Returns indices into ``e`` in distance order.

    The loop runs over candidates, at most ``k * (2 * zone - 1)`` of them before k are
    kept (each kept window blocks at most 2 * (zone - 1) others), not over candles."""
    m = e.size if k is None else min(e.size, int(k) * (2 * zone - 1))
    if m < e.size:  # only the m best can be kept first: sort those (and every tie of the last)
        part = np.argpartition(dist, m - 1)[:m]
        sel = np.flatnonzero(dist <= dist[part].max())
        order = sel[np.lexsort((e[sel], dist[sel]))]
    else:
        order = np.lexsort((e, dist))
    kept: list[int] = []
    taken: dict[int, list[int]] = {}
    limit = len(order) if k is None else int(k)
    for i in order.tolist():
        s, p = int(sid[i]), int(e[i])
        prev = taken.setdefault(s, [])
        if any(abs(p - q) < zone for q in prev):
            continue
        prev.append(p)
        kept.append(i)
        if len(kept) >= limit:
            break
    return np.asarray(kept, dtype=np.int64)


def cross_correlation(idx: SearchIndex, T: int) -> tuple[float, float]:
    """(rho, mean symbols per bar time) from bars up to T: rho is the pooled correlation
    of the 1-bar scaled returns of different symbols at the same bar time (0 when no two
    symbols share a time). It prices the fact that matches of several symbols on the
    same dates move together."""
    times, cums = idx.day_stats()
    j = int(np.searchsorted(times, T, side="right")) - 1
    if j < 0:
        return 0.0, 1.0
    M, S, Q, S2, P = (float(x) for x in cums[:, j])
    if M <= 0:
        return 0.0, 1.0
    mbar = (P + M) / M
    mu = S / M
    var = Q / M - mu * mu
    if P <= 0 or var <= 0:
        return 0.0, mbar
    rho = ((S2 - Q) / P - mu * mu) / var
    return float(np.clip(rho, 0.0, 1.0)), mbar


def effective_n(idx: SearchIndex, e: np.ndarray, h: int, rho: float) -> tuple[float, int]:
    """(effective number, clusters) of matches ``e`` whose h-bar forward windows are used.

    Matches whose forward windows overlap in time (they can only be in different series
    after thinning) form a cluster; a cluster of m counts m / (1 + (m - 1) rho), the
    Kish design effect with the cross-symbol correlation rho."""
    e = np.asarray(e, dtype=np.int64)
    if e.size == 0:
        return 0.0, 0
    a = np.asarray(idx.ts[e + 1])
    b = np.asarray(idx.ts[e + h])
    o = np.argsort(a, kind="stable")
    a, b = a[o], b[o]
    reach = np.maximum.accumulate(b)
    new = np.ones(a.size, dtype=bool)
    new[1:] = a[1:] > reach[:-1]
    sizes = np.diff(np.append(np.flatnonzero(new), a.size)).astype(np.float64)
    return float((sizes / (1.0 + (sizes - 1.0) * rho)).sum()), int(sizes.size)
