"""The base rate as of any time T without a pass over every window.

The base rate of a query at horizon h is every window of the index whose h-bar forward
window ends by T (its own series' limit), less the first N - 1 windows of each series
(too short for an N-candle window) and the query's own exclusion zone (see
:mod:`candletok.search.timerule`). Counted the old way, that is a pass over all n
windows at every query (:func:`candletok.search.stats.base_outcome_scan`).

Here the windows of horizon h are laid out once in the order their forward windows end
(a :class:`HorizonTable`). Within one series the end times increase, so "ends by T" is a
prefix of that order, and its length is ``sum over series of (limit - start - h)``: the
per-series limits the time rule already computed, O(S) with no search. The rule's
exceptions (the first N - 1 windows of each series, the query's zone) are S * (N - 1) +
zone windows: they are listed and subtracted. So a base rate costs

* counts, up-counts and sums: two reads of prefix-sum arrays, exact for counts (integer
  prefix sums), to rounding for means (float64 prefix sums);
* quantiles: **exact** order statistics from a two-level rank structure
  (:class:`PrefixQuantiles`): value bins with per-block prefix counts find the bin of
  the k-th value, and that bin's own members (kept in end order) hold it. A query reads
  O(bins + block + n / bins) values, a few thousand at 10M windows, vectorized.

Why not a sketch: the answer prints the 10/50/90% quantiles beside the matches', and the
tests compare them with the full pass; an exact structure keeps them the same numbers
(the property test checks that) at a cost of ~7 bytes per window per quantity (29 per
window per horizon with the prefix sums, 66 at h = 1 with the next range). Why not a
wavelet matrix: the same exactness in O(log n) reads instead of O(bins + block + n /
bins), but ~24 bit-vector levels with rank support per quantity, far more code to build
and check in numpy, for a lookup that already costs a few milliseconds per horizon
(measured at 1M candles on the loaded 2-core machine), not the end-to-end answer's bulk.

The tables depend only on the index, so they are built once per horizon on first use
and saved beside the index (``base-h<h>.npz``, keyed by the index's key, its digest in a
sidecar) when the index has a folder; a rebuilt index replaces the folder and them.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from candletok.core.atomic import atomic_path, write_json_atomic
from candletok.search.arrayfiles import file_digest
from candletok.search.grams import ranges_to_indices
from candletok.search.index import SearchIndex, index_dir

log = logging.getLogger(__name__)

MAX_BINS = 2048
BLOCK = 8192
SAMPLE = 100_000  # values the bin edges are drawn from (strided: deterministic)
TABLE_FORMAT = "candletok-base/2"  # 2: the range's sum of squares (mean_sq_vol)


def member(x: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Mask: which of ``x`` are in ``sorted_set`` (ascending), by binary search."""
    if sorted_set.size == 0:
        return np.zeros(x.shape, dtype=bool)
    i = np.minimum(np.searchsorted(sorted_set, x), sorted_set.size - 1)
    return sorted_set[i] == x


@dataclass
class PrefixQuantiles:
    """Exact k-th smallest value among the first j elements of a fixed sequence, less a
    few listed ones. Elements are put in value bins (edges from a sample); ``ckpt[c]``
    counts each bin's members among the first ``c * block`` elements, and ``grouped``
    lists each bin's members in sequence order. The values themselves are not stored:
    the caller recomputes those of one bin from the element ids (``value_of``), which is
    what makes the answer the same number the full pass computes."""

    edges: np.ndarray  # (bins - 1,) ascending; NaN sorts into the last bin, as in a sort
    grouped: np.ndarray  # (m,) uint32 element ids, grouped by bin, ascending within a bin
    offsets: np.ndarray  # (bins + 1,) int64 bounds of each bin in grouped
    ckpt: np.ndarray  # (m // block + 1, bins) uint32 prefix counts per bin
    bins: np.ndarray  # (m,) uint16 each element's bin (the partial block's counts)
    block: int = BLOCK

    @classmethod
    def build(cls, v: np.ndarray, block: int | None = None) -> PrefixQuantiles:
        block = BLOCK if block is None else int(block)
        m = int(v.size)
        nb = int(min(MAX_BINS, max(1, math.isqrt(m))))
        s = v[:: max(1, m // SAMPLE)]
        s = s[np.isfinite(s)]
        edges = (np.quantile(s, np.linspace(0.0, 1.0, nb + 1)[1:-1]) if s.size and nb > 1
                 else np.zeros(0))
        nb = edges.size + 1
        b = np.searchsorted(edges, v, side="right").astype(np.uint16)
        grouped = np.argsort(b, kind="stable").astype(np.uint32)  # radix sort of uint16
        offsets = np.concatenate([[0], np.cumsum(np.bincount(b, minlength=nb))])
        nblk = m // block
        flat = np.repeat(np.arange(nblk, dtype=np.int64) * nb, block) + b[: nblk * block]
        per = np.bincount(flat, minlength=nblk * nb).reshape(nblk, nb)
        ckpt = np.zeros((nblk + 1, nb), dtype=np.uint32)
        np.cumsum(per, axis=0, out=ckpt[1:])
        return cls(edges, grouped, offsets.astype(np.int64), ckpt, b, block)

    def bins_of(self, v: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.edges, v, side="right")

    def order_stats(self, j: int, ks: list[int], value_of: Callable[[np.ndarray], np.ndarray],
                    minus_values: np.ndarray, excluded: Callable[[np.ndarray], np.ndarray]
                    ) -> dict[int, float]:
        """{k: the k-th smallest (0-based)} of the values of elements [0, j) less the
        excluded ones (``minus_values`` are their values, ``excluded`` marks their ids)."""
        nb = self.offsets.size - 1
        c = min(j // self.block, self.ckpt.shape[0] - 1)
        counts = self.ckpt[c].astype(np.int64)
        if j > c * self.block:
            counts += np.bincount(self.bins[c * self.block : j], minlength=nb)
        if minus_values.size:
            counts -= np.bincount(self.bins_of(minus_values), minlength=nb)
        cum = np.cumsum(counts)
        out: dict[int, float] = {}
        memo: dict[int, np.ndarray] = {}
        for k in ks:
            b = int(np.searchsorted(cum, k, side="right"))
            if b not in memo:
                g = self.grouped[self.offsets[b] : self.offsets[b + 1]]
                g = g[: int(np.searchsorted(g, j))]
                memo[b] = np.sort(value_of(g[~excluded(g)]))
            out[k] = float(memo[b][k - (int(cum[b - 1]) if b else 0)])
        return out


@dataclass
class HorizonTable:
    """Every window with an h-bar forward window inside its series, in the order those
    forward windows end, with prefix sums and exact-quantile structures of the forward
    log return ``r`` and of ``r / scale`` (and, at h = 1, of the next candle's range)."""

    h: int
    ends: np.ndarray  # (m,) uint32 window ends in forward-window end order
    cum_up: np.ndarray  # (m + 1,) uint32 prefix counts of r > 0
    cum_r: np.ndarray  # (m + 1,) float64 prefix sums of r
    q_r: PrefixQuantiles
    q_rv: PrefixQuantiles
    # h = 1 only: the next candle's range, over the windows whose next bar has one
    cum_valid: np.ndarray | None = None  # (m + 1,) prefix counts of a finite range
    vends: np.ndarray | None = None  # those windows' ends, same order
    cum_pct: np.ndarray | None = None
    cum_rng_vol: np.ndarray | None = None
    q_pct: PrefixQuantiles | None = None
    q_rng_vol: PrefixQuantiles | None = None
    cum_rng_sq: np.ndarray | None = None  # prefix sums of the squared range in vol units


def end_order(idx: SearchIndex) -> np.ndarray:
    """Every position ordered by its bar time (ties in any fixed order), once per index:
    the forward windows of horizon h ending at position p are its windows e = p - h."""
    got = idx._tables.get("order")
    if got is None:  # a stable sort merges the series' own sorted runs (timsort): cheap
        got = np.argsort(np.asarray(idx.ts), kind="stable").astype(np.uint32)
        idx._tables["order"] = got
    return got


def forward_r(idx: SearchIndex, e: np.ndarray, h: int) -> tuple[np.ndarray, np.ndarray]:
    """The same arithmetic as :func:`candletok.search.stats.forward` (so the same bits)."""
    logc = idx.log_close
    r = logc[e + h] - logc[e]
    return r, r / np.asarray(idx.scale)[e + 1]


def next_range_values(idx: SearchIndex, e: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                  np.ndarray]:
    """(finite mask, range in percent, range in vol units) of the candle after each e,
    computed as :func:`candletok.search.stats.next_range` does."""
    e1 = e + 1
    with np.errstate(divide="ignore", invalid="ignore"):
        lr = np.log(np.asarray(idx.high)[e1] / np.asarray(idx.low)[e1])
    ok = np.isfinite(lr)
    lr = lr[ok]
    return ok, 100.0 * np.expm1(lr), lr / np.asarray(idx.scale)[e1][ok]


def _prefix(x: np.ndarray, dtype: Any) -> np.ndarray:
    out = np.zeros(x.size + 1, dtype=dtype)
    np.cumsum(x, out=out[1:])
    return out


def build_table(idx: SearchIndex, h: int) -> HorizonTable:
    """The table of horizon h (vectorized: one sort of bar times shared by every
    horizon, then one radix sort of bin ids per quantity)."""
    order = end_order(idx)
    starts = np.asarray(idx.starts)
    offset = order - starts[idx.sid[order]]
    ei = order[offset >= h].astype(np.int64) - h
    e = ei.astype(np.uint32)  # positions fit 32 bits: the index holds < 2**32 candles
    r, rv = forward_r(idx, ei, h)
    tab = HorizonTable(h, e, _prefix(r > 0, np.uint32), _prefix(r, np.float64),
                       PrefixQuantiles.build(r), PrefixQuantiles.build(rv))
    if h == 1:
        ok, pct, vol = next_range_values(idx, ei)
        tab.cum_valid = _prefix(ok, np.uint32)
        tab.vends = e[ok]
        tab.cum_pct, tab.cum_rng_vol = _prefix(pct, np.float64), _prefix(vol, np.float64)
        tab.q_pct, tab.q_rng_vol = PrefixQuantiles.build(pct), PrefixQuantiles.build(vol)
        tab.cum_rng_sq = _prefix(np.square(vol), np.float64)
    return tab


def table(idx: SearchIndex, h: int) -> HorizonTable:
    """The horizon-h table of ``idx``: from memory, else from its saved file, else built
    (and saved beside the index when it has a folder)."""
    key = ("h", int(h))
    got = idx._tables.get(key)
    if got is None:
        folder = _folder(idx)
        got = _load(folder, idx.key, h) if folder is not None else None
        if got is None:
            got = build_table(idx, h)
            if folder is not None:
                _save(folder, idx.key, got)
        idx._tables[key] = got
    return got


# ---- files ----------------------------------------------------------------------------
def _folder(idx: SearchIndex) -> Path | None:
    if idx.root is None or not idx.key:
        return None
    path = index_dir(idx.root)
    return path if (path / "meta.json").is_file() else None


def _flatten(tab: HorizonTable) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for f in fields(tab):
        v = getattr(tab, f.name)
        if isinstance(v, PrefixQuantiles):
            for g in fields(v):
                out[f"{f.name}.{g.name}"] = np.asarray(getattr(v, g.name))
        elif isinstance(v, np.ndarray):
            out[f.name] = v
    return out


def _unflatten(h: int, z: Any) -> HorizonTable:
    names = set(z.files)
    kw: dict[str, Any] = {}
    for f in fields(HorizonTable):
        if f.name == "h":
            continue
        if f"{f.name}.edges" in names:
            parts = [z[f"{f.name}.{g.name}"] for g in fields(PrefixQuantiles)]
            kw[f.name] = PrefixQuantiles(*parts[:-1], block=int(parts[-1]))
        elif f.name in names:
            kw[f.name] = z[f.name]
    return HorizonTable(h=h, **kw)


def _stat(path: Path) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def _load(folder: Path, key: str, h: int) -> HorizonTable | None:
    """The saved table, when its sidecar records this index's key and the file is what
    was saved (same size and mtime, else the same digest); None otherwise."""
    path, side = folder / f"base-h{h}.npz", folder / f"base-h{h}.json"
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
        if meta.get("format") != TABLE_FORMAT or meta.get("key") != key:
            return None
        if _stat(path) != meta["stat"] and file_digest(path) != meta["digest"]:
            log.warning("the saved base-rate table %s does not match its checksum; "
                        "rebuilding it", path)
            return None
        with np.load(path) as z:
            return _unflatten(h, z)
    except (OSError, KeyError, ValueError, TypeError):
        return None


def _save(folder: Path, key: str, tab: HorizonTable) -> None:
    """Save beside the index (a read-only dataset simply builds it again next time)."""
    path = folder / f"base-h{tab.h}.npz"
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **_flatten(tab))
        write_json_atomic(folder / f"base-h{tab.h}.json",
                          {"format": TABLE_FORMAT, "key": key, "stat": _stat(path),
                           "digest": file_digest(path)})
    except OSError as exc:
        log.debug("could not save %s (%s)", path, exc)


# ---- queries --------------------------------------------------------------------------
def quantile_ranks(n: int, qs: tuple[float, ...]) -> list[int]:
    """The order statistics (0-based) that linear-interpolation quantiles of n values
    read: ``np.quantile``'s default method."""
    return sorted({min(n - 1, math.floor(q * (n - 1)) + d) for q in qs for d in (0, 1)})


def interpolate(n: int, qs: tuple[float, ...], stat: dict[int, float]) -> list[float]:
    """The quantiles ``qs`` of n values from their order statistics ``stat``."""
    if n == 0:
        return [float("nan")] * len(qs)
    out = []
    for q in qs:
        p = q * (n - 1)
        a = math.floor(p)
        lo, hi = stat[a], stat[min(n - 1, a + 1)]
        out.append(lo + (p - a) * (hi - lo))
    return out


def exceptions(cut: Any, h: int) -> tuple[int, np.ndarray]:
    """(prefix length, sorted window ends to leave out) of the base rate of ``cut`` at h:
    the windows of horizon h ending by T form the first ``j`` of the table's order; of
    those, each series' first N - 1 and the query's exclusion zone are not base windows
    (the same sets as :meth:`candletok.search.timerule.Cut.window_ranges`)."""
    idx, r = cut.idx, cut.rule
    start = np.asarray(idx.starts[:-1], dtype=np.int64)
    top = np.asarray(cut.limits, dtype=np.int64) - h  # ends whose window ends by T
    j = int(np.maximum(top - start, 0).sum())
    lo, hi = [start], [np.minimum(start + r.window - 1, top)]
    if r.q_sid is not None and r.q_end is not None:
        q = int(r.q_sid)
        lo.append(np.array([max(int(start[q]) + r.window - 1, r.q_end - r.zone + 1)]))
        hi.append(np.array([int(top[q])]))
    drop = ranges_to_indices(np.concatenate(lo), np.concatenate(hi))
    drop.sort()
    return j, drop


def base_figures(cut: Any, h: int, qs: tuple[float, ...]
                 ) -> tuple[int, float, float, list[float], list[float]]:
    """(n, up-count, mean log return, quantiles of r, quantiles of r / scale) of the base
    windows of ``cut`` at horizon h, from the table: what the full pass computes."""
    idx = cut.idx
    tab = table(idx, h)
    j, drop = exceptions(cut, h)
    rd, rvd = forward_r(idx, drop, h)
    n = j - int(drop.size)
    if n <= 0:
        nan = float("nan")
        return 0, 0.0, nan, [nan] * len(qs), [nan] * len(qs)
    up = float(int(tab.cum_up[j]) - int((rd > 0).sum()))
    mean = (float(tab.cum_r[j]) - float(rd.sum())) / n
    ends = tab.ends

    def gone(g: np.ndarray) -> np.ndarray:
        return member(ends[g].astype(np.int64), drop)

    ks = quantile_ranks(n, qs)
    qr = tab.q_r.order_stats(j, ks, lambda g: forward_r(idx, ends[g].astype(np.int64), h)[0],
                             rd, gone)
    qv = tab.q_rv.order_stats(j, ks, lambda g: forward_r(idx, ends[g].astype(np.int64), h)[1],
                              rvd, gone)
    return n, up, mean, interpolate(n, qs, qr), interpolate(n, qs, qv)


def base_next_range(cut: Any) -> dict[str, float]:
    """The next candle's range after every base window of ``cut`` (h = 1), from the
    table: the same figures as :func:`candletok.search.stats.next_range` with ``e=None``."""
    idx = cut.idx
    tab = table(idx, 1)
    assert tab.cum_valid is not None and tab.vends is not None and tab.q_pct is not None
    assert tab.q_rng_vol is not None and tab.cum_pct is not None
    assert tab.cum_rng_vol is not None and tab.cum_rng_sq is not None
    j, drop = exceptions(cut, 1)
    ok, pd, vd = next_range_values(idx, drop)
    drop = drop[ok]
    jv = int(tab.cum_valid[j])
    n = jv - int(drop.size)
    nan = float("nan")
    if n <= 0:
        return {"n": 0, "median_pct": nan, "mean_pct": nan, "median_vol": nan, "mean_vol": nan,
                "mean_sq_vol": nan}
    vends = tab.vends

    def gone(g: np.ndarray) -> np.ndarray:
        return member(vends[g].astype(np.int64), drop)

    def pct(g: np.ndarray) -> np.ndarray:
        return next_range_values(idx, vends[g].astype(np.int64))[1]

    def vol(g: np.ndarray) -> np.ndarray:
        return next_range_values(idx, vends[g].astype(np.int64))[2]

    ks = quantile_ranks(n, (0.5,))
    mp = interpolate(n, (0.5,), tab.q_pct.order_stats(jv, ks, pct, pd, gone))[0]
    mv = interpolate(n, (0.5,), tab.q_rng_vol.order_stats(jv, ks, vol, vd, gone))[0]
    return {"n": n, "median_pct": mp,
            "mean_pct": (float(tab.cum_pct[jv]) - float(pd.sum())) / n,
            "median_vol": mv, "mean_vol": (float(tab.cum_rng_vol[jv]) - float(vd.sum())) / n,
            "mean_sq_vol": (float(tab.cum_rng_sq[jv]) - float(np.square(vd).sum())) / n}
