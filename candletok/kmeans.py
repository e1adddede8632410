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
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from candletok.errors import TokenizerError
from candletok.features import FeatureConfig
from candletok.tokenizer import Tokenizer

DEFAULT_WEIGHTS: dict[str, float] = {"gap": 2.0, "body": 2.0, "upper": 1.0, "lower": 1.0,
                                     "vol": 1.0}
MIN_SEPARATION = 1e-3  # centroids closer than this (weighted space) are merged
GRID_MIN_ROWS = 200_000  # below this, brute force is cheaper than building the index
GRID_CAP = 32  # cells with more candidates than this are left to brute force
GRID_SHAPES: dict[int, tuple[int, ...]] = {
    1: (256,), 2: (64, 64), 3: (32, 32, 16), 4: (16, 16, 8, 8), 5: (12, 12, 6, 6, 6),
}


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


class _Grid:
    """Cells at centroid quantiles, each with its (padded) list of possible nearests."""

    def __init__(self, C: np.ndarray) -> None:
        K, d = C.shape
        self.cols = [np.ascontiguousarray(C[:, j]) for j in range(d)]
        shape_req = GRID_SHAPES.get(d, (4,) * d)
        self.bounds = [np.unique(np.quantile(C[:, j], np.linspace(0, 1, n + 1)))
                       for j, n in enumerate(shape_req)]
        self.shape = tuple(max(b.size - 1, 1) for b in self.bounds)
        self.bounds = [b if b.size > 1 else np.array([b[0], b[0]]) for b in self.bounds]
        n_cells = math.prod(self.shape)
        q = np.stack(np.unravel_index(np.arange(n_cells), self.shape), axis=1)
        lo = np.stack([self.bounds[j][q[:, j]] for j in range(d)], axis=1)
        hi = np.stack([self.bounds[j][q[:, j] + 1] for j in range(d)], axis=1)
        pad = 1e-9 * (1.0 + np.abs(C).max())
        lo, hi = lo - pad, hi + pad  # points on a boundary still fall inside their cell
        self.cand = np.zeros((n_cells, GRID_CAP), dtype=np.int32)
        self.ok = np.zeros(n_cells, dtype=bool)
        step = max(1, 2_000_000 // (K * d))
        for s in range(0, n_cells, step):
            lo_c, hi_c = lo[s : s + step], hi[s : s + step]
            best = _sqdist((lo_c + hi_c) / 2.0, C).argmin(axis=1)
            cs = C[best]
            towards = (C[None, :, :] - cs[:, None, :]) > 0
            v = np.where(towards, hi_c[:, None, :], lo_c[:, None, :])
            d_star = np.square(v - cs[:, None, :]).sum(-1)
            d_c = np.square(v - C[None, :, :]).sum(-1)
            keep = d_c <= d_star * (1 + 1e-9) + 1e-12
            keep[np.arange(keep.shape[0]), best] = True
            cnt = keep.sum(axis=1)
            order = np.argsort(~keep, axis=1, kind="stable")[:, :GRID_CAP]  # ascending ids
            col = np.arange(GRID_CAP)[None, :]
            order = np.where(col < cnt[:, None], order, order[:, :1])  # pad with first
            self.cand[s : s + step] = order
            self.ok[s : s + step] = cnt <= GRID_CAP
        self.strides = np.array([math.prod(self.shape[j + 1 :]) for j in range(d)])

    def cells(self, Z: np.ndarray) -> np.ndarray:
        """Cell id per row, -1 outside the grid or in a crowded cell."""
        m, d = Z.shape
        cell = np.zeros(m, dtype=np.int64)
        inside = np.ones(m, dtype=bool)
        for j in range(d):
            b = self.bounds[j]
            z = Z[:, j]
            inside &= (z >= b[0]) & (z <= b[-1])
            q = np.searchsorted(b, z, side="right") - 1
            np.clip(q, 0, self.shape[j] - 1, out=q)
            cell += q * self.strides[j]
        cell[~inside] = -1
        ok = inside.copy()
        ok[inside] = self.ok[cell[inside]]
        cell[~ok] = -1
        return cell

    def assign(self, Z: np.ndarray, C: np.ndarray) -> np.ndarray:
        cell = self.cells(Z)
        out = np.empty(Z.shape[0], dtype=np.int64)
        hard = cell < 0
        easy = ~hard
        if hard.any():
            out[hard] = _brute(Z[hard], C)
        if easy.any():
            ze = Z[easy]
            cand = self.cand[cell[easy]]  # (m, cap), ascending ids, padded
            D = np.square(ze[:, 0:1] - self.cols[0][cand])
            for j in range(1, Z.shape[1]):
                D += np.square(ze[:, j : j + 1] - self.cols[j][cand])
            out[easy] = np.take_along_axis(cand, D.argmin(axis=1)[:, None], axis=1)[:, 0]
        return out


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

    # ---- fitting ------------------------------------------------------------------------
    def _kmeanspp(self, Z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if Z.shape[0] > self.init_sample:
            Z = Z[rng.choice(Z.shape[0], self.init_sample, replace=False)]
        first = int(rng.integers(Z.shape[0]))
        C = [Z[first]]
        d2 = np.square(Z - Z[first]).sum(axis=1)
        for _ in range(self.k - 1):
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

    def _fit_features(self, X: np.ndarray) -> None:
        rng = np.random.default_rng(self.seed)
        Z = X * self.weights
        C = self._kmeanspp(Z, rng)
        C = self._minibatch(Z, C, rng) if Z.shape[0] > self.minibatch_above else self._lloyd(Z, C)
        F = C / self.weights
        for j, name in enumerate(self.feature_names):
            if name in ("upper", "lower"):  # means of wicks are >= 0; make it exact
                F[:, j] = np.maximum(F[:, j], 0.0)
        self._set_centroids(self._dedupe(F))

    def _dedupe(self, F: np.ndarray) -> np.ndarray:
        """Drop centroids within MIN_SEPARATION of an earlier one; sort the rest
        lexicographically (gap, body, ...) so ids read in a stable order."""
        Cw = F * self.weights
        close = np.triu(_sqdist(Cw, Cw) < MIN_SEPARATION**2, k=1)
        F = F[~close.any(axis=0)]  # keep a centroid unless an earlier one is that close
        order = np.lexsort(F.T[::-1])
        return F[order]

    def _set_centroids(self, F: np.ndarray) -> None:
        self.centroids = np.ascontiguousarray(F, dtype=np.float64)
        self._cw = self.centroids * self.weights
        self._grid = None

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
        Z = X * self.weights
        n = Z.shape[0]
        if n < GRID_MIN_ROWS:
            lab = _brute(Z, self._cw)
        else:
            if self._grid is None:
                self._grid = _Grid(self._cw)
            grid, C = self._grid, self._cw
            lab = np.empty(n, dtype=np.int64)
            chunk = 1 << 15

            def job(s: int) -> None:
                lab[s : s + chunk] = grid.assign(Z[s : s + chunk], C)

            with ThreadPoolExecutor(min(2, os.cpu_count() or 1)) as ex:
                list(ex.map(job, range(0, n, chunk)))
        return (lab + self.N_SPECIAL).astype(np.uint16)

    def _prepare_assign(self, n_rows: int) -> None:
        if n_rows >= GRID_MIN_ROWS and self._grid is None and self._cw is not None:
            self._grid = _Grid(self._cw)

    def _assign_into(self, X: np.ndarray, out: np.ndarray) -> None:
        """One chunk on the calling thread: the grid index when it was built (large
        inputs), brute force otherwise; both give the same exact nearest centroid."""
        assert self._cw is not None
        Z = X * self.weights
        lab = self._grid.assign(Z, self._cw) if self._grid is not None else _brute(Z, self._cw)
        np.add(lab, self.N_SPECIAL, out=out, casting="unsafe")

    def _representatives(self) -> np.ndarray:
        assert self.centroids is not None
        return self.centroids

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
        return {"centroids": self.centroids.tolist()}

    @classmethod
    def _from_content(cls, content: dict[str, Any]) -> KMeansTokenizer:
        tok = cls(**content["params"], features=FeatureConfig.from_dict(content["features"]))
        F = np.asarray(content["centroids"], dtype=np.float64)
        if F.ndim != 2 or F.shape[1] != len(tok.feature_names) or F.shape[0] < 1:
            raise ValueError("centroids do not match the features")
        tok._set_centroids(F)
        if "counts" in content:
            tok.counts = np.asarray(content["counts"], dtype=np.int64)
        tok._default_scale = float(content["default_scale"])
        tok._finish()
        return tok
