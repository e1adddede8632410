"""``bins``: each normalized feature cut into bins; a candle's token is the mixed-radix
number of its bin indices (gap most significant, then body, upper, lower[, vol]).

Edges are data quantiles of the training features (or fixed edges). By default the
quantile levels are spaced evenly in *normal score* over ``±tail_z`` rather than evenly in
probability: plain equal-mass quantiles leave 1/n of the data in each open-ended tail
bin, whose error is unbounded, and make the outer finite bins very wide. Measured on the
bundled sample this is what takes the p95 close error from ~107 to ~52 bps at the same
vocabulary size (see ``benchmarks/tokenizer_quality.py``).

Each edge is placed halfway between two *distinct* neighbouring training values, so no
training value ever sits on an edge (float noise cannot flip it). Decoding uses the bin
midpoint for finite bins (so ``decode(encode(x))`` is within half a bin of ``x``), the
median training value for the open-ended tail bins, and exactly 0 for the zero-wick bin
(a close at the high is common, and 0 survives the trip through prices exactly). A gap,
body or vol that is exactly 0 on at least ``POINT_MASS_MIN`` of the training candles (an
index whose open is the previous close on most days) gets a zero bin too (with at least 3
bins requested), so a flat open decodes to open == previous close, not a small gap.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np

from candletok.core.errors import TokenizerError
from candletok.tokenize.base import Tokenizer
from candletok.tokenize.features import POINT_MASS_MIN, ZERO_TOL, FeatureConfig

WICKS: frozenset[str] = frozenset({"upper", "lower"})
# ZERO_TOL: a wick below this (normalized) is "no wick"; its representative is 0. The
# same band [-ZERO_TOL, ZERO_TOL) is the zero bin of a two-sided feature with a point mass.
TAIL_MARGIN = 1e-6  # tail representatives sit at least this far inside their bin
MAX_TOKENS = 65536  # uint16 ids
# Ratio kernel (encode): features computed in float32 and binned through a lookup table
# of LUT_CELLS cells per feature; a cell closer to an edge than the float32 error bound
# (plus a cell) is marked uncertain and its rows are redone exactly in float64, so tokens
# are bit-identical to the float64 path. The bound needs a smallest scale: one table per
# tier, the tier picked per chunk from the chunk's smallest scale.
LUT_CELLS = 16384
LUT_TIERS = (1e-2, 1e-3, 1e-4, 1e-5)
LUT_UNSURE = 255
# |float32 feature - float64 feature| <= ABS_ERR / scale + REL_ERR * |feature| (float32
# ratio rounding 6e-8, numpy's float32 log within a few ulp, two float32 roundings; both
# constants are ~4x the worst case)
ABS_ERR, REL_ERR = 4e-7, 1e-5


def _phi(z: np.ndarray) -> np.ndarray:
    """Standard normal CDF (no scipy needed)."""
    erf = np.vectorize(math.erf, otypes=[float])
    return 0.5 * (1.0 + erf(np.asarray(z, dtype=float) / math.sqrt(2.0)))


def quantile_levels(n_bins: int, tail_z: float | None, one_sided: bool) -> np.ndarray:
    """Probability levels of the interior edges of ``n_bins`` bins.

    ``tail_z=None`` gives equal-mass quantiles. Otherwise levels are evenly spaced normal
    scores in ``[-tail_z, tail_z]`` (two-sided) or half-normal scores in ``(0, tail_z)``
    (``one_sided``, for the positive part of a wick).
    """
    k = n_bins - 1
    if k <= 0:
        return np.empty(0)
    if tail_z is None:
        return np.arange(1, k + 1) / n_bins
    if one_sided:
        return 2.0 * _phi(np.linspace(0.0, tail_z, n_bins + 1)[1:-1]) - 1.0
    return _phi(np.linspace(-tail_z, tail_z, k))


def quantile_edges(x: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Edges at the given quantile levels, each halfway between two distinct sorted
    training values (ties never straddle an edge); duplicates removed."""
    s = np.sort(x)
    if s.size < 2 or levels.size == 0:
        return np.empty(0)
    bounds = np.flatnonzero(np.diff(s) > 0) + 1  # k with s[k-1] < s[k]
    if bounds.size == 0:
        return np.empty(0)
    k = np.clip(np.rint(levels * s.size).astype(np.int64), 1, s.size - 1)
    j = np.clip(np.searchsorted(bounds, k), 0, bounds.size - 1)
    jm = np.clip(j - 1, 0, bounds.size - 1)
    pick = np.where(np.abs(bounds[jm] - k) <= np.abs(bounds[j] - k), bounds[jm], bounds[j])
    return np.unique((s[pick - 1] + s[pick]) / 2.0)


def zero_bin_edges(x: np.ndarray, n_bins: int, tail_z: float | None,
                   min_width: float) -> np.ndarray:
    """Edges of ``n_bins`` bins of a two-sided feature with a point mass at 0: the zero
    bin ``[-ZERO_TOL, ZERO_TOL)`` (representative exactly 0) and quantile bins of the
    non-zero values on either side of it (``n_bins - 2`` bins over them, the one that
    spans 0 split in two by the zero bin). Why: quantiles of data that is 0 on most rows
    collapse onto 0, and the bin holding 0 decodes to a small non-zero gap."""
    nz = x[np.abs(x) >= ZERO_TOL]
    inner = quantile_edges(nz, quantile_levels(n_bins - 2, tail_z, one_sided=False))
    neg = drop_narrow(np.concatenate([[ZERO_TOL], np.sort(-inner[inner <= -ZERO_TOL])]),
                      min_width)
    pos = drop_narrow(np.concatenate([[ZERO_TOL], np.sort(inner[inner >= ZERO_TOL])]),
                      min_width)
    return np.concatenate([-neg[::-1], pos])


def drop_narrow(edges: np.ndarray, min_width: float) -> np.ndarray:
    """Drop edges closer than ``min_width`` to the previous kept one (first edge kept)."""
    kept: list[float] = []
    for e in np.asarray(edges, dtype=float):
        if not kept or e - kept[-1] >= min_width:
            kept.append(float(e))
    return np.asarray(kept)


class BinsTokenizer(Tokenizer):
    """Per-feature bins, joint token by mixed radix. Defaults measured on the sample
    (gap 9 x body 13 x upper 3 x lower 3 = 1,053 candle tokens, ``tail_z=1.75``)."""

    scheme = "bins"

    def __init__(
        self,
        gap_bins: int = 9,
        body_bins: int = 13,
        upper_bins: int = 3,
        lower_bins: int = 3,
        vol_bins: int = 0,
        edges: str | dict[str, Any] = "quantile",
        tail_z: float | None = 1.75,
        min_width: float = 1e-3,
        features: FeatureConfig | None = None,
    ) -> None:
        features = features or FeatureConfig()
        features = replace(features, volume=vol_bins > 0)
        super().__init__(features)
        self.n_bins: dict[str, int] = {
            "gap": int(gap_bins), "body": int(body_bins), "upper": int(upper_bins),
            "lower": int(lower_bins), "vol": int(vol_bins),
        }
        for name in self.feature_names:
            lo = 2 if name in WICKS else 1
            if self.n_bins[name] < lo:
                raise TokenizerError(
                    f"{name}_bins must be at least {lo}"
                    + (" (one bin for no wick, one for a wick)." if lo == 2 else ".")
                )
        if math.prod(self.n_bins[n] for n in self.feature_names) > MAX_TOKENS - self.N_SPECIAL:
            raise TokenizerError(
                f"The bin counts multiply to more than {MAX_TOKENS - self.N_SPECIAL} tokens; "
                "use fewer bins (token ids are uint16)."
            )
        if tail_z is not None and not tail_z > 0:
            raise TokenizerError("tail_z must be positive (or None for equal-mass quantiles).")
        self.tail_z = None if tail_z is None else float(tail_z)
        self.min_width = float(min_width)
        self.fixed_edges: dict[str, np.ndarray] | None = None
        if isinstance(edges, dict):
            self.fixed_edges = self._check_fixed(edges)
        elif edges != "quantile":
            raise TokenizerError("edges must be 'quantile' or a dict of fixed edges per feature.")
        self.edges: dict[str, np.ndarray] = {}
        self.reps: dict[str, np.ndarray] = {}
        self._strides: np.ndarray | None = None
        self._luts: list[Any] | None = None

    def _check_fixed(self, edges: dict[str, Any]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for name in self.feature_names:
            if name not in edges:
                raise TokenizerError(
                    f"Fixed edges need a list for every feature; '{name}' is missing."
                )
            e = np.asarray(edges[name], dtype=float).reshape(-1)
            if name in WICKS:
                e = e[e > ZERO_TOL]
                e = np.concatenate([[ZERO_TOL], e])
            if not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0):
                raise TokenizerError(f"Fixed edges of '{name}' must be finite and increasing.")
            out[name] = e
        return out

    # ---- fitting ------------------------------------------------------------------------
    def _fit_features(self, X: np.ndarray) -> None:
        self.edges, self.reps = {}, {}
        zero_mass = (np.abs(X) < ZERO_TOL).mean(axis=0)
        for j, name in enumerate(self.feature_names):
            x = X[:, j]
            if self.fixed_edges is not None:
                e = self.fixed_edges[name]
            elif name in WICKS:
                pos = x[x >= ZERO_TOL]
                lv = quantile_levels(self.n_bins[name] - 1, self.tail_z, one_sided=True)
                e = drop_narrow(np.concatenate([[ZERO_TOL], quantile_edges(pos, lv)]),
                                self.min_width)
            elif (self.n_bins[name] >= 3 and zero_mass[j] >= POINT_MASS_MIN
                  and zero_mass[j] < 1.0):
                e = zero_bin_edges(x, self.n_bins[name], self.tail_z, self.min_width)
            else:
                lv = quantile_levels(self.n_bins[name], self.tail_z, one_sided=False)
                e = drop_narrow(quantile_edges(x, lv), self.min_width)
            self.edges[name] = e
            self.reps[name] = self._fit_reps(name, x, e)
        self._strides = None
        self._luts = None

    @staticmethod
    def _fit_reps(name: str, x: np.ndarray, e: np.ndarray) -> np.ndarray:
        """Bin representatives: midpoints inside, tail medians outside, 0 for no wick."""
        r = np.empty(e.size + 1)
        if e.size == 0:
            r[0] = float(np.median(x)) if x.size else 0.0
            return r
        r[1:-1] = (e[:-1] + e[1:]) / 2.0
        adj = float(e[1] - e[0]) if e.size > 1 else 1.0
        idx = np.searchsorted(e, x, side="right")
        lo_vals, hi_vals = x[idx == 0], x[idx == e.size]
        if name in WICKS:
            r[0] = 0.0
        else:
            lo = float(np.median(lo_vals)) if lo_vals.size else e[0] - adj / 2.0
            r[0] = min(lo, e[0] - TAIL_MARGIN)
        adj_hi = float(e[-1] - e[-2]) if e.size > 1 else 1.0
        hi = float(np.median(hi_vals)) if hi_vals.size else e[-1] + adj_hi / 2.0
        r[-1] = max(hi, e[-1] + TAIL_MARGIN)
        return r

    @property
    def fitted(self) -> bool:
        return bool(self.edges)

    @property
    def radix(self) -> tuple[int, ...]:
        """Bins per feature actually in use (after dropping duplicate/narrow edges)."""
        return tuple(self.edges[n].size + 1 for n in self.feature_names)

    @property
    def n_candle_tokens(self) -> int:
        self._require_fit()
        return math.prod(self.radix)

    def _get_strides(self) -> np.ndarray:
        if self._strides is None:
            r = self.radix
            self._strides = np.array(
                [math.prod(r[j + 1 :]) for j, _ in enumerate(r)], dtype=np.int64
            )
        return self._strides

    def token_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Each candle token's bin per feature as [lo, hi): a value x is in bin i of a
        feature when i edges are <= x (so the bins are [e[i-1], e[i]), open at the top,
        unbounded at both ends); wicks are never negative, so their lowest bin starts at
        0."""
        self._require_fit()
        c = np.arange(self.n_candle_tokens, dtype=np.int64)
        lo = np.empty((c.size, len(self.feature_names)))
        hi = np.empty_like(lo)
        for j, (name, stride, r) in enumerate(zip(self.feature_names, self._get_strides(),
                                                  self.radix, strict=True)):
            b = (c // stride) % r
            e = np.asarray(self.edges[name], dtype=np.float64)
            lo[:, j] = np.concatenate([[-np.inf], e])[b]
            hi[:, j] = np.concatenate([e, [np.inf]])[b]
            if name in WICKS:
                lo[:, j] = np.maximum(lo[:, j], 0.0)
        return lo, hi

    # ---- feature space ------------------------------------------------------------------
    def _assign_chunk(self, X: np.ndarray, out: np.ndarray) -> None:
        """Count edges <= x per feature (a few compares beat a binary search for ~10
        edges), then combine; everything in uint16, in-place, cache-sized chunks."""
        m = X.shape[0]
        buf = np.empty(m, dtype=bool)
        idx = np.empty(m, dtype=np.uint16)
        out[:] = self.N_SPECIAL
        for j, (name, stride) in enumerate(zip(self.feature_names, self._get_strides(),
                                               strict=True)):
            x = X[:, j]
            idx[:] = 0
            for e in self.edges[name]:
                np.greater_equal(x, e, out=buf)
                idx += buf
            if stride != 1:
                idx *= np.uint16(stride)
            out += idx

    def _prepare_assign(self, n_rows: int) -> None:
        self._get_strides()

    # ---- ratio kernel (encode) ---------------------------------------------------------
    def _build_luts(self) -> list[tuple[float, list[tuple[np.float32, np.float32, np.ndarray]]]]:
        """Per scale tier: per price feature ``(1/cell width, offset, table)``; empty when
        the kernel does not apply (vol feature, > 127 bins, a wick edge <= 0)."""
        names = self.feature_names
        if self.features.volume or any(r > 127 for r in self.radix):
            return []
        for n in names:
            if n in WICKS and self.edges[n].size and self.edges[n][0] <= 0:
                return []
        tiers = []
        for s_min in LUT_TIERS:
            per = []
            for n in names:
                e = np.sort(np.asarray(self.edges[n], dtype=np.float64))
                lo_r = (e[0] if e.size else 0.0) - 1.0
                hi_r = (e[-1] if e.size else 0.0) + 1.0
                tol = ABS_ERR / s_min + REL_ERR * max(abs(lo_r), abs(hi_r))
                w = (hi_r - lo_r) / (LUT_CELLS - 2)
                if not tol + 2 * w < 0.25:
                    return tiers if tiers else []
                k = np.arange(1, LUT_CELLS, dtype=np.float64)  # cell k: [lo+(k-1)w, lo+kw)
                left = lo_r + (k - 1) * w - w - tol
                right = lo_r + k * w + w + tol
                left[0], right[-1] = -np.inf, np.inf  # the end cells take everything beyond
                c_lo = np.searchsorted(e, left, side="left")
                c_hi = np.searchsorted(e, right, side="right")
                lut = np.full(LUT_CELLS, LUT_UNSURE, dtype=np.uint8)
                lut[1:] = np.where(c_lo == c_hi, c_lo, LUT_UNSURE)
                inv_w = 1.0 / w
                per.append((np.float32(inv_w), np.float32(1.0 - lo_r * inv_w), lut))
            tiers.append((s_min, per))
        return tiers

    def _ratio_kernel(self) -> Any:
        self._require_fit()
        if getattr(self, "_luts", None) is None:
            self._luts = self._build_luts()
        if not self._luts:
            return None
        strides = [np.uint16(x) for x in self._get_strides()]
        luts = self._luts
        local = threading.local()
        top = np.float32(LUT_CELLS - 1)
        wicks = [j for j, n in enumerate(self.feature_names) if n in WICKS]

        def kernel(R: np.ndarray, sc: np.ndarray, out: np.ndarray) -> None:
            with np.errstate(divide="ignore", invalid="ignore"):  # 0/inf ratios: handled
                _kernel(R, sc, out)

        def _kernel(R: np.ndarray, sc: np.ndarray, out: np.ndarray) -> None:
            m = R.shape[0]
            if getattr(local, "n", 0) < m:
                local.n = m
                local.f = np.empty(m, dtype=np.float32)
                local.inv = np.empty(m, dtype=np.float32)
                local.ci = np.empty(m, dtype=np.int32)
                local.idx = np.empty(m, dtype=np.uint8)
                local.orv = np.empty(m, dtype=np.uint8)
                local.tmp = np.empty(m, dtype=np.uint16)
            f, inv, ci = local.f[:m], local.inv[:m], local.ci[:m]
            idx, orv, tmp = local.idx[:m], local.orv[:m], local.tmp[:m]
            s_lo = float(sc.min())
            tier = next((t for t in luts if s_lo >= t[0]), luts[-1])
            bad: np.ndarray | None = None
            if not (s_lo >= tier[0] and float(sc.max()) < 1e30):
                bad = ~((sc >= tier[0]) & (sc < 1e30))
            np.divide(1.0, sc, out=inv, casting="same_kind")
            for j, (inv_w, off, lut) in enumerate(tier[1]):
                f[:] = R[:, j]
                np.log(f, out=f)
                lmin, lmax = float(f.min()), float(f.max())
                if not (lmin >= -80.0 and lmax <= 80.0):  # 0, inf, NaN, subnormal ratios
                    b = ~(np.abs(f) <= 80.0)
                    bad = b if bad is None else (bad | b)
                np.multiply(f, inv, out=f)
                np.multiply(f, inv_w, out=f)
                np.add(f, off, out=f)
                np.clip(f, np.float32(1.0), top, out=f)
                with np.errstate(invalid="ignore"):
                    ci[:] = f  # NaN -> 0 or INT_MIN -> cell 0 (unsure) below
                np.take(lut, ci, out=idx, mode="clip")
                if j == 0:
                    np.multiply(idx, strides[j], out=out)
                    orv[:] = idx
                else:
                    np.multiply(idx, strides[j], out=tmp)
                    np.add(out, tmp, out=out)
                    np.bitwise_or(orv, idx, out=orv)
            out += np.uint16(self.N_SPECIAL)
            unsure = orv >= 128
            if bad is not None:
                unsure |= bad
            rows = np.flatnonzero(unsure)
            if rows.size:  # exactly what the float64 path computes for these rows
                X = np.log(R[rows])
                X /= sc[rows][:, None]
                for j in wicks:
                    np.maximum(X[:, j], 0.0, out=X[:, j])
                sub = np.empty(rows.size, dtype=np.uint16)
                self._encode_into(np.asfortranarray(X), sub)
                out[rows] = sub

        return kernel

    def _assign_into(self, X: np.ndarray, out: np.ndarray) -> None:
        self._get_strides()
        self._assign_chunk(X, out)

    def _assign(self, X: np.ndarray) -> np.ndarray:
        n = X.shape[0]
        out = np.empty(n, dtype=np.uint16)
        if n == 1:  # a live bar: the same count of edges <= x per feature, in plain Python
            # (about forty one-element ufunc calls cost a live update 0.3 ms)
            t = self.N_SPECIAL
            for x, name, stride in zip(X[0].tolist(), self.feature_names,
                                       self._get_strides(), strict=True):
                t += sum(1 for e in self.edges[name] if x >= e) * int(stride)
            out[0] = t
            return out
        chunk = 1 << 16
        starts = range(0, n, chunk)
        self._get_strides()
        workers = min(2, os.cpu_count() or 1)
        if n >= 8 * chunk and workers > 1:
            chunk = max(chunk, -(-n // (8 * workers)))
            starts = range(0, n, chunk)
            with ThreadPoolExecutor(workers) as ex:  # numpy ufuncs release the GIL
                list(ex.map(lambda s: self._assign_chunk(X[s : s + chunk], out[s : s + chunk]),
                            starts))
        else:
            for s in starts:
                self._assign_chunk(X[s : s + chunk], out[s : s + chunk])
        return out

    def bin_indices(self, tokens: np.ndarray) -> np.ndarray:
        """(n,) candle tokens -> (n, d) per-feature bin indices."""
        t = np.asarray(tokens).astype(np.int64) - self.N_SPECIAL
        return np.stack(np.unravel_index(t, self.radix), axis=1)

    def tail_mask(self, tokens: np.ndarray) -> np.ndarray:
        """(n, d) True where a feature fell in an open-ended tail bin (its error is not
        bounded by half a bin); the zero-wick bin is exact, so it is not a tail."""
        b = self.bin_indices(tokens)
        out = np.zeros(b.shape, dtype=bool)
        for j, name in enumerate(self.feature_names):
            last = self.radix[j] - 1
            out[:, j] = b[:, j] == last
            if name not in WICKS:
                out[:, j] |= b[:, j] == 0
            if self.radix[j] == 1:
                out[:, j] = True
        return out

    def exact_zero_features(self) -> tuple[str, ...]:
        """Features with a zero bin: ``[ZERO_TOL, ...)`` above the no-wick bin, or the
        band ``[-ZERO_TOL, ZERO_TOL)`` of a two-sided feature (representative 0)."""
        out = []
        for n in self.feature_names:
            e, r = self.edges[n], self.reps[n]
            no_wick = n in WICKS and e.size > 0 and e[0] == ZERO_TOL
            if r[0] == 0.0 and (no_wick or e.size == 0):  # e.size 0: one bin, it is 0
                out.append(n)
            elif n not in WICKS and e.size >= 2:
                k = int(np.searchsorted(e, -ZERO_TOL))
                if k + 1 < e.size and e[k] == -ZERO_TOL and e[k + 1] == ZERO_TOL and \
                        r[k + 1] == 0.0:
                    out.append(n)
        return tuple(out)

    def notes(self) -> list[str]:
        """The base notes, then every feature whose bins merged: quantile edges that fall
        on the same training value (or closer than ``min_width``) are one edge, so fewer
        bins exist than were asked for."""
        out = super().notes()
        merged = [f"{self.n_bins[n]} {n} bins requested, {r} distinct"
                  for n, r in zip(self.feature_names, self.radix, strict=True)
                  if r < self.n_bins[n]]
        if merged:
            out.append("merged quantile edges (ties in the fit data): " + "; ".join(merged)
                       + ".")
        return out

    def _representatives(self) -> np.ndarray:
        grids = np.meshgrid(*[self.reps[n] for n in self.feature_names], indexing="ij")
        return np.stack([g.reshape(-1) for g in grids], axis=1)

    # ---- file ---------------------------------------------------------------------------
    def _params(self) -> dict[str, Any]:
        return {
            **{f"{n}_bins": self.n_bins[n] for n in ("gap", "body", "upper", "lower", "vol")},
            "edges": "fixed" if self.fixed_edges is not None else "quantile",
            "tail_z": self.tail_z,
            "min_width": self.min_width,
        }

    def _state(self) -> dict[str, Any]:
        return {
            "radix": list(self.radix),
            "edges": {n: self.edges[n].tolist() for n in self.feature_names},
            "representatives": {n: self.reps[n].tolist() for n in self.feature_names},
        }

    @classmethod
    def _from_content(cls, content: dict[str, Any]) -> BinsTokenizer:
        p = dict(content["params"])
        mode = p.pop("edges")
        edges: str | dict[str, Any] = "quantile"
        if mode == "fixed":
            edges = content["edges"]
        tok = cls(**p, edges=edges, features=FeatureConfig.from_dict(content["features"]))
        names = tok.feature_names
        tok.edges = {n: np.asarray(content["edges"][n], dtype=float) for n in names}
        tok.reps = {n: np.asarray(content["representatives"][n], dtype=float) for n in names}
        if set(content["edges"]) != set(names) or any(
            tok.reps[n].size != tok.edges[n].size + 1 for n in tok.feature_names
        ):
            raise ValueError("edges/representatives do not match the features")
        tok._load_fit_facts(content)
        tok._finish()
        return tok
