"""Exact K nearest N-candle windows in the weighted feature space of the vocabulary.

A window's distance to the query is the sum over its N candles of the squared weighted
distance between the candle's features and the query candle's features. ``similar``
uses each candle's own features, computed from its stored bar (:class:`OwnMetric`); with
a plain table the candle's features are its token's representative. The weights are the
vocabulary's own (kmeans weighs gap and body twice); a vocabulary without weights uses
the kmeans defaults.

With representatives a candle's cost depends only on its token and its lag, so the query
becomes a table ``C[lag, token]`` and a window's distance is N table lookups: nothing of
size n x N x d is ever materialized. With own features the table holds a lower bound of
each candle's cost instead (the distance to the box its token's candles fill), the steps
below select the candidates by it, and the candidates get their exact own-feature
distances. The search is exact -- it returns
what a brute-force scan of every window returns (:func:`brute_force`, which the tests
compare against) -- and on large data it touches a small part of it:

1. **A threshold.** tau is guessed from the distances of a sample of eligible windows
   (about a few k windows should fall under it).
2. **A necessary condition.** With per-lag minima m, a window within tau has, at *every*
   pair of adjacent lags, an excess ``C - m`` of at most ``slack = tau - sum(m)``. Of all
   single lags and adjacent pairs, the one whose allowed tokens cover the fewest windows
   (counted from token and token-pair frequencies) is used: its allowed pairs are runs
   of the sorted n-gram array, so the candidates are gathered without a scan.
3. **A cascade.** The other lags are added in order of selectivity, dropping a candidate
   as soon as its excess passes the slack; the survivors get their exact distance.
4. **Thinning.** Windows within tau, in distance order, thinned; if fewer than k remain,
   tau grows and 2-4 repeat. Every window within tau was considered, so the k kept are
   exactly the first k a brute force keeps.

When the candidates would be a large part of the data, a vectorized full scan (one table
lookup per lag over the contiguous token array) is cheaper and is used instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from candletok.search.grams import ranges_to_indices
from candletok.search.index import POS_MASK, SearchIndex
from candletok.search.timerule import Cut, thin_by_distance
from candletok.tokenize.base import Tokenizer
from candletok.tokenize.kmeans import DEFAULT_WEIGHTS

DECIMALS = 9  # distances are ranked at this precision (see window_distance)
EPS = 2 * 10.0**-DECIMALS
MAX_PAIRS = 1 << 20  # token pairs of one stage before single lags are cheaper
FULL_SCAN_SHARE = 0.3  # candidates above this share of the windows: scan everything
SAMPLE = 1 << 15  # windows whose distances guess tau
TARGET = 4  # tau should admit about TARGET * k windows
SMALL = 1 << 19  # below this many windows a full scan is the fastest path (measured)


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


def index_features(idx: SearchIndex, tok: Tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) weighted own features of every candle of the index (from its stored bar;
    NaN rows for special tokens) and, per token, the box its candles' features fill:
    (2, vocab, d) per-feature minima and maxima (+inf/-inf for a token without candles).
    Computed once per index, vectorized."""
    cached = idx._own
    if cached is None or cached[0].shape[0] != idx.n:
        from candletok.search.query import own_features

        F = own_features(idx, tok, 0, idx.n) * feature_weights(tok)
        t = idx.tokens_intp
        ok = np.isfinite(F).all(axis=1)
        d = F.shape[1]
        box = np.empty((2, tok.vocab_size, d))
        box[0], box[1] = np.inf, -np.inf
        for f in range(d):  # one unbuffered pass per feature
            np.minimum.at(box[0, :, f], t[ok], F[ok, f])
            np.maximum.at(box[1, :, f], t[ok], F[ok, f])
        cached = idx._own = (F, box)
    return cached


@dataclass
class OwnMetric:
    """Window distances on the candles' own weighted features (what the search compares
    when each candle's stored bar is known), with per-(lag, token) lower bounds for the
    n-gram cascade: every candle of token t lies in the box its token's candles fill, so
    its cost is at least the squared distance from the query candle to that box (zero
    inside it); a query candle with missing features is a wildcard (cost 0)."""

    F: np.ndarray  # (n, d) weighted own features of every index position
    Q: np.ndarray  # (N, d) weighted query features, oldest first
    bounds: np.ndarray  # (N, vocab) lower-bound cost table, lag order (row 0: newest)

    @classmethod
    def of(cls, idx: SearchIndex, tok: Tokenizer, qfeat: np.ndarray) -> OwnMetric:
        F, box = index_features(idx, tok)
        Q = np.asarray(qfeat, dtype=np.float64) * feature_weights(tok)
        C = query_costs(tok, qfeat)  # only for its specials (inf) and wildcards (0)
        lo, hi = box[0][None, :, :], box[1][None, :, :]
        q = Q[::-1][:, None, :]  # lag order, like the cost tables
        with np.errstate(invalid="ignore"):
            gap = np.maximum(np.maximum(lo - q, q - hi), 0.0)
            lb = np.square(gap).sum(axis=2)
        wild = ~np.isfinite(Q[::-1]).all(axis=1)
        empty = ~np.isfinite(box[0]).all(axis=1)
        bounds = np.where(wild[:, None] | ~np.isfinite(C), C, lb)
        bounds[:, empty & np.isfinite(C).all(axis=0)] = np.inf  # no candle carries it
        return cls(F, Q, np.where(np.isnan(bounds), np.inf, bounds))

    def distance(self, e: np.ndarray) -> np.ndarray:
        """Distances of windows ending at ``e``, summed oldest candle first and rounded
        to ``DECIMALS`` places like :func:`window_distance`. A query candle with missing
        features is a wildcard; a special candle (no features) is infinitely far."""
        N = self.Q.shape[0]
        e = np.asarray(e, dtype=np.int64)
        d = np.zeros(e.size)
        for j in range(N):  # one vectorized pass per query candle
            W = self.F[e - (N - 1 - j)]
            q = self.Q[j]
            special = ~np.isfinite(W).all(axis=1)
            cost = np.zeros(e.size) if not np.isfinite(q).all() else \
                np.square(W - q[None, :]).sum(axis=1)
            d += np.where(special, np.inf, cost)
        return np.round(d, DECIMALS)


@dataclass
class Nearest:
    """The kept windows (nearest first), their distances, and what the search cost."""

    e: np.ndarray
    dist: np.ndarray
    scanned: int  # windows whose distance (or partial distance) was computed
    full_scan: bool
    tau: float


def _finish(idx: SearchIndex, cut: Cut, C: np.ndarray, e: np.ndarray, k: int, tau: float,
            scanned: int, full: bool, own: OwnMetric | None = None) -> tuple[Nearest, bool]:
    """Exact distances of candidates ``e``, those within tau, thinned: (result, enough)."""
    d = window_distance(idx, e, C) if own is None else own.distance(e)
    within = np.isfinite(d) & (d <= tau + EPS)
    e, d = e[within], d[within]
    kept = thin_by_distance(e, d, idx.sid[e], cut.rule.zone, k)
    return Nearest(e[kept], d[kept], scanned, full, tau), kept.size >= k


def scan_distances(idx: SearchIndex, cut: Cut, C: np.ndarray) -> tuple[np.ndarray, float]:
    """float32 distance of every window (inf outside the time rule's window ranges): one
    table lookup per lag over the contiguous token array, no index arrays. Returns the
    distances and a bound of their float32 error (what a threshold must add)."""
    N, n = C.shape[0], idx.n
    ti = idx.tokens_intp
    C32 = C.astype(np.float32)
    D = np.zeros(n, dtype=np.float32)
    buf = np.empty(n, dtype=np.float32)
    for lag in range(N):
        np.take(C32[lag], ti[: n - lag], out=buf[: n - lag])
        D[lag:] += buf[: n - lag]
    lo, hi = cut.window_ranges(cut.rule.h0)
    delta = np.bincount(lo, minlength=n + 1) - np.bincount(hi, minlength=n + 1)
    D[np.cumsum(delta)[:n] <= 0] = np.inf
    finite = C[np.isfinite(C)]
    top = float(np.abs(finite).max()) if finite.size else 0.0
    return D, 4.0 * N * N * top * 2.0**-24 + 1e-30


def full_scan(idx: SearchIndex, cut: Cut, C: np.ndarray, k: int, tau: float = np.inf,
              own: OwnMetric | None = None) -> Nearest:
    """Every eligible window by :func:`scan_distances`, then the windows within tau (the
    float32 error allowed for) get exact distances and are thinned; tau grows until k
    are kept (the scan is not repeated). With ``own``, ``C`` is its lower-bound table."""
    D, margin = scan_distances(idx, cut, C)
    finite = np.isfinite(D)
    n_ok = int(finite.sum())
    floor = float(C.min(axis=1).sum())
    while True:
        e = np.flatnonzero(finite if not np.isfinite(tau) else np.less_equal(D, tau + margin))
        res, enough = _finish(idx, cut, C, e, k, tau, n_ok, True, own)
        if enough or e.size >= n_ok:
            return res
        tau = floor + 2.0 * max(tau - floor, 1e-3)


def _guess_tau(idx: SearchIndex, cut: Cut, C: np.ndarray, want: int, n_ok: int,
               own: OwnMetric | None = None) -> float:
    """The distance under which about ``want`` of the ``n_ok`` eligible windows fall,
    read off a sample (a guess: the search stays exact whatever it is)."""
    lo, hi = cut.window_ranges(cut.rule.h0)
    lens = hi - lo
    rng = np.random.default_rng(0)
    ranks = np.sort(rng.choice(n_ok, size=min(SAMPLE, n_ok), replace=False))
    cum = np.cumsum(lens)
    s = np.searchsorted(cum, ranks, side="right")
    e = lo[s] + ranks - (cum[s] - lens[s])
    d = np.sort(window_distance(idx, e, C) if own is None else own.distance(e))
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("inf")
    j = min(d.size - 1, max(0, int(np.ceil(d.size * want / n_ok)) - 1))
    return float(d[j])


def _pair_stage(idx: SearchIndex, ex: np.ndarray, slack: float, lag: int
                ) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Allowed (token at lag, token at lag + 1) pairs: their run bounds in the n-gram
    array and excess sums, and how many windows they cover; None when too many pairs."""
    counts = idx.token_counts
    a = np.flatnonzero((ex[lag] <= slack) & (counts > 0))
    b = np.flatnonzero((ex[lag + 1] <= slack) & (counts > 0))
    b = b[np.argsort(ex[lag + 1][b], kind="stable")]
    exb = ex[lag + 1][b]
    cnt = np.searchsorted(exb, slack - ex[lag][a], side="right")
    if int(cnt.sum()) > MAX_PAIRS:
        return None
    rep = np.repeat(np.arange(a.size), cnt)
    j = ranges_to_indices(np.zeros(cnt.size, dtype=np.int64), cnt)
    pa, pb = a[rep], b[j]
    off = idx.pair_offsets
    key = pa * idx.radix + pb
    start, stop = off[key], off[key + 1]
    return np.stack([start, stop]), ex[lag][pa] + exb[j], int((stop - start).sum())


def _stage_runs(idx: SearchIndex, ex: np.ndarray, slack: float, lags: tuple[int, ...]
                ) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Runs of the n-gram array (bounds (2, r) and excess sums) of the windows whose
    ``lags`` (one lag, or two adjacent ones) have excess <= slack, and how many windows
    that is; None when the pairs are too many."""
    if len(lags) == 2:
        return _pair_stage(idx, ex, slack, lags[0])
    t = np.flatnonzero(ex[lags[0]] <= slack)
    runs = np.stack([idx.token_offsets[t], idx.token_offsets[t + 1]])
    return runs, ex[lags[0]][t], int((runs[1] - runs[0]).sum())


def _gather(idx: SearchIndex, runs: np.ndarray, part: np.ndarray, first: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """Window ends (and the stage's excess) of the runs' positions shifted by the
    stage's first lag, keeping windows whose newest candle is in the same series."""
    pos = ranges_to_indices(runs[0], runs[1])
    p = (np.asarray(idx.grams[pos]) & POS_MASK).astype(np.int64)
    s = np.repeat(part, runs[1] - runs[0])
    if not first:
        return p, s
    e = p + first
    ok = e < idx.n
    e, p, s = e[ok], p[ok], s[ok]
    ok = idx.sid[e] == idx.sid[p]
    return e[ok], s[ok]


def _plans(N: int, pairs_ok: bool) -> list[list[tuple[int, ...]]]:
    """Ways to split the lags into disjoint stages for the pigeonhole union: pairs from
    the newest lag, or a single newest lag then pairs (and singles without pairs)."""
    if not pairs_ok or N == 1:
        return [[(lag,) for lag in range(N)]]
    plans = []
    for shift in (0, 1):
        plan: list[tuple[int, ...]] = [(0,)] if shift else []
        lag = shift
        while lag < N:
            plan.append((lag, lag + 1) if lag + 1 < N else (lag,))
            lag += 2
        plans.append(plan)
    return plans


def _cascade(idx: SearchIndex, cut: Cut, C: np.ndarray, tau: float, n_ok: int
             ) -> tuple[np.ndarray, int] | None:
    """Every eligible window whose exact distance may be <= tau; None when a full scan
    is cheaper. Two kinds of necessary condition are priced by the windows they admit:
    one lag or lag pair within the whole slack (every window within tau passes it), or a
    split of the lags into G disjoint stages each within slack / G (every window within
    tau passes at least one: the pigeonhole principle). The cheapest is gathered from the
    n-gram runs, then every lag is added in order of selectivity, a window dropped as
    soon as its excess passes the slack."""
    N = C.shape[0]
    mins = C.min(axis=1)
    slack = tau - float(mins.sum()) + EPS
    if slack < 0:
        return np.zeros(0, dtype=np.int64), 0
    ex = C - mins[:, None]
    counts = idx.token_counts
    single = [int(counts[ex[lag] <= slack].sum()) for lag in range(N)]
    pairs_ok = idx.radix**2 <= 1 << 24
    options: list[tuple[int, list[tuple[int, ...]], float]] = []  # (windows, stages, bound)
    best_lag = int(np.argmin(single))
    options.append((single[best_lag], [(best_lag,)], slack))
    for lag in np.argsort(single)[:3].tolist() if pairs_ok else []:
        for first in (lag - 1, lag):
            if 0 <= first < N - 1:
                st = _stage_runs(idx, ex, slack, (first, first + 1))
                if st is not None:
                    options.append((st[2], [(first, first + 1)], slack))
    for plan in _plans(N, pairs_ok) if N > 1 else []:
        thr = slack / len(plan)
        sizes = [_stage_runs(idx, ex, thr, stage) for stage in plan]
        if all(z is not None for z in sizes):
            options.append((sum(z[2] for z in sizes if z is not None), plan, thr))
    covered, plan, thr = min(options, key=lambda o: o[0])
    if covered > FULL_SCAN_SHARE * n_ok:
        return None
    parts = []
    for stage in plan:
        st = _stage_runs(idx, ex, thr, stage)
        assert st is not None
        parts.append(_gather(idx, st[0], st[1], stage[0]))
    if len(plan) == 1:
        e, s = parts[0]
        done = set(plan[0])
    else:  # a union: excess is recomputed over every lag
        e = np.unique(np.concatenate([p[0] for p in parts]))
        s = np.zeros(e.size)
        done = set()
    ok = cut.eligible(e)
    e, s = e[ok], s[ok]
    scanned = int(e.size)
    for lag in np.argsort(single).tolist():
        if lag in done:
            continue
        s = s + ex[lag][np.asarray(idx.tokens[e - lag]).astype(np.int64)]
        keep = s <= slack
        e, s = e[keep], s[keep]
    return np.sort(e), scanned


def nearest(idx: SearchIndex, cut: Cut, C: np.ndarray, k: int, own: OwnMetric | None = None
            ) -> Nearest:
    """The k nearest eligible windows after thinning (exact; see the module docstring).
    With ``own`` the distances are on the candles' own features and ``C`` must be its
    :attr:`OwnMetric.bounds` (a lower bound per lag and token: the same search stays
    exact, it only examines more candidates)."""
    n_ok = cut.count_eligible()
    if n_ok == 0:
        return Nearest(np.zeros(0, np.int64), np.zeros(0), 0, False, float("nan"))
    tau = _guess_tau(idx, cut, C, TARGET * k, n_ok, own)
    floor = float(C.min(axis=1).sum())
    scanned = 0
    while n_ok > SMALL and np.isfinite(tau):
        got = _cascade(idx, cut, C, tau, n_ok)
        if got is None:
            break
        e, cost = got
        scanned += cost
        res, enough = _finish(idx, cut, C, e, k, tau, scanned, False, own)
        if enough:
            return res
        tau = floor + 2.0 * max(tau - floor, 1e-3)
    return full_scan(idx, cut, C, k, tau, own)


def brute_force(idx: SearchIndex, tok: Tokenizer, qfeat: np.ndarray, cut: Cut, k: int,
                chunk: int = 1 << 18, own: bool = False) -> Nearest:
    """The reference: materialize every window's weighted features (in chunks), compute
    every distance, apply the time rule, thin. What :func:`nearest` must equal. With
    ``own`` the windows' features are the candles' own (:func:`index_features`), else
    their tokens' representatives."""
    F = token_features(tok)
    cand = index_features(idx, tok)[0] if own else None
    Q = np.asarray(qfeat, dtype=np.float64) * feature_weights(tok)
    Q = np.where(np.isfinite(Q), Q, np.nan)
    N = Q.shape[0]
    e_all = cut.all_eligible()
    d_all = np.empty(e_all.size)
    lags = np.arange(N - 1, -1, -1)
    for s in range(0, e_all.size, chunk):
        e = e_all[s : s + chunk]
        pos = e[:, None] - lags[None, :]
        W = F[np.asarray(idx.tokens[pos]).astype(np.int64)] if cand is None else cand[pos]
        diff2 = np.square(W - Q[None, :, :])
        diff2 = np.where(np.isnan(Q)[None, :, :] & np.isfinite(W), 0.0, diff2)
        d_all[s : s + chunk] = np.round(np.nan_to_num(diff2.sum(axis=(1, 2)), nan=np.inf),
                                        DECIMALS)
    finite = np.isfinite(d_all)
    e_all, d_all = e_all[finite], d_all[finite]
    kept = thin_by_distance(e_all, d_all, idx.sid[e_all], cut.rule.zone, k)
    return Nearest(e_all[kept], d_all[kept], int(e_all.size), True, float("inf"))
