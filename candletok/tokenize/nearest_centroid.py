"""Exact nearest-centroid assignment for the ``kmeans`` vocabulary: brute force, and a
grid index for large inputs.

Brute force writes n x K distances, which on two cores tops out well under 1M candles/s
for K=512, so large inputs go through a grid index: the weighted feature space is cut into
cells at centroid quantiles, and each cell keeps only the centroids that can be nearest to
*some* point of the cell (Kanungo's filter: a centroid is dropped when the cell vertex
furthest towards it is still closer to the centroid nearest the cell centre). Points
outside the grid or in crowded cells fall back to brute force. Both paths compute the same
differences in the same order, so a candle gets the same token whichever path it takes.
Kept apart from :mod:`candletok.tokenize.kmeans` (the fit and the vocabulary): this is
the assignment's speed, derived from the centroids and never saved.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np

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


def sqdist(Z: np.ndarray, C: np.ndarray) -> np.ndarray:
    """(m, d) x (K, d) -> (m, K) squared distances, summed feature by feature (no
    ||z||^2 - 2 z.c expansion: that cancels badly for points right on a centroid)."""
    D = np.square(Z[:, 0:1] - C[None, :, 0])
    for j in range(1, Z.shape[1]):
        D += np.square(Z[:, j : j + 1] - C[None, :, j])
    return D


def brute_nearest(Z: np.ndarray, C: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Exact nearest centroid, in-place on cache-sized buffers (same arithmetic as
    :func:`sqdist`)."""
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


class CentroidGrid:
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
                out[idx] = brute_nearest(np.ascontiguousarray(Z[:, idx].T), self.C) + offset
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
