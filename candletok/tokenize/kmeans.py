"""``kmeans``: the token of a candle is its nearest centroid among K clusters of the
(weighted) normalized feature vectors; decoding returns the centroid.

Fitting is k-means++ then Lloyd iterations (mini-batch when the data are large), with a
fixed seed so the same data give the same vocabulary, empty clusters re-seeded from the
worst-fit points, and near-duplicate centroids removed (so every centroid is its own
nearest and re-encodes to itself, even after the trip through prices).

Assignment is exact nearest-centroid in float64. Brute force writes n x K distances,
which on two cores tops out well under 1M candles/s for K=512, so large inputs go through
a grid index: the weighted feature space is cut into cells at centroid quantiles, and each
cell keeps only the centroids that can be nearest to *some* point of the cell (Kanungo's
filter: a centroid is dropped when the cell vertex furthest towards it is still closer to
the centroid nearest the cell centre). Points outside the grid or in crowded cells fall
back to brute force. Both paths compute the same differences in the same order, so a
candle gets the same token whichever path it takes.

Point masses: a feature that is exactly 0 on at least ``POINT_MASS_MIN`` of the fit
candles (open == previous close, no wick, ...) is a *zero feature*. Candles are grouped
by which zero features are 0 (their zero pattern); each pattern present gets its own
centroids (k shared out by :func:`_share_k`, at least one each), fitted on its
candles with those features set to exactly 0, so their centroids are exactly 0 there. A
candle is assigned to the nearest centroid *of its own pattern* (all centroids when its
pattern has none), so a flat open always decodes to open == previous close.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from candletok.core.errors import TokenizerError
from candletok.tokenize.base import Tokenizer
from candletok.tokenize.features import POINT_MASS_MIN, ZERO_TOL, FeatureConfig

DEFAULT_WEIGHTS: dict[str, float] = {"gap": 2.0, "body": 2.0, "upper": 1.0, "lower": 1.0,
                                     "vol": 1.0}
MIN_SEPARATION = 1e-3  # centroids closer than this (weighted space) are merged
GRID_MIN_ROWS = 200_000  # below this, brute force is cheaper than building the index
GRID_CAP = 64  # a cell with more possible nearests than this is left to brute force
GRID_MAX_CELLS = 1 << 17  # fine cells (candidate table: GRID_CAP uint16 per cell)
LUT_BUCKETS = 1 << 16  # uniform buckets per dimension mapping a value to its fine cell
BLOCK = 1 << 15  # rows per block: big enough that numpy call overheads (GIL) stay small
WIDTHS = (2, 4, 8, 16, 32, GRID_CAP)  # candidate lists are processed padded to these widths
GRID_PATTERN_MIN = 16  # a zero pattern with fewer centroids is assigned by brute force
GRID_SHAPES: dict[int, tuple[int, ...]] = {
    1: (256,), 2: (64, 64), 3: (32, 32, 16), 4: (16, 16, 8, 8), 5: (12, 12, 6, 6, 6),
}


def _codes(zero: np.ndarray, cols: list[int]) -> np.ndarray:
    """Zero pattern of each row: bit b set where column ``cols[b]`` of ``zero`` is True."""
    code = np.zeros(zero.shape[0], dtype=np.int64)
    for b, j in enumerate(cols):
        code |= zero[:, j].astype(np.int64) << b
    return code


def _share_k(k: int, n_p: np.ndarray, d: int) -> np.ndarray:
    """Centroids per zero pattern: one each (the most common patterns first when there
    are more patterns than k), the rest in proportion to ``n_p ** (d / (d + 2))``
    (largest remainder), never more than a pattern has candles. Why that power: the
    density of an optimal quantizer in d dimensions goes as the data density to the
    d/(d+2); plain proportional shares starved the rarer patterns (on the bundled sample
    with a 1% point-mass threshold the close p95 error was 43 bps, 38 with the power)."""
    n_p = np.asarray(n_p, dtype=np.int64)
    m = n_p.size
    out = np.zeros(m, dtype=np.int64)
    order = np.argsort(-n_p, kind="stable")
    if m >= k:
        out[order[:k]] = 1
        return out
    w = (n_p / n_p.sum()) ** (d / (d + 2.0))
    extra = (k - m) * w / w.sum()
    out[:] = 1 + np.floor(extra).astype(np.int64)
    left = k - int(out.sum())
    rem = extra - np.floor(extra)
    out[np.argsort(-rem, kind="stable")[:left]] += 1
    return np.minimum(out, n_p)


def _keep(C: np.ndarray, lo: np.ndarray, hi: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """Kanungo's filter for boxes [lo, hi] (m, d) and candidate ids cand (m, w) (padded
    with repeats): True where the candidate can be nearest to some point of the box (the
    candidate nearest the box centre always is). Conservative (tolerance on the test)."""
    m, d = lo.shape
    Cc = [C[:, j][cand] for j in range(d)]  # d arrays (m, w)
    mid = (lo + hi) / 2.0
    dc = np.square(Cc[0] - mid[:, 0:1])
    for j in range(1, d):
        dc += np.square(Cc[j] - mid[:, j : j + 1])
    r = np.arange(m)
    best = dc.argmin(axis=1)
    d_star = np.zeros_like(dc)
    d_c = np.zeros_like(dc)
    for j in range(d):
        cs = Cc[j][r, best][:, None]
        v = np.where(Cc[j] > cs, hi[:, j : j + 1], lo[:, j : j + 1])
        d_star += np.square(v - cs)
        d_c += np.square(v - Cc[j])
    keep = d_c <= d_star * (1 + 1e-9) + 1e-12
    keep[r, best] = True
    return keep


def _sqdist(Z: np.ndarray, C: np.ndarray) -> np.ndarray:
    """(m, d) x (K, d) -> (m, K) squared distances, summed feature by feature (no
    ||z||^2 - 2 z.c expansion: that cancels badly for points right on a centroid)."""
    D = np.square(Z[:, 0:1] - C[None, :, 0])
    for j in range(1, Z.shape[1]):
        D += np.square(Z[:, j : j + 1] - C[None, :, j])
    return D


def _brute(Z: np.ndarray, C: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Exact nearest centroid, in-place on cache-sized buffers (same arithmetic as
    :func:`_sqdist`)."""
    cols = [np.ascontiguousarray(C[:, j])[None, :] for j in range(C.shape[1])]
    out = np.empty(Z.shape[0], dtype=np.int64)
    D = np.empty((min(chunk, Z.shape[0]), C.shape[0]))
    T = np.empty_like(D)
    for s in range(0, Z.shape[0], chunk):
        z = Z[s : s + chunk]
        d, t = D[: z.shape[0]], T[: z.shape[0]]
        np.subtract(z[:, 0:1], cols[0], out=d)
        np.square(d, out=d)
        for j in range(1, Z.shape[1]):
            np.subtract(z[:, j : j + 1], cols[j], out=t)
            np.square(t, out=t)
            d += t
        out[s : s + chunk] = d.argmin(axis=1)
    return out


def _grid_bounds(C: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    """Coarse cell bounds (centroid quantiles plus one outer cell each side as wide as the
    centroid range), fine bounds (each coarse interval cut into equal parts) and the
    refinement factor per dimension (doubled round-robin while the grid stays small)."""
    d = C.shape[1]
    coarse = []
    for j, n in enumerate(GRID_SHAPES.get(d, (4,) * d)):
        q = np.unique(np.quantile(C[:, j], np.linspace(0, 1, n + 1)))
        span = float(q[-1] - q[0])
        R = span if span > 0 else max(1.0, abs(float(q[0])))
        coarse.append(np.concatenate([[q[0] - R], q, [q[-1] + R]]))
    cshape = tuple(b.size - 1 for b in coarse)
    r = [1] * d
    j = 0
    while math.prod(cs * rr for cs, rr in zip(cshape, r, strict=True)) * 2 <= GRID_MAX_CELLS:
        r[j] *= 2
        j = (j + 1) % d
    fine = []
    for b, rr in zip(coarse, r, strict=True):
        parts = [b[i] + (b[i + 1] - b[i]) * np.arange(rr) / rr for i in range(b.size - 1)]
        fine.append(np.concatenate([*parts, b[-1:]]))
    return coarse, fine, r


def _boxes(bounds: list[np.ndarray], shape: tuple[int, ...], ids: np.ndarray,
           ext: np.ndarray, pad: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cell indices and padded [lo, hi] boxes of the cells ``ids`` of a grid."""
    d = len(bounds)
    q = np.stack(np.unravel_index(ids, shape), axis=1)
    lo = np.stack([bounds[j][q[:, j]] for j in range(d)], axis=1) - pad
    hi = np.stack([bounds[j][q[:, j] + 1] for j in range(d)], axis=1) + ext + pad
    return q, lo, hi


def _coarse_candidates(C: np.ndarray, coarse: list[np.ndarray], cshape: tuple[int, ...],
                       width: np.ndarray, pad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coarse level: per cell, every centroid that can be nearest to a point of the cell
    (count, and the ids ascending in a table as wide as the largest count)."""
    K, d = C.shape
    n_coarse = math.prod(cshape)
    ccount = np.empty(n_coarse, dtype=np.int64)
    ctab = np.empty((n_coarse, K), dtype=np.uint16)
    allc = np.arange(K)
    step = max(1, 1_000_000 // (K * d))
    for s in range(0, n_coarse, step):
        ids = np.arange(s, min(s + step, n_coarse))
        _, lo, hi = _boxes(coarse, cshape, ids, width, pad)
        keep = _keep(C, lo, hi, np.broadcast_to(allc, (ids.size, K)))
        cnt = keep.sum(axis=1)
        ccount[ids] = cnt
        srt = np.argsort(~keep, axis=1, kind="stable")  # kept ids first, ascending
        ctab[ids] = np.where(allc[None, :] < cnt[:, None], srt, srt[:, :1])
    return ccount, np.ascontiguousarray(ctab[:, : int(ccount.max())])


class _Grid:
    """A fine grid over the weighted feature space with, per cell, the centroids that can
    be nearest to some point of the cell; derived from the centroids (never saved).

    Cells: per dimension, centroid quantiles (plus one outer cell each side as wide as
    the centroid range), each interval cut into equal parts. A value finds its cell
    through a lookup table on LUT_BUCKETS uniform buckets: a bucket maps to the cell of
    its lower end, and every cell's box is widened by one bucket upwards (and a hair
    each way against rounding), so the box always contains the values sent to it and no
    bound needs a search. Candidates are filtered coarse cells first (all K centroids),
    then fine cells from their parent's list.

    Assignment, per L2-sized block: cells with one candidate give it outright; others
    compare candidates in float32 and keep the winner when the runner-up is further by
    more than the float32 error bound; the rest (near ties) are redone in float64 over
    the same candidates, and points outside the grid or in crowded cells by brute force
    over all centroids: so every row gets the float64 argmin, lowest id on ties.
    """

    def __init__(self, C: np.ndarray) -> None:
        C = np.ascontiguousarray(C, dtype=np.float64)
        K, d = C.shape
        self.K, self.d = K, d
        coarse, fine, r = _grid_bounds(C)
        cshape = tuple(b.size - 1 for b in coarse)
        self.shape = tuple(f.size - 1 for f in fine)
        width = self._build_luts(fine)
        big = max(float(np.abs(f).max()) for f in fine)
        pad = 1e-6 * width + 1e-12 * (1.0 + big)
        ccount, ctab = _coarse_candidates(C, coarse, cshape, width, pad)
        cand, count = self._fine_candidates(C, ccount, ctab, cshape, r, fine, width, pad)
        ok = count <= GRID_CAP
        cand[~ok] = K
        self.cand = cand
        self.first = cand[:, 0].astype(np.int64)
        widths = np.array(WIDTHS)
        klass = np.searchsorted(widths, count)  # 0: width 2 ... len: too many
        klass[count == 1] = -1
        self.klass = (klass + 1).astype(np.uint8)  # 0 direct, 1.. widths, last hard
        self.n_klass = len(WIDTHS) + 2
        ext = np.full(1, np.inf)
        self.cols = [np.concatenate([C[:, j], ext]) for j in range(d)]
        self.cols32 = [c.astype(np.float32) for c in self.cols]
        self.C = C
        self.tol = 2.0 * (d + 8) * 2.0**-24
        self._local = threading.local()

    def _build_luts(self, fine: list[np.ndarray]) -> np.ndarray:
        """Lookup tables: bucket k+1 covers [B0 + k w, B0 + (k+1) w); 0 and L+1 are
        outside. Returns the bucket width per dimension."""
        L = LUT_BUCKETS
        self.b0 = np.array([f[0] for f in fine])
        width = np.array([(f[-1] - f[0]) / L for f in fine])
        self.inv_w = 1.0 / width
        strides = [math.prod(self.shape[j + 1 :]) for j in range(self.d)]
        outside = -(1 << 28)
        self.luts = []
        for j, f in enumerate(fine):
            lower = f[0] + np.arange(L) * width[j]
            q = np.clip(np.searchsorted(f, lower, side="right") - 1, 0, self.shape[j] - 1)
            lut = np.full(L + 2, outside, dtype=np.int32)
            lut[1 : L + 1] = q * strides[j]
            self.luts.append(lut)
        return width

    def _fine_candidates(self, C: np.ndarray, ccount: np.ndarray, ctab: np.ndarray,
                         cshape: tuple[int, ...], r: list[int], fine: list[np.ndarray],
                         width: np.ndarray, pad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fine level: candidates filtered from the parent's list, cells grouped by the
        parent's count so each block is one rectangular array operation."""
        K, d = self.K, self.d
        n_cells = math.prod(self.shape)
        qf = np.unravel_index(np.arange(n_cells), self.shape)
        parent = np.ravel_multi_index(tuple(qf[j] // r[j] for j in range(d)), cshape)
        del qf
        order = np.argsort(ccount[parent], kind="stable")
        cand = np.full((n_cells + 1, GRID_CAP), K, dtype=np.uint16)  # pad: K, a far dummy
        count = np.full(n_cells + 1, GRID_CAP + 1, dtype=np.int64)  # last row: outside
        pc = ccount[parent[order]]
        budget = 1_000_000
        s = 0
        while s < n_cells:
            e = min(n_cells, s + max(1, budget // (int(pc[s]) * d)))
            e = min(e, s + max(1, budget // (int(pc[e - 1]) * d)))
            ids, W = order[s:e], int(pc[e - 1])
            par = parent[ids]
            plist = ctab[par, :W].astype(np.int64)  # padded with repeats of the first
            _, lo, hi = _boxes(fine, self.shape, ids, width, pad)
            keep = _keep(C, lo, hi, plist)
            keep &= np.arange(W)[None, :] < ccount[par][:, None]  # drop the repeats
            cnt = keep.sum(axis=1)
            count[ids] = cnt
            srt = np.argsort(~keep, axis=1, kind="stable")[:, :GRID_CAP]  # ascending ids
            vals = np.take_along_axis(plist, srt, axis=1)
            vals = np.where(np.arange(vals.shape[1])[None, :] < cnt[:, None], vals, K)
            cand[ids, : vals.shape[1]] = vals
            s = e
        return cand, count

    # ---- assignment ---------------------------------------------------------------------
    def _bufs(self) -> Any:
        b = self._local
        if getattr(b, "z", None) is None:
            b.z = np.empty((self.d, BLOCK))
            b.z32 = np.empty((self.d, BLOCK), dtype=np.float32)
            b.t = np.empty(BLOCK)
            b.ix = np.empty(BLOCK, dtype=np.int32)
            b.cell = np.empty(BLOCK, dtype=np.int32)
            b.tmp = np.empty(BLOCK, dtype=np.int32)
        return b

    def assign_into(self, X: np.ndarray, w: np.ndarray | None, out: np.ndarray,
                    offset: int = 0) -> None:
        """out[i] = offset + nearest centroid of X[i] * w (X unweighted when w given)."""
        for s in range(0, X.shape[0], BLOCK):
            self._block(X[s : s + BLOCK], w, out[s : s + BLOCK], offset)

    def assign(self, Z: np.ndarray, C: np.ndarray | None = None) -> np.ndarray:
        out = np.empty(Z.shape[0], dtype=np.int64)
        self.assign_into(Z, None, out)
        return out

    def _block(self, X: np.ndarray, w: np.ndarray | None, out: np.ndarray,
               offset: int) -> None:
        m, d = X.shape
        b = self._bufs()
        Z, Z32, t, ix, cell, tmp = (b.z[:, :m], b.z32[:, :m], b.t[:m], b.ix[:m],
                                    b.cell[:m], b.tmp[:m])
        top = float(LUT_BUCKETS)
        for j in range(d):
            zj = Z[j]
            if w is None:
                zj[:] = X[:, j]
            else:
                np.multiply(X[:, j], w[j], out=zj)
            np.subtract(zj, self.b0[j], out=t)
            np.multiply(t, self.inv_w[j], out=t)
            np.clip(t, -1.0, top, out=t)
            t += 1.0
            np.copyto(ix, t, casting="unsafe")  # t >= 0: truncation is floor
            np.take(self.luts[j], ix, out=cell if j == 0 else tmp)
            if j:
                cell += tmp
        np.maximum(cell, -1, out=cell)  # outside: -1, the last (hard) row of the tables
        Z32[...] = Z
        kl = self.klass[cell]
        order = np.argsort(kl, kind="stable")
        edges = np.searchsorted(kl[order], np.arange(self.n_klass + 1))
        for k in range(self.n_klass):
            a, e = int(edges[k]), int(edges[k + 1])
            if a == e:
                continue
            idx = order[a:e]
            if k == 0:
                out[idx] = self.first[cell[idx]] + offset
            elif k == self.n_klass - 1:
                out[idx] = _brute(np.ascontiguousarray(Z[:, idx].T), self.C) + offset
            else:
                out[idx] = self._compare(Z, Z32, idx, cell[idx], WIDTHS[k - 1]) + offset

    def _compare(self, Z: np.ndarray, Z32: np.ndarray, idx: np.ndarray, cells: np.ndarray,
                 W: int) -> np.ndarray:
        cand = self.cand[cells, :W]
        D = self.cols32[0][cand]
        D -= Z32[0, idx][:, None]
        np.square(D, out=D)
        G = np.empty_like(D)
        for j in range(1, self.d):
            np.take(self.cols32[j], cand, out=G)
            G -= Z32[j, idx][:, None]
            np.square(G, out=G)
            D += G
        r = np.arange(idx.size)
        best = D.argmin(axis=1)
        d1 = D[r, best].astype(np.float64)
        D[r, best] = np.inf
        d2 = D.min(axis=1).astype(np.float64)
        # |float32 distance - float64 distance| <= tol * (6 |z|^2 + 4 distance): the
        # winner is certain when the runner-up stays further once both move by that much
        zz = np.square(Z[0, idx])
        for j in range(1, self.d):
            zz += np.square(Z[j, idx])
        e = self.tol
        sure = d2 * (1.0 - 4.0 * e) > d1 * (1.0 + 4.0 * e) + 12.0 * e * zz
        lab = cand[r, best].astype(np.int64)
        if not sure.all():
            u = np.flatnonzero(~sure)
            cu, iu = cand[u], idx[u]
            D64 = np.square(Z[0, iu][:, None] - self.cols[0][cu])
            for j in range(1, self.d):
                D64 += np.square(Z[j, iu][:, None] - self.cols[j][cu])
            lab[u] = cu[np.arange(u.size), D64.argmin(axis=1)]
        return lab


class KMeansTokenizer(Tokenizer):
    """Nearest-centroid tokens. Defaults measured on the sample: K=512 with gap and body
    weighted 2 (the close error is the gap error plus the body error)."""

    scheme = "kmeans"

    def __init__(
        self,
        k: int = 512,
        weights: dict[str, float] | tuple[float, ...] | None = None,
        seed: int = 0,
        max_iter: int = 100,
        tol: float = 1e-6,
        batch_size: int = 8192,
        minibatch_above: int = 200_000,
        init_sample: int = 50_000,
        features: FeatureConfig | None = None,
    ) -> None:
        super().__init__(features)
        if not 1 <= int(k) <= 65536 - self.N_SPECIAL:
            raise TokenizerError(f"k must be between 1 and {65536 - self.N_SPECIAL}.")
        self.k = int(k)
        names = self.feature_names
        if weights is None:
            w = [DEFAULT_WEIGHTS[n] for n in names]
        elif isinstance(weights, dict):
            w = [float(weights.get(n, DEFAULT_WEIGHTS[n])) for n in names]
        else:
            w = [float(x) for x in weights]
        if len(w) != len(names) or not all(x > 0 and math.isfinite(x) for x in w):
            raise TokenizerError(
                f"weights must be {len(names)} positive numbers, one per feature "
                f"({', '.join(names)})."
            )
        self.weights = np.asarray(w, dtype=np.float64)
        self.seed, self.max_iter, self.tol = int(seed), int(max_iter), float(tol)
        self.batch_size, self.minibatch_above = int(batch_size), int(minibatch_above)
        self.init_sample = int(init_sample)
        self.centroids: np.ndarray | None = None  # (K', d) in feature space
        self._cw: np.ndarray | None = None  # weighted, derived
        self._grid: _Grid | None = None
        self.zero_features: tuple[str, ...] = ()  # features with an exact zero (point mass)
        self._zero_cols: list[int] = []
        self._pattern_ids: dict[int, np.ndarray] = {}  # zero pattern -> its centroid ids
        self._grids: dict[int, _Grid] = {}

    # ---- fitting ------------------------------------------------------------------------
    def _kmeanspp(self, Z: np.ndarray, rng: np.random.Generator,
                  k: int | None = None) -> np.ndarray:
        k = self.k if k is None else k
        if Z.shape[0] > self.init_sample:
            Z = Z[rng.choice(Z.shape[0], self.init_sample, replace=False)]
        first = int(rng.integers(Z.shape[0]))
        C = [Z[first]]
        d2 = np.square(Z - Z[first]).sum(axis=1)
        for _ in range(k - 1):
            total = d2.sum()
            if not total > 0:  # fewer distinct points than k
                break
            i = int(rng.choice(Z.shape[0], p=d2 / total))
            C.append(Z[i])
            np.minimum(d2, np.square(Z - Z[i]).sum(axis=1), out=d2)
        return np.array(C)

    @staticmethod
    def _reseed_empty(C: np.ndarray, Z: np.ndarray, lab: np.ndarray, cnt: np.ndarray) -> None:
        """Move empty clusters onto the points worst served by their centroid."""
        empty = np.flatnonzero(cnt == 0)
        if empty.size == 0:
            return
        err = np.square(Z - C[lab]).sum(axis=1)
        worst = np.argsort(-err, kind="stable")[: empty.size]
        C[empty[: worst.size]] = Z[worst]

    def _lloyd(self, Z: np.ndarray, C: np.ndarray) -> np.ndarray:
        K, d = C.shape
        for _ in range(self.max_iter):
            lab = _brute(Z, C)
            cnt = np.bincount(lab, minlength=K)
            sums = np.stack([np.bincount(lab, Z[:, j], minlength=K) for j in range(d)], 1)
            new = np.where(cnt[:, None] > 0, sums / np.maximum(cnt, 1)[:, None], C)
            self._reseed_empty(new, Z, lab, cnt)
            shift = float(np.square(new - C).sum(axis=1).max())
            C = new
            if shift <= self.tol**2:
                break
        return C

    def _minibatch(self, Z: np.ndarray, C: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        K, d = C.shape
        seen = np.zeros(K)
        steps = max(50, min(self.max_iter * 10, 20 * Z.shape[0] // self.batch_size))
        for _ in range(steps):
            B = Z[rng.integers(0, Z.shape[0], self.batch_size)]
            lab = _brute(B, C)
            cnt = np.bincount(lab, minlength=K)
            sums = np.stack([np.bincount(lab, B[:, j], minlength=K) for j in range(d)], 1)
            seen += cnt
            hit = cnt > 0
            eta = cnt[hit] / seen[hit]  # per-centre learning rate 1/(points seen)
            C[hit] += eta[:, None] * (sums[hit] / cnt[hit, None] - C[hit])
        lab = _brute(Z, C)
        cnt = np.bincount(lab, minlength=K)
        self._reseed_empty(C, Z, lab, cnt)
        return C

    def _fit_group(self, X: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        """k-means of one group of candles -> (<= k, d) centroids in feature space."""
        Z = X * self.weights
        C = self._kmeanspp(Z, rng, k)
        C = self._minibatch(Z, C, rng) if Z.shape[0] > self.minibatch_above else self._lloyd(Z, C)
        F = C / self.weights
        for j, name in enumerate(self.feature_names):
            if name in ("upper", "lower"):  # means of wicks are >= 0; make it exact
                F[:, j] = np.maximum(F[:, j], 0.0)
        return F

    def _fit_features(self, X: np.ndarray) -> None:
        rng = np.random.default_rng(self.seed)
        zero = np.abs(X) < ZERO_TOL
        mass = zero.mean(axis=0)
        self.zero_features = tuple(n for j, n in enumerate(self.feature_names)
                                   if mass[j] >= POINT_MASS_MIN)
        cols = [self.feature_names.index(n) for n in self.zero_features]
        if not cols:  # no point mass: one group, as before zero features existed
            self._set_centroids(self._dedupe(self._fit_group(X, self.k, rng)))
            return
        codes = _codes(zero, cols)
        present, n_p = np.unique(codes, return_counts=True)
        parts = []
        shares = _share_k(self.k, n_p, X.shape[1]).tolist()
        for code, k_p in zip(present.tolist(), shares, strict=True):
            if k_p == 0:
                continue
            Xp = X[codes == code].copy()
            for b, j in enumerate(cols):
                if code >> b & 1:
                    Xp[:, j] = 0.0  # exactly: the group's centroids are then exactly 0 here
            parts.append(self._fit_group(Xp, int(k_p), rng))
        self._set_centroids(self._dedupe(np.concatenate(parts)))

    def _dedupe(self, F: np.ndarray) -> np.ndarray:
        """Snap zero features below ``ZERO_TOL`` to exactly 0, drop centroids within
        MIN_SEPARATION of an earlier one of the same zero pattern; sort the rest
        lexicographically (gap, body, ...) so ids read in a stable order."""
        cols = [self.feature_names.index(n) for n in self.zero_features]
        F = F.copy()
        for j in cols:
            F[np.abs(F[:, j]) < ZERO_TOL, j] = 0.0
        Cw = F * self.weights
        close = _sqdist(Cw, Cw) < MIN_SEPARATION**2
        if cols:
            code = _codes(F[:, cols] == 0.0, list(range(len(cols))))
            close &= code[:, None] == code[None, :]
        close = np.triu(close, k=1)
        F = F[~close.any(axis=0)]  # keep a centroid unless an earlier one is that close
        order = np.lexsort(F.T[::-1])
        return F[order]

    def _set_centroids(self, F: np.ndarray) -> None:
        self.centroids = np.ascontiguousarray(F, dtype=np.float64)
        self._cw = self.centroids * self.weights
        self._grid = None
        self._grids = {}
        self._zero_cols = [self.feature_names.index(n) for n in self.zero_features]
        self._pattern_ids = {}
        if self._zero_cols:
            code = _codes(self.centroids[:, self._zero_cols] == 0.0,
                          list(range(len(self._zero_cols))))
            for c in np.unique(code).tolist():
                self._pattern_ids[int(c)] = np.flatnonzero(code == c)

    @property
    def fitted(self) -> bool:
        return self.centroids is not None

    @property
    def n_candle_tokens(self) -> int:
        self._require_fit()
        assert self.centroids is not None
        return int(self.centroids.shape[0])

    # ---- feature space ------------------------------------------------------------------
    def _assign(self, X: np.ndarray) -> np.ndarray:
        assert self._cw is not None
        n = X.shape[0]
        if self._zero_cols:
            out = np.empty(n, dtype=np.uint16)
            self._prepare_assign(n)
            chunk = 1 << 16
            if n < GRID_MIN_ROWS:
                self._assign_patterns(X, out)
                return out
            with ThreadPoolExecutor(min(2, os.cpu_count() or 1)) as ex:
                list(ex.map(lambda s: self._assign_patterns(X[s : s + chunk],
                                                            out[s : s + chunk]),
                            range(0, n, chunk)))
            return out
        if n < GRID_MIN_ROWS:
            return (_brute(X * self.weights, self._cw) + self.N_SPECIAL).astype(np.uint16)
        self._prepare_assign(n)
        grid, w = self._grid, self.weights
        assert grid is not None
        out = np.empty(n, dtype=np.uint16)
        chunk = 1 << 16

        def job(s: int) -> None:
            grid.assign_into(X[s : s + chunk], w, out[s : s + chunk], self.N_SPECIAL)

        with ThreadPoolExecutor(min(2, os.cpu_count() or 1)) as ex:
            list(ex.map(job, range(0, n, chunk)))
        return out

    def _prepare_assign(self, n_rows: int) -> None:
        if n_rows < GRID_MIN_ROWS or self._cw is None:
            return
        if self._zero_cols:
            for code, ids in self._pattern_ids.items():
                if code not in self._grids and ids.size >= GRID_PATTERN_MIN:
                    self._grids[code] = _Grid(self._cw[ids])
            return
        if self._grid is None:
            self._grid = _Grid(self._cw)

    def _assign_patterns(self, X: np.ndarray, out: np.ndarray) -> None:
        """Nearest centroid among those of each row's zero pattern (every centroid when
        the pattern has none): a row that is exactly 0 in a zero feature gets a token
        whose representative is exactly 0 there. One pass per pattern, not per row."""
        assert self._cw is not None
        codes = _codes(np.abs(X[:, self._zero_cols]) < ZERO_TOL,
                       list(range(len(self._zero_cols))))
        for code in np.unique(codes).tolist():
            rows = np.flatnonzero(codes == code)
            ids = self._pattern_ids.get(int(code))
            sub = X[rows]
            if ids is None:
                lab = _brute(sub * self.weights, self._cw)
            elif int(code) in self._grids:
                lab = np.empty(rows.size, dtype=np.int64)
                self._grids[int(code)].assign_into(sub, self.weights, lab)
                lab = ids[lab]
            else:
                lab = ids[_brute(sub * self.weights, self._cw[ids])]
            out[rows] = lab + self.N_SPECIAL

    def _assign_into(self, X: np.ndarray, out: np.ndarray) -> None:
        """One chunk on the calling thread: the grid index when it was built (large
        inputs), brute force otherwise; both give the same exact nearest centroid."""
        assert self._cw is not None
        if self._zero_cols:
            self._assign_patterns(X, out)
        elif self._grid is not None:
            self._grid.assign_into(X, self.weights, out, self.N_SPECIAL)
        else:
            np.add(_brute(X * self.weights, self._cw), self.N_SPECIAL, out=out,
                   casting="unsafe")

    def _representatives(self) -> np.ndarray:
        assert self.centroids is not None
        return self.centroids

    def exact_zero_features(self) -> tuple[str, ...]:
        return self.zero_features

    def notes(self) -> list[str]:
        """The base notes, then fewer centroids than asked for (fewer distinct candles
        than k, or near-duplicate centroids merged), which is otherwise silent."""
        out = super().notes()
        if self.n_candle_tokens < self.k:
            out.append(f"{self.k} clusters requested, {self.n_candle_tokens} distinct "
                       "(fewer distinct candles, or centroids closer than "
                       f"{MIN_SEPARATION:g} merged).")
        return out

    # ---- file ---------------------------------------------------------------------------
    def _params(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "weights": dict(zip(self.feature_names, self.weights.tolist(), strict=True)),
            "seed": self.seed,
            "max_iter": self.max_iter,
            "tol": self.tol,
            "batch_size": self.batch_size,
            "minibatch_above": self.minibatch_above,
            "init_sample": self.init_sample,
        }

    def _state(self) -> dict[str, Any]:
        assert self.centroids is not None
        state: dict[str, Any] = {"centroids": self.centroids.tolist()}
        if self.zero_features:
            state["zero_features"] = list(self.zero_features)
        return state

    @classmethod
    def _from_content(cls, content: dict[str, Any]) -> KMeansTokenizer:
        tok = cls(**content["params"], features=FeatureConfig.from_dict(content["features"]))
        F = np.asarray(content["centroids"], dtype=np.float64)
        if F.ndim != 2 or F.shape[1] != len(tok.feature_names) or F.shape[0] < 1:
            raise ValueError("centroids do not match the features")
        zf = tuple(str(n) for n in content.get("zero_features", []))
        if any(n not in tok.feature_names for n in zf):
            raise ValueError("zero_features name a feature the vocab does not have")
        tok.zero_features = zf
        tok._set_centroids(F)
        tok._load_fit_facts(content)
        tok._finish()
        return tok
