"""The search index of a dataset folder: every candle of every split, one series per
symbol in time order, as flat numpy arrays, plus one sorted array of packed n-gram keys.

Why this layout: a split is a cut in time, not in history, so pattern search joins the
splits back into whole series (the time rule, not the split, decides what may be used).
Flat arrays make every question a handful of vectorized gathers over positions.

The n-gram array holds, for each candle position ``e``, the key of the ``order`` tokens
ending at ``e`` -- newest token most significant, mixed radix ``vocab_size``, PAD (0) for
slots before the series start -- packed with ``e`` as ``key << 32 | e`` and sorted. So

* the windows whose last ``m <= order`` tokens equal a query form one contiguous run,
  found with two binary searches (an exact N-gram lookup costs microseconds);
* shorter suffixes (back-off to fewer candles) are nested runs of the same array;
* the packed values are unique, so one sort of uint64 (no argsort) gives the array, and
  within one key the positions come out in time order (the keys: :mod:`.grams`).

The index lives in ``DIR/_index/search/`` and records a digest of the manifest's shards
(path, rows, sha256) and the vocabulary fingerprint: :func:`open_index` rebuilds it when
the dataset changed and :meth:`SearchIndex.load` refuses one that does not match.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from candletok.core.atomic import (
    replace_dir,
    sha256_file,
    temp_dir_beside,
    write_json_atomic,
)
from candletok.core.errors import DatasetError
from candletok.core.ids import N_SPECIAL, SPLITS
from candletok.dataset.manifest import (
    INDEX_DIR,
    open_dataset,
    read_manifest,
    read_rows,
    shard_stat,
    verify_dataset,
)
from candletok.search.arrayfiles import array_record, check_arrays, load_days, save_days
from candletok.search.grams import (
    POS_BITS,
    POS_MASK,
    gram_keys,
    gram_order,
    prefix_bounds,
    suffix_value,
)
from candletok.tokenize.base import Tokenizer

log = logging.getLogger(__name__)

INDEX_FORMAT = "candletok-search/4"  # 3: each candle's stored bar; 4: xxh3 array digests
SEARCH_DIR = "search"
BAR_ARRAYS = ("open", "high", "low", "volume")  # beside close: the candle's own bar
ARRAYS = ("tokens", "ts", "close", "first_prev", "scale", "starts", "grams", *BAR_ARRAYS)


def index_dir(root: str | Path) -> Path:
    """Where the search index of dataset ``root`` lives."""
    return Path(root) / INDEX_DIR / SEARCH_DIR


def dataset_key(manifest: dict[str, Any]) -> str:
    """A digest of what the index is built from: the vocabulary fingerprint and every
    shard's path, rows and sha256 (the manifest's own checksums)."""
    shards = [
        [split, s["path"], int(s["rows"]), s["sha256"]]
        for split in SPLITS if split in manifest["splits"]
        for s in manifest["splits"][split]["shards"]
    ]
    body = json.dumps({"format": INDEX_FORMAT, "fingerprint": manifest["fingerprint"],
                       "shards": shards}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()[:32]


@dataclass
class SearchIndex:
    """Flat arrays of a dataset's candles (see the module docstring).

    ``starts`` has one entry per series plus the end; series ``s`` is the symbol
    ``symbols[s]`` and occupies positions ``starts[s]:starts[s+1]`` in time order. ``ts``
    is the bar open time in microseconds UTC. ``grams`` is the sorted packed n-gram array.
    ``open``, ``high``, ``low``, ``close`` and ``volume`` are each candle's own stored bar
    (what tables and charts show; NaN where an index was built from arrays without them).
    """

    symbols: list[str]
    starts: np.ndarray
    tokens: np.ndarray
    ts: np.ndarray
    close: np.ndarray
    first_prev: np.ndarray  # each series' anchor close (the bar before its first candle)
    scale: np.ndarray
    grams: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    volume: np.ndarray
    radix: int
    order: int
    key: str = ""
    fingerprint: str = ""
    interval: str = "1d"
    root: Path | None = None
    build_seconds: float = float("nan")
    _sid: np.ndarray | None = field(default=None, repr=False)
    _logc: np.ndarray | None = field(default=None, repr=False)
    _days: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    _tok: Tokenizer | None = field(default=None, repr=False)
    _counts: np.ndarray | None = field(default=None, repr=False)
    _pairs: np.ndarray | None = field(default=None, repr=False)
    _ti: np.ndarray | None = field(default=None, repr=False)
    _prev: np.ndarray | None = field(default=None, repr=False)
    _own: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    _tables: dict[Any, Any] = field(default_factory=dict, repr=False)  # search.baserate's

    # ---- construction -----------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls, symbols: list[str], starts: np.ndarray, tokens: np.ndarray, ts: np.ndarray,
        close: np.ndarray, prev_close: np.ndarray, scale: np.ndarray, radix: int,
        tokenizer: Tokenizer | None = None, bars: dict[str, np.ndarray] | None = None,
        **meta: Any,
    ) -> SearchIndex:
        """Build the n-gram array over ready flat arrays (series contiguous, time order).
        ``tokenizer`` (the vocabulary of the tokens) is what the searches decode with;
        ``bars`` holds the candles' own ``open``, ``high``, ``low`` and ``volume`` (NaN
        when not given: such an index has no real bars to show)."""
        t0 = time.perf_counter()
        starts = np.asarray(starts, dtype=np.int64)
        tokens = np.ascontiguousarray(tokens, dtype=np.uint16)
        n = tokens.size
        if n >= 1 << POS_BITS:
            raise DatasetError(f"The search index holds at most {1 << POS_BITS:,} candles.")
        if int(starts[-1]) != n or starts[0] != 0:
            raise DatasetError("Series bounds do not cover the candles; rebuild the dataset.")
        order = gram_order(radix)
        keys = gram_keys(tokens, starts, radix, order)
        keys <<= np.uint64(POS_BITS)
        keys |= np.arange(n, dtype=np.uint64)
        # (key, position) keys are unique, so every sort gives the same array: Polars'
        # sort runs on every core (2x numpy's single-threaded one at 10M on two cores)
        keys = pl.Series(keys).sort().to_numpy()
        idx = cls(symbols=list(symbols), starts=starts, tokens=tokens,
                  ts=np.asarray(ts, dtype=np.int64), close=np.asarray(close, np.float64),
                  first_prev=np.asarray(prev_close, np.float64)[starts[:-1]],
                  scale=np.asarray(scale, np.float64), grams=keys, radix=int(radix),
                  order=order, _tok=tokenizer, **_bar_arrays(bars, n), **meta)
        idx.build_seconds = time.perf_counter() - t0
        return idx

    @classmethod
    def build(cls, root: str | Path, out: Path | None = None,
              verified: dict[str, list[int]] | None = None) -> SearchIndex:
        """Read every split of dataset ``root`` and build its index in memory, after
        verifying every shard against the manifest (sha256 and vocabulary fingerprint):
        the saved index is later trusted by the shards' size and mtime, so what it is
        built from must be what ``encode`` wrote. ``verified``: the shards' (size,
        mtime_ns) when an index of this same manifest verified them (its
        ``shard_stats``); a shard unchanged since is not hashed again, the same trust a
        saved index is loaded on. With ``out`` (the folder :meth:`save` then completes),
        the per-candle columns are written there as they are laid out and mapped back,
        never held as a second copy in memory."""
        root = Path(root)
        manifest, tok = open_dataset(root)
        verify_dataset(root, [s for s in SPLITS if s in manifest["splits"]], verified)
        t0 = time.perf_counter()
        cols = read_series(root, out)
        idx = cls.from_arrays(radix=tok.vocab_size, tokenizer=tok, key=dataset_key(manifest),
                              fingerprint=tok.fingerprint,
                              interval=str(manifest.get("interval", "1d")), root=root, **cols)
        idx.build_seconds = time.perf_counter() - t0
        return idx

    # ---- files --------------------------------------------------------------------------
    def save(self, path: str | Path, shard_stats: dict[str, list[int]] | None = None,
             tmp: Path | None = None) -> Path:
        """Write the arrays and ``meta.json`` (last) into a fresh folder and move it onto
        ``path`` atomically (an old index there is replaced). ``tmp``: that folder, from
        :func:`temp_dir_beside`, where :meth:`build` already wrote some arrays."""
        path = Path(path)
        tmp = temp_dir_beside(path, ".partial") if tmp is None else tmp
        try:
            for name in ARRAYS:
                if not (tmp / f"{name}.npy").exists():
                    np.save(tmp / f"{name}.npy", np.ascontiguousarray(getattr(self, name)))
            meta = {"format": INDEX_FORMAT, "key": self.key, "fingerprint": self.fingerprint,
                    "interval": self.interval, "symbols": self.symbols, "radix": self.radix,
                    "order": self.order, "candles": int(self.tokens.size),
                    "build_seconds": self.build_seconds, "shard_stats": shard_stats or {},
                    "arrays": {name: array_record(tmp / f"{name}.npy", getattr(self, name))
                               for name in ARRAYS}}
            write_json_atomic(tmp / "meta.json", meta)
            replace_dir(path, tmp)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return path

    @classmethod
    def load(cls, path: str | Path, manifest: dict[str, Any] | None = None) -> SearchIndex:
        """Memory-map a saved index. With ``manifest``, refuse one built from other data."""
        path = Path(path)
        meta = read_meta(path)
        if meta is None:
            raise DatasetError(f"{path} holds no search index; build one with open_index().")
        if manifest is not None and meta.get("key") != dataset_key(manifest):
            raise DatasetError(
                f"The search index in {path} was built from other data than the dataset "
                "beside it (its shard checksums differ); rebuild it with "
                "open_index(dataset, rebuild=True)."
            )
        check_arrays(path, ARRAYS, meta.get("arrays") or {})
        arrays = {name: np.load(path / f"{name}.npy", mmap_mode="r") for name in ARRAYS}
        n = int(meta.get("candles", -1))
        want = {"starts": len(meta["symbols"]) + 1, "first_prev": len(meta["symbols"])}
        for name, arr in arrays.items():  # a header read: a truncated or foreign array
            if arr.ndim != 1 or arr.shape[0] != want.get(name, n):
                raise ValueError(f"{name}.npy holds {arr.shape} values, not "
                                 f"{want.get(name, n)}")
        return cls(symbols=list(meta["symbols"]), radix=int(meta["radix"]),
                   order=int(meta["order"]), key=meta["key"], fingerprint=meta["fingerprint"],
                   interval=meta.get("interval", "1d"), root=path.parent.parent,
                   build_seconds=float(meta.get("build_seconds", float("nan"))), **arrays)

    # ---- derived arrays -------------------------------------------------------------------
    @property
    def n(self) -> int:
        return int(self.tokens.size)

    @property
    def sid(self) -> np.ndarray:
        """Series id of every position (int32), computed once."""
        if self._sid is None:
            lens = np.diff(self.starts)
            self._sid = np.repeat(np.arange(lens.size, dtype=np.int32), lens)
        return self._sid

    @property
    def prev_close(self) -> np.ndarray:
        """Each candle's previous close: the close before it in its series, or the
        series' anchor close (stored) for its first candle."""
        if self._prev is None:
            c = np.asarray(self.close)
            prev = np.empty_like(c)
            prev[1:] = c[:-1]
            prev[np.asarray(self.starts[:-1])[np.diff(self.starts) > 0]] = np.asarray(
                self.first_prev)[np.diff(self.starts) > 0]
            self._prev = prev
        return self._prev

    @property
    def log_close(self) -> np.ndarray:
        """ln(close) of every position, computed once (forward returns are differences)."""
        if self._logc is None:
            self._logc = np.log(np.asarray(self.close))
        return self._logc

    @property
    def token_counts(self) -> np.ndarray:
        """How many candles carry each token id (length ``radix``), computed once."""
        if self._counts is None:
            self._counts = np.bincount(np.asarray(self.tokens), minlength=self.radix)
        return self._counts

    @property
    def tokens_intp(self) -> np.ndarray:
        """The tokens as numpy's index type, made once: a table lookup with them skips
        the per-call conversion a uint16 index costs (8 bytes a candle)."""
        if self._ti is None:
            self._ti = np.asarray(self.tokens).astype(np.intp)
        return self._ti

    @property
    def token_offsets(self) -> np.ndarray:
        """Run bounds in ``grams`` of the positions whose own (newest) token is t:
        ``grams[off[t]:off[t + 1]]``. The array is sorted by newest token first."""
        return np.concatenate([[0], np.cumsum(self.token_counts)]).astype(np.int64)

    @property
    def pair_offsets(self) -> np.ndarray:
        """Run bounds in ``grams`` of each (newest, previous) token pair, dense over
        ``radix ** 2`` pairs (9 MiB for the default vocabulary), computed once."""
        if self._pairs is None:
            if self.radix**2 > 1 << 24:
                raise DatasetError("The vocabulary is too large for pair runs.")
            pref = (np.asarray(self.grams) >> np.uint64(POS_BITS)) // np.uint64(
                self.radix ** (self.order - 2))
            c = np.bincount(pref.astype(np.int64), minlength=self.radix**2)
            self._pairs = np.concatenate([[0], np.cumsum(c)]).astype(np.int64)
        return self._pairs

    def series_of(self, symbol: str) -> int | None:
        try:
            return self.symbols.index(symbol)
        except ValueError:
            return None

    def suffix_positions(self, suffix: np.ndarray) -> np.ndarray:
        """Every position whose last ``len(suffix)`` tokens (within its series) equal
        ``suffix`` (given oldest first), ascending."""
        q = np.asarray(suffix, dtype=np.int64)
        m = q.size
        head = q[::-1][: min(m, self.order)]
        lo, hi = prefix_bounds(np.array([suffix_value(head, self.radix)]), head.size,
                               self.radix, self.order)
        a = int(np.searchsorted(self.grams, lo[0]))
        b = int(np.searchsorted(self.grams, hi[0]))
        pos = (np.asarray(self.grams[a:b]) & POS_MASK).astype(np.int64)
        if head.size < self.order:
            pos.sort()  # several full keys: each run is in time order, the union is not
        if m > self.order:
            pos = pos[pos - self.starts[self.sid[pos]] >= m - 1]
            for lag in range(self.order, m):
                pos = pos[self.tokens[pos - lag] == q[m - 1 - lag]]
        return pos

    def day_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per bar time: ``times`` (sorted int64) and cumulative sums (5, len) of
        [m, sum z, sum z^2, (sum z)^2, m(m-1)] over times <= each, z = the 1-bar log return in scale
        units. What :func:`candletok.search.timerule.cross_correlation` needs, computed
        once per index (a group-by over every candle)."""
        if self._days is None and self.root is not None:
            self._days = load_days(index_dir(self.root), self.key)
        if self._days is None:
            with np.errstate(divide="ignore", invalid="ignore"):
                z = np.log(np.asarray(self.close) / np.asarray(self.prev_close))
                z = z / np.asarray(self.scale)
            ok = np.isfinite(z)
            df = pl.DataFrame({"ts": np.asarray(self.ts)[ok], "z": z[ok]})
            g = df.group_by("ts").agg(pl.len().alias("m"), pl.col("z").sum().alias("s"),
                                      (pl.col("z") ** 2).sum().alias("q")).sort("ts")
            m = g["m"].to_numpy().astype(np.float64)
            sz = g["s"].to_numpy()
            sums = np.stack([m, sz, g["q"].to_numpy(), sz * sz, m * (m - 1)])
            self._days = (g["ts"].to_numpy().astype(np.int64), np.cumsum(sums, axis=1))
            if self.root is not None:
                save_days(index_dir(self.root), self.key, self._days)
        return self._days

    def tokenizer(self) -> Tokenizer:
        """The vocabulary of the tokens (read from the dataset folder once)."""
        if self._tok is None:
            if self.root is None:
                raise DatasetError("This index was built from arrays without a tokenizer.")
            self._tok = open_dataset(self.root)[1]
        return self._tok


def _bar_arrays(bars: dict[str, np.ndarray] | None, n: int) -> dict[str, np.ndarray]:
    """The stored-bar arrays as float64 of length n, NaN where none were given."""
    out = {}
    for c in BAR_ARRAYS:
        v = None if bars is None else bars.get(c)
        out[c] = np.full(n, np.nan) if v is None else np.asarray(v, dtype=np.float64)
        if out[c].shape != (n,):
            raise DatasetError(f"The {c} array has {out[c].size} values for {n} candles.")
    return out


def read_meta(path: Path) -> dict[str, Any] | None:
    """The index's meta.json, or None when there is no complete index at ``path``."""
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != INDEX_FORMAT:
        return None
    return meta


def read_series(root: Path, out: Path | None = None) -> dict[str, Any]:
    """Every split's rows joined into one series per symbol, as flat arrays.

    Each split is sorted by (symbol, ts) and the splits are consecutive in time, so a
    symbol's series is its runs taken in split order (a few per symbol): the columns are
    read in parallel by one scan (only those the index keeps), and each is laid out by
    copying those runs in series order, one slice per run, never a per-row gather or a
    sort. Time order inside a run is the shard's own (checked by its sha256); only the
    joins between a symbol's runs are checked here."""
    cols = ["symbol", "ts", "token", "prev_close", "scale", "close", *BAR_ARRAYS]
    df, _ = read_rows(root, cols)  # the flat series loader the evaluation harness uses too
    if df.height == 0:
        raise DatasetError(f"{root} holds no candles to search.")
    runs = df["symbol"].rle()
    run_sym = runs.struct.field("value").to_numpy().astype(str)
    run_len = runs.struct.field("len").to_numpy().astype(np.int64)
    run_start = np.cumsum(run_len) - run_len
    order = np.argsort(run_sym, kind="stable")  # runs grouped by symbol, split order kept
    sym_sorted = run_sym[order]
    new = np.ones(sym_sorted.size, dtype=bool)
    new[1:] = sym_sorted[1:] != sym_sorted[:-1]
    symbols = sym_sorted[new].tolist()
    series_len = np.add.reduceat(run_len[order], np.flatnonzero(new)) if new.size else run_len
    starts = np.concatenate([[0], np.cumsum(series_len)]).astype(np.int64)
    lo, hi = run_start[order], run_start[order] + run_len[order]
    identity = bool((order == np.arange(order.size)).all())

    def col(name: str, dtype: Any, saved: str) -> np.ndarray:
        a = df[name].to_physical().to_numpy().astype(dtype, copy=False)
        if out is not None:  # written run by run as laid out, then mapped back
            return _write_runs(out / f"{saved}.npy", a, lo, hi)
        return a if identity else np.concatenate([a[i:j] for i, j in zip(lo, hi, strict=True)])

    ts = col("ts", np.int64, "ts")
    head = np.cumsum(run_len[order]) - run_len[order]  # each run's first row, series order
    later = ~new  # a run that continues its symbol's series: it must start after the last
    if bool((ts[head[later]] <= ts[head[later] - 1]).any()):
        raise DatasetError(f"{root} has a symbol whose bars are not in time order across "
                           "its splits; re-run `candletok encode`.")
    prev = np.zeros(starts[-1])  # only each series' first value is kept (the rest is close)
    first_rows = lo[new]
    prev[starts[:-1]] = df["prev_close"].to_numpy()[first_rows]
    return {"symbols": symbols, "starts": starts, "tokens": col("token", np.uint16, "tokens"),
            "ts": ts, "close": col("close", np.float64, "close"), "prev_close": prev,
            "scale": col("scale", np.float64, "scale"),
            "bars": {c: col(c, np.float64, c) for c in BAR_ARRAYS}}


def _write_runs(path: Path, a: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Write ``a[lo[i]:hi[i]]`` for every i, in order, as one .npy file, and map it back:
    the series layout is made by the write itself (no second copy in memory)."""
    n = int((hi - lo).sum())
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": np.lib.format.dtype_to_descr(
            a.dtype), "fortran_order": False, "shape": (n,)})
        for i, j in zip(lo.tolist(), hi.tolist(), strict=True):
            fh.write(memoryview(a[i:j]))
    return np.load(path, mmap_mode="r")


def _shard_stats(root: Path, manifest: dict[str, Any]) -> dict[str, list[int]]:
    """(size, mtime_ns) of every shard: a cheap way to notice a shard edited in place."""
    try:
        return {s["path"]: shard_stat(root / s["path"]) for split in SPLITS
                for s in manifest["splits"].get(split, {}).get("shards", [])}
    except FileNotFoundError as exc:
        raise DatasetError(f"Shard {exc.filename} is missing; re-run `candletok encode`.") \
            from exc


def _shards_unchanged(root: Path, manifest: dict[str, Any], meta: dict[str, Any]) -> bool:
    """True when every shard has the size and mtime it had at build time. A shard that
    changed is hashed: if it no longer matches the manifest the dataset itself is corrupt
    (one clear error); if it still matches (only touched), the index stays valid."""
    recorded = meta.get("shard_stats") or {}
    now = _shard_stats(root, manifest)
    sha = {s["path"]: s["sha256"] for split in SPLITS
           for s in manifest["splits"].get(split, {}).get("shards", [])}
    for path, st in now.items():
        if recorded.get(path) != st and sha256_file(root / path) != sha[path]:
            raise DatasetError(
                f"Shard {root / path} changed since the manifest was written (its sha256 "
                "no longer matches); re-run `candletok encode`."
            )
    return True


def open_index(root: str | Path, rebuild: bool | None = None) -> SearchIndex:
    """The search index of dataset ``root``: loaded when it matches the manifest, built
    (and saved beside the shards) when it is missing or stale.

    ``rebuild=True`` always rebuilds; ``rebuild=False`` never does and raises instead when
    the saved index is missing or does not match; ``None`` (default) rebuilds as needed."""
    root = Path(root)
    manifest = read_manifest(root)
    path = index_dir(root)
    meta = read_meta(path)
    fresh = meta is not None and meta.get("key") == dataset_key(manifest)
    if fresh and rebuild is not True and meta is not None and \
            _shards_unchanged(root, manifest, meta):
        try:
            return SearchIndex.load(path, manifest)
        except (OSError, ValueError) as exc:  # a damaged or incomplete saved index
            if rebuild is False:
                raise DatasetError(f"The search index in {path} is damaged ({exc}); pass "
                                   "rebuild=True to build it again.") from exc
            log.warning("the search index in %s is damaged (%s); rebuilding it", path, exc)
    if rebuild is False:
        what = "no search index" if meta is None else "a search index built from other data"
        raise DatasetError(f"{root} has {what}; pass rebuild=True to build it.")
    try:  # the columns are written into the new folder as the build lays them out
        tmp = temp_dir_beside(path, ".partial")
    except OSError as exc:  # a read-only dataset still answers, it only rebuilds each time
        log.warning("could not save the search index in %s (%s); using it from memory",
                    path, exc)
        return SearchIndex.build(root)
    try:
        # shards an index of this same manifest verified, unchanged since: not re-hashed
        verified = (meta or {}).get("shard_stats") if fresh else None
        stats = _shard_stats(root, manifest)  # taken before the read the build verifies
        idx = SearchIndex.build(root, tmp, verified)
        idx.save(path, stats, tmp=tmp)
    except OSError as exc:
        log.warning("could not save the search index in %s (%s); using it from memory",
                    path, exc)
        idx = SearchIndex.build(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("built the search index of %s: %d candles in %.2fs", root, idx.n,
             idx.build_seconds)
    return idx


def candle_token_mask(radix: int) -> np.ndarray:
    """True for candle tokens (not PAD/BOS/EOS/MISSING) among ids 0..radix-1."""
    m = np.ones(radix, dtype=bool)
    m[:N_SPECIAL] = False
    return m
