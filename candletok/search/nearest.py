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

DECIMALS = 9  # distances are ranked at this precision (see window_distance)
EPS = 2 * 10.0**-DECIMALS
MAX_COMBOS = 1 << 18
SEARCH_COST = 20  # one binary search over the n-gram array ~ this many table lookups  # token combinations of one group before a full scan is cheaper


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
    from the oldest candle to the newest and rounded to ``DECIMALS`` places: two windows
    whose distances are mathematically equal (common with token representatives) then
    rank by time, not by the last bit of a floating-point sum."""
    tokens = idx.tokens
    d = np.zeros(e.size)
    for lag in range(C.shape[0] - 1, -1, -1):
        d += C[lag][np.asarray(tokens[e - lag]).astype(np.int64)]
    return np.round(d, DECIMALS)


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
    over the per-lag minima is <= thr; None when there are more than MAX_COMBOS. Each step
    counts the extensions first (a sorted search per combination) and only then builds
    them, so an overflow costs nothing."""
    vals = np.zeros(1, dtype=np.int64)
    sums = np.zeros(1)
    for lag in lags:
        ex = C[lag] - mins[lag]
        ok = np.flatnonzero(np.isfinite(ex) & (ex <= thr))  # never a special token
        ok = ok[np.argsort(ex[ok], kind="stable")]
        exs = ex[ok]
        cnt = np.searchsorted(exs, thr - sums, side="right")
        if int(cnt.sum()) > MAX_COMBOS:
            return None
        rep = np.repeat(np.arange(vals.size), cnt)
        j = ranges_to_indices(np.zeros(cnt.size, dtype=np.int64), cnt)
        vals = vals[rep] * radix + ok[j]
        sums = sums[rep] + exs[j]
    return vals


def _group_runs(idx: SearchIndex, C: np.ndarray, mins: np.ndarray, lags: range, thr: float
                ) -> tuple[np.ndarray, np.ndarray] | None:
    """[a, b) runs of the n-gram array holding every window whose candles at ``lags`` have
    excess <= thr; None when the combinations are too many."""
    vals = _group_combos(C, mins, lags, thr, idx.radix)
    if vals is None:
        return None
    vals.sort()  # ascending keys: numpy's binary search reuses the previous answer
    lo, hi = prefix_bounds(vals, len(lags), idx.radix, idx.order)
    return np.searchsorted(idx.grams, lo), np.searchsorted(idx.grams, hi)


def _run_ends(idx: SearchIndex, a: np.ndarray, b: np.ndarray, lag0: int) -> np.ndarray:
    """Window ends of the runs' positions, shifted by the group's first lag (the
    window's newest candle must lie in the same series)."""
    p = (np.asarray(idx.grams[ranges_to_indices(a, b)]) & POS_MASK).astype(np.int64)
    if not lag0:
        return p
    e = p + lag0
    ok = e < idx.n
    e, p = e[ok], p[ok]
    return e[idx.sid[e] == idx.sid[p]]


def candidates(idx: SearchIndex, C: np.ndarray, tau: float) -> np.ndarray | None:
    """Every window end whose distance can be <= tau (a superset, ascending), or None
    when the filter would keep too much and a full scan is cheaper. Of the group lengths
    one key allows, the cheapest (searches plus candidates) is used."""
    N = C.shape[0]
    mins = C.min(axis=1)
    slack = tau - float(mins.sum())
    if slack < 0:
        return np.zeros(0, dtype=np.int64)
    best: tuple[float, list[range], list[tuple[np.ndarray, np.ndarray]]] | None = None
    for size in range(min(idx.order, N), 0, -1):
        groups = [range(a, min(a + size, N)) for a in range(0, N, size)]
        thr = slack / len(groups) * (1 + 1e-12) + 1e-300  # rounding never drops a window
        runs = []
        for lags in groups:
            r = _group_runs(idx, C, mins, lags, thr)
            if r is None:
                break
            runs.append(r)
        if len(runs) < len(groups):
            continue
        total = sum(int((b - a).sum()) for a, b in runs)
        if total > idx.n // 2:
            continue
        # what it costs: a binary search per combination, N lookups per candidate
        cost = SEARCH_COST * sum(a.size for a, _ in runs) + N * total
        if best is None or cost < best[0]:
            best = (cost, groups, runs)
    if best is None:
        return None
    parts = [_run_ends(idx, a, b, lags.start) for (a, b), lags in zip(best[2], best[1],
                                                                      strict=True)]
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)


def _seed_tau(idx: SearchIndex, cut: Cut, C: np.ndarray, M: int) -> float:
    """An upper bound of the M-th smallest eligible distance: the M-th smallest among real
    windows whose newest candles fit the query best (the best token combinations of the
    newest lags, threshold doubled until at least M eligible windows; fewer lags when
    the combinations grow too many); inf when none."""
    N = C.shape[0]
    mins = C.min(axis=1)
    unit = _unit(C)
    for size in range(min(idx.order, N), 0, -1):
        lags = range(0, size)
        thr = unit / 4
        for _ in range(64):
            runs = _group_runs(idx, C, mins, lags, thr)
            if runs is None:
                break  # too many combinations: try fewer lags
            count = int((runs[1] - runs[0]).sum())
            if count > idx.n // 2:
                return float("inf")
            if count >= M:
                e = _run_ends(idx, runs[0], runs[1], 0)
                d = window_distance(idx, e[cut.eligible(e)], C)
                d = d[np.isfinite(d)]
                if d.size >= M:
                    return float(np.partition(d, M - 1)[M - 1])
            thr *= 2
    return float("inf")


def _unit(C: np.ndarray) -> float:
    """A natural step of the distance: the median positive excess of one candle."""
    ex = C - C.min(axis=1, keepdims=True)
    pos = ex[np.isfinite(ex) & (ex > 0)]
    return float(np.median(pos)) if pos.size else 1.0


def nearest(idx: SearchIndex, cut: Cut, C: np.ndarray, k: int) -> Nearest:
    """The k nearest eligible windows after thinning (exact; see the module docstring)."""
    zone = cut.rule.zone
    M = max(1, k * (2 * zone - 1))
    tau = _seed_tau(idx, cut, C, M)
    floor = float(C.min(axis=1).sum())
    scanned = 0
    while True:
        cand = candidates(idx, C, tau + EPS)  # rounding moves a distance by < EPS
        full = cand is None
        cand = cut.all_eligible() if cand is None else cand[cut.eligible(cand)]
        d = window_distance(idx, cand, C)
        scanned += int(cand.size)
        within = np.isfinite(d) if full else d <= tau + EPS
        cand, d = cand[within], d[within]
        kept = thin_by_distance(cand, d, idx.sid[cand], zone, k)
        if kept.size >= k or full:
            return Nearest(cand[kept], d[kept], scanned, full, tau)
        tau = floor + max(2.0 * (tau - floor), _unit(C))  # inf stays inf: a full scan


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
        d_all[s : s + chunk] = np.round(np.nan_to_num(diff2.sum(axis=(1, 2)), nan=np.inf),
                                        DECIMALS)
    finite = np.isfinite(d_all)
    e_all, d_all = e_all[finite], d_all[finite]
    kept = thin_by_distance(e_all, d_all, idx.sid[e_all], cut.rule.zone, k)
    return Nearest(e_all[kept], d_all[kept], int(e_all.size), True, float("inf"))
