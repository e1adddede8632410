"""Exact K nearest N-candle windows in the weighted feature space of the vocabulary.

A window's distance to the query is the sum over its N candles of the squared weighted
distance between the candle's representative features (its token's, what the dataset
stores) and the query candle's features. The weights are the vocabulary's own (kmeans
weighs gap and body twice); a vocabulary without weights uses the kmeans defaults.

Because a candle's cost depends only on its token and its lag, the query becomes a
table ``C[lag, token]`` and a window's distance is N table lookups: nothing of size
n x N x d is ever materialized. The search is exact (it returns what a brute-force scan
over every window returns) and usually touches a tiny part of the data:

1. **Upper bound.** The windows sharing the query's last tokens (one run of the sorted
   n-gram array) give real distances; the M-th smallest of any set of real windows is an
   upper bound tau of the M-th smallest overall.
2. **Pigeonhole filter.** Split the N lags into G groups of ``order`` consecutive lags.
   With per-lag minima m, a window with distance <= tau has total excess
   ``sum(C - m) <= tau - sum(m) = slack``, so at least one group has excess <= slack / G.
   The token combinations of a group under that bound are enumerated (with pruning) and
   each is one run of the n-gram array: the union of those runs holds every window within
   tau.
3. **Verify.** Exact distances of the candidates, the time rule, then thinning in
   distance order. With M = k (2 Z - 1) (Z the exclusion zone), the top M windows always
   contain the first k kept after thinning; if fewer than k survive, tau grows and step
   2 repeats. When the candidates would be most of the data it scans everything instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from candletok.search.index import (
    POS_MASK,
    SearchIndex,
    prefix_bounds,
    ranges_to_indices,
)
from candletok.search.timerule import Cut, thin_by_distance
from candletok.tokenize.base import Tokenizer
from candletok.tokenize.kmeans import DEFAULT_WEIGHTS

MAX_COMBOS = 1 << 18  # token combinations of one group before a full scan is cheaper
SEED_FACTOR = 8  # seed windows kept, in multiples of M (a strided subset is still a bound)


def feature_weights(tok: Tokenizer) -> np.ndarray:
    """The vocabulary's feature weights (kmeans: its own; others: the kmeans defaults)."""
    w = getattr(tok, "weights", None)
    if w is not None:
        return np.asarray(w, dtype=np.float64)
    return np.array([DEFAULT_WEIGHTS[n] for n in tok.feature_names], dtype=np.float64)


def token_features(tok: Tokenizer) -> np.ndarray:
    """(vocab_size, d) weighted representative features; NaN rows for specials."""
    return tok.decode_features(np.arange(tok.vocab_size)) * feature_weights(tok)


def query_costs(tok: Tokenizer, qfeat: np.ndarray) -> np.ndarray:
    """(N, vocab_size) cost table in lag order (row 0: the newest candle): the squared
    weighted distance of every token's representative to the query candle at that lag.
    Specials cost inf; a query candle with missing features is a wildcard (cost 0)."""
    F = token_features(tok)
    Q = np.asarray(qfeat, dtype=np.float64) * feature_weights(tok)
    N, d = Q.shape
    D = np.zeros((N, F.shape[0]))
    for f in range(d):  # feature by feature, the order the brute force sums in
        D += np.square(Q[:, f : f + 1] - F[None, :, f])
    special = ~np.isfinite(F).all(axis=1)
    D[:, special] = np.inf
    wild = ~np.isfinite(Q).all(axis=1)
    D[wild] = np.where(special, np.inf, 0.0)[None, :]
    return D[::-1].copy()


def window_distance(idx: SearchIndex, e: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Distances of windows ending at ``e`` (their N candles inside one series), summed
    from the oldest candle to the newest."""
    tokens = idx.tokens
    d = np.zeros(e.size)
    for lag in range(C.shape[0] - 1, -1, -1):
        d += C[lag][np.asarray(tokens[e - lag]).astype(np.int64)]
    return d


@dataclass
class Nearest:
    """The kept windows (nearest first), their distances, and what the search cost."""

    e: np.ndarray
    dist: np.ndarray
    scanned: int  # windows whose distance was computed
    full_scan: bool
    tau: float


def _group_combos(C: np.ndarray, mins: np.ndarray, lags: range, thr: float, radix: int
                  ) -> np.ndarray | None:
    """Prefix values (newest lag first) of the token combinations of ``lags`` whose excess
    over the per-lag minima is <= thr; None when there are too many."""
    vals = np.zeros(1, dtype=np.int64)
    sums = np.zeros(1)
    for lag in lags:
        ex = C[lag] - mins[lag]
        ok = np.flatnonzero(ex <= thr)
        vals = (vals[:, None] * radix + ok[None, :]).ravel()
        sums = (sums[:, None] + ex[ok][None, :]).ravel()
        keep = sums <= thr
        vals, sums = vals[keep], sums[keep]
        if vals.size > MAX_COMBOS:
            return None
    return vals


def candidates(idx: SearchIndex, C: np.ndarray, tau: float) -> np.ndarray | None:
    """Every window end whose distance can be <= tau (a superset, ascending), or None
    when the filter would keep too much and a full scan is cheaper."""
    N = C.shape[0]
    mins = C.min(axis=1)
    slack = tau - float(mins.sum())
    if slack < 0:
        return np.zeros(0, dtype=np.int64)
    size = min(idx.order, N)
    groups = [range(a, min(a + size, N)) for a in range(0, N, size)]
    thr = slack / len(groups) * (1 + 1e-12) + 1e-300  # rounding never drops a window
    parts = []
    total = 0
    for lags in groups:
        vals = _group_combos(C, mins, lags, thr, idx.radix)
        if vals is None:
            return None
        lo, hi = prefix_bounds(vals, len(lags), idx.radix, idx.order)
        a = np.searchsorted(idx.grams, lo)
        b = np.searchsorted(idx.grams, hi)
        total += int((b - a).sum())
        if total > idx.n // 2:
            return None
        p = (np.asarray(idx.grams[ranges_to_indices(a, b)]) & POS_MASK).astype(np.int64)
        e = p + lags.start
        if lags.start:  # the window's newest candle must be in the same series
            ok = e < idx.n
            e, p = e[ok], p[ok]
            e = e[idx.sid[e] == idx.sid[p]]
        parts.append(e)
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)


def _seed_tau(idx: SearchIndex, cut: Cut, C: np.ndarray, qtokens: np.ndarray, M: int
              ) -> float:
    """An upper bound of the M-th smallest eligible distance from the windows sharing
    the query's last tokens (longest suffix with at least M of them, strided to at most
    SEED_FACTOR * M); a guess when no suffix has M."""
    N = C.shape[0]
    best = np.zeros(0)
    for s in range(min(idx.order, N), 0, -1):
        e = idx.suffix_positions(qtokens[N - s :])
        e = e[cut.eligible(e)]
        if e.size > SEED_FACTOR * M:
            e = e[:: e.size // (SEED_FACTOR * M)]
        if e.size:
            best = window_distance(idx, e, C)
        if e.size >= M:
            return float(np.partition(best, M - 1)[M - 1])
    floor = float(C.min(axis=1).sum())
    return float(best.max()) if best.size else floor + _unit(C)


def _unit(C: np.ndarray) -> float:
    """A natural step of the distance: the median positive excess of one candle."""
    ex = C - C.min(axis=1, keepdims=True)
    pos = ex[np.isfinite(ex) & (ex > 0)]
    return float(np.median(pos)) if pos.size else 1.0


def nearest(idx: SearchIndex, cut: Cut, C: np.ndarray, qtokens: np.ndarray, k: int
            ) -> Nearest:
    """The k nearest eligible windows after thinning (exact; see the module docstring)."""
    zone = cut.rule.zone
    M = max(1, k * (2 * zone - 1))
    tau = _seed_tau(idx, cut, C, qtokens, M)
    floor = float(C.min(axis=1).sum())
    scanned = 0
    while True:
        cand = candidates(idx, C, tau)
        full = cand is None
        cand = cut.all_eligible() if cand is None else cand[cut.eligible(cand)]
        d = window_distance(idx, cand, C)
        scanned += int(cand.size)
        within = np.isfinite(d) if full else d <= tau
        cand, d = cand[within], d[within]
        kept = thin_by_distance(cand, d, idx.sid[cand], zone, k)
        if kept.size >= k or full:
            return Nearest(cand[kept], d[kept], scanned, full, tau)
        tau = floor + max(2.0 * (tau - floor), _unit(C))


def brute_force(idx: SearchIndex, tok: Tokenizer, qfeat: np.ndarray, cut: Cut, k: int,
                chunk: int = 1 << 18) -> Nearest:
    """The reference: materialize every window's weighted features (in chunks), compute
    every distance, apply the time rule, thin. What :func:`nearest` must equal."""
    F = token_features(tok)
    Q = np.asarray(qfeat, dtype=np.float64) * feature_weights(tok)
    Q = np.where(np.isfinite(Q), Q, np.nan)
    N = Q.shape[0]
    e_all = cut.all_eligible()
    d_all = np.empty(e_all.size)
    lags = np.arange(N - 1, -1, -1)
    for s in range(0, e_all.size, chunk):
        e = e_all[s : s + chunk]
        W = F[np.asarray(idx.tokens[e[:, None] - lags[None, :]]).astype(np.int64)]
        diff2 = np.square(W - Q[None, :, :])
        diff2 = np.where(np.isnan(Q)[None, :, :] & np.isfinite(W), 0.0, diff2)
        d_all[s : s + chunk] = np.nan_to_num(diff2.sum(axis=(1, 2)), nan=np.inf)
    finite = np.isfinite(d_all)
    e_all, d_all = e_all[finite], d_all[finite]
    kept = thin_by_distance(e_all, d_all, idx.sid[e_all], cut.rule.zone, k)
    return Nearest(e_all[kept], d_all[kept], int(e_all.size), True, float("inf"))
