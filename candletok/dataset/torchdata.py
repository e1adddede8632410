"""Torch datasets over a token dataset folder (see :mod:`candletok.dataset.manifest`).

``TokenDataset`` is map-style: item i is ``(x, y)``, two int64 tensors of ``context`` tokens
with ``y`` = ``x`` shifted by one. Each series (one symbol's candles in one split) starts
with BOS and windows never cross from one series into another. A series is cut into
windows of ``context`` targets; the last window is aligned to the series end, and the
targets it shares with the window before are masked (-1) so that every candle is a target
exactly once — which makes ``bits per candle`` over a loader an exact figure. A series
shorter than the context is padded (inputs PAD, targets -1).

The token arrays are memory-mapped ``.npy`` files, so DataLoader workers share pages
instead of copying the data; pickling drops the map and each worker reopens it.

With ``calendar`` (a :class:`~candletok.tokenize.calendar.CalendarSpec`) items are
``(x, y, cal)``: ``cal`` (context, n_fields) the calendar ids of each input position,
computed once per split from the shards' ``ts`` column (:meth:`TokenDataset.calendar_ids`)
and kept in memory; BOS and PAD positions hold the unknown ids.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from candletok.core.errors import DatasetError
from candletok.core.ids import IGNORE_INDEX, PAD, normalize_split, series_bounds, with_bos
from candletok.dataset.manifest import (
    INDEX_DIR,
    check_series_bounds,
    open_dataset,
    read_split,
    split_meta,
    verify_dataset,
)
from candletok.tokenize.base import Tokenizer
from candletok.tokenize.calendar import CalendarSpec, calendar_layout
from candletok.tokenize.levels import level_inputs

"""Target id of padded or already-counted positions; use ``ignore_index=-1`` in the loss."""


def window_index(bounds: np.ndarray, context: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorized window layout: for each window its start in the token array, the end of
    its series, and how many leading targets it must mask because an earlier window of the
    same series already counted them.

    ``bounds`` is (n_series, 2): [start, end) of each series in the token array, the start
    holding its BOS."""
    if context < 1:
        raise DatasetError("context must be at least 1.")
    if bounds.size == 0:
        z = np.zeros(0, np.int64)
        return z, z, z
    a, b = bounds[:, 0].astype(np.int64), bounds[:, 1].astype(np.int64)
    targets = b - a - 1  # candles per series
    nwin = np.maximum(1, -(-targets // context))  # ceil, at least one window
    series_of = np.repeat(np.arange(a.size), nwin)
    first = np.cumsum(nwin) - nwin
    j = np.arange(series_of.size) - np.repeat(first, nwin)
    last_start = np.maximum(0, targets - context)
    offset = np.minimum(j * context, last_start[series_of])
    start = a[series_of] + offset
    # Targets of window j are offsets offset+1 .. offset+context; the window before covered
    # up to (j-1)*context + context = j*context.
    skip = np.where(j > 0, np.maximum(0, j * context - offset), 0)
    return start, b[series_of], skip


def window_calendar(cal: np.ndarray, starts: np.ndarray, x: np.ndarray,
                    spec: CalendarSpec) -> np.ndarray:
    """(B, context, n_fields) int64 calendar ids of windows whose first input is the flat
    position ``starts`` (B,), from the split's flat ids ``cal`` (:func:`calendar_layout`):
    a window is a contiguous slice of the flat layout, so input k is position
    ``starts + k``; padded inputs (``x == PAD``) get the unknown ids."""
    pos = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(x.shape[1])[None, :]
    ids = np.asarray(cal[np.minimum(pos, cal.shape[0] - 1)], dtype=np.int64)
    return np.where((x == PAD)[..., None], spec.unknown[None, None, :], ids)


def level_layout(lv: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(n_tokens, levels) float32 level inputs (:func:`level_inputs`, one row per candle)
    laid out like the token arrays: each series' BOS row is zeros."""
    lens = np.asarray(lengths, dtype=np.int64).reshape(-1)
    bounds = series_bounds(lens)
    out = np.zeros((int(bounds[-1, 1]) if lens.size else 0, lv.shape[1]), dtype=np.float32)
    real = np.ones(out.shape[0], bool)
    real[bounds[:, 0]] = False
    out[real] = lv
    return out


def window_levels(lv: np.ndarray, starts: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(B, context, levels) float32 level inputs of windows whose first input is the flat
    position ``starts`` (B,), from the split's flat rows ``lv`` (:func:`level_layout`);
    padded inputs get zeros (as :func:`window_calendar` lays out the ids)."""
    pos = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(x.shape[1])[None, :]
    rows = np.asarray(lv[np.minimum(pos, lv.shape[0] - 1)], dtype=np.float32)
    return np.where((x == PAD)[..., None], np.float32(0.0), rows)


class TokenDataset(Dataset):
    """Map-style dataset of ``(x, y)`` windows over one split of a token dataset."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        context: int = 128,
        vocab: str | Path | Tokenizer | None = None,
        verify: bool = True,
        calendar: CalendarSpec | None = None,
        levels: bool = False,
    ) -> None:
        self.root = Path(root)
        self.calendar = calendar  # items are (x, y, cal) when set
        self.levels = bool(levels)  # items end with the level inputs lv when set
        self._lv: np.ndarray | None = None
        self._cal: dict[CalendarSpec, np.ndarray] = {}
        self.split = split = normalize_split(split)  # "validation" (Hugging Face) is "val"
        self.context = int(context)
        manifest, tok = open_dataset(self.root, vocab)
        meta = split_meta(manifest, split)
        self.fingerprint: str = tok.fingerprint
        self.vocab_size: int = tok.vocab_size
        self.scheme: str = tok.scheme
        self.pad_id, self.bos_id = tok.PAD, tok.BOS
        self.symbols: list[str] = list(meta["symbols"])
        self.interval: str | None = manifest.get("interval")  # bar interval, e.g. "1d"
        self._tokens_path = self.root / INDEX_DIR / f"{split}.tokens.npy"
        if verify:  # shards and both _index arrays against the manifest's checksums
            verify_dataset(self.root, [split])
        self._tokens: np.ndarray | None = None
        if self._tokens_path.exists():
            series_path = self.root / INDEX_DIR / f"{split}.series.npy"
            try:
                self.bounds = np.load(series_path, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise DatasetError(f"{series_path} is unreadable ({exc}); re-run "
                                   "`candletok encode`.") from exc
            # cheap even unverified (a header and one token per series): windows must
            # never cross from one symbol into the next
            check_series_bounds(self.bounds, self.tokens, len(self.symbols), series_path)
        else:  # a folder written by another tool: rebuild the arrays in memory
            rows = read_split(self.root, split)
            lens = rows.group_by("symbol", maintain_order=True).len()["len"].to_numpy()
            self._tokens, self.bounds = with_bos(rows["token"].to_numpy(), lens)
        self.starts, self.ends, self.skips = window_index(self.bounds, self.context)

    # -- data access ---------------------------------------------------------------------
    @property
    def tokens(self) -> np.ndarray:
        """The split's token array (memory-mapped; opened lazily in each process)."""
        if self._tokens is None:
            try:
                self._tokens = np.load(self._tokens_path, mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise DatasetError(f"{self._tokens_path} is unreadable ({exc}).") from exc
        return self._tokens

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self._tokens_path.exists():
            state["_tokens"] = None  # never pickle the mapped data; reopen in the worker
        return state

    def __len__(self) -> int:
        return int(self.starts.size)

    def calendar_ids(self, spec: CalendarSpec) -> np.ndarray:
        """(len(tokens), n_fields) int16 calendar ids of every position of the token array
        (BOS: unknown), from the shards' ``ts`` column; computed once per spec, then kept."""
        if spec not in self._cal:
            ts = _split_times(self.root, self.split)
            lens = self.bounds[:, 1] - self.bounds[:, 0] - 1
            if ts.len() != int(lens.sum()):
                raise DatasetError(f"The {self.split} shards hold {ts.len()} rows but its token "
                                   f"index {int(lens.sum())} candles; re-run `candletok encode`.")
            self._cal[spec] = calendar_layout(ts, lens, spec)
        return self._cal[spec]

    def level_inputs(self) -> np.ndarray:
        """(len(tokens), levels) float32 level inputs of every position of the token array
        (BOS: zeros), from the shards' ``high, low, prev_close, scale`` columns
        (:func:`candletok.tokenize.levels.level_inputs`); computed once, then kept."""
        if self._lv is None:
            cols = _split_columns(self.root, self.split, ("high", "low", "prev_close", "scale"))
            lens = self.bounds[:, 1] - self.bounds[:, 0] - 1
            if cols.height != int(lens.sum()):
                raise DatasetError(f"The {self.split} shards hold {cols.height} rows but its "
                                   f"token index {int(lens.sum())} candles; re-run "
                                   "`candletok encode`.")
            lv = level_inputs(*(cols[c].to_numpy() for c in cols.columns), lens)
            self._lv = level_layout(lv, lens)
        return self._lv

    def window(self, i: int) -> tuple[np.ndarray, ...]:
        """Window i as int64 numpy arrays ``(x, y)`` (``(x, y, cal)`` with a calendar),
        then the float32 level inputs when the dataset serves them."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"window {i} out of range for {len(self)} windows")
        i = i % len(self)
        s, e, k = int(self.starts[i]), int(self.ends[i]), int(self.skips[i])
        c = self.context
        chunk = np.asarray(self.tokens[s : min(e, s + c + 1)], dtype=np.int64)
        n = chunk.size - 1  # real targets in this window
        x = np.full(c, self.pad_id, np.int64)
        y = np.full(c, IGNORE_INDEX, np.int64)
        x[:n] = chunk[:-1]
        y[:n] = chunk[1:]
        y[:k] = IGNORE_INDEX
        out: tuple[np.ndarray, ...] = (x, y)
        if self.calendar is not None:
            out += (window_calendar(self.calendar_ids(self.calendar), np.array([s]), x[None],
                                    self.calendar)[0],)
        if self.levels:
            out += (window_levels(self.level_inputs(), np.array([s]), x[None])[0],)
        return out

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        return tuple(torch.from_numpy(a) for a in self.window(i))

    def batch(self, indices: np.ndarray | list[int]) -> tuple[np.ndarray, ...]:
        """Many windows at once, vectorized: ``(X, Y)`` int64 arrays of shape (B, context)
        (and ``CAL`` (B, context, n_fields) with a calendar).

        Same content as stacking :meth:`window` (one fancy-indexed read of the memory map
        instead of B Python calls) — the fast path for training loops and DataLoaders."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"window index out of range for {len(self)} windows")
        idx = idx % max(len(self), 1)
        c = self.context
        s, e, k = self.starts[idx], self.ends[idx], self.skips[idx]
        pos = s[:, None] + np.arange(c + 1)[None, :]  # (B, c+1)
        valid = pos < e[:, None]
        chunk = np.asarray(self.tokens[np.minimum(pos, e[:, None] - 1)], dtype=np.int64)
        x = np.where(valid[:, 1:], chunk[:, :-1], self.pad_id)  # input only where a target follows
        tvalid = valid[:, 1:] & (np.arange(c)[None, :] >= k[:, None])
        y = np.where(tvalid, chunk[:, 1:], IGNORE_INDEX)
        out: tuple[np.ndarray, ...] = (x, y)
        if self.calendar is not None:
            out += (window_calendar(self.calendar_ids(self.calendar), s, x, self.calendar),)
        if self.levels:
            out += (window_levels(self.level_inputs(), s, x),)
        return out

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, ...]]:
        """Batched fetch used by ``DataLoader`` (torch calls it instead of B ``__getitem__``)."""
        arrays = [torch.from_numpy(a) for a in self.batch(indices)]
        return list(zip(*arrays, strict=True))

    # -- helpers for baselines and evaluation ----------------------------------------------
    def series(self) -> list[np.ndarray]:
        """Candle tokens of each series (no BOS), in manifest order."""
        t = self.tokens
        return [np.asarray(t[a + 1 : b], dtype=np.int64) for a, b in self.bounds]

    def n_targets(self) -> int:
        """Candles that are targets in this split (each counted once over all windows)."""
        return int((self.bounds[:, 1] - self.bounds[:, 0] - 1).sum())

    def tokenizer(self) -> Tokenizer:
        return open_dataset(self.root)[1]


def _split_columns(root: Path, split: str, columns: tuple[str, ...]) -> pl.DataFrame:
    """``columns`` of a split's shards, in row (and token index) order."""
    shards = split_meta(open_dataset(root)[0], split)["shards"]
    frames = [pl.read_parquet(root / sh["path"], columns=list(columns)) for sh in shards]
    return pl.concat(frames) if frames else pl.DataFrame(
        {c: pl.Series(c, [], dtype=pl.Float64) for c in columns})


def _split_times(root: Path, split: str) -> pl.Series:
    """The ``ts`` column of a split's shards, in row (and token index) order; only that
    column is read (the shards were verified when the split was opened)."""
    shards = split_meta(open_dataset(root)[0], split)["shards"]
    frames = [pl.read_parquet(root / sh["path"], columns=["ts"]) for sh in shards]
    if not frames:
        return pl.Series("ts", [], dtype=pl.Datetime("us", "UTC"))
    return pl.concat(frames)["ts"]


class TokenStream(IterableDataset):
    """Streaming view of the same windows, split across DataLoader workers *and*
    ``torch.distributed`` ranks.

    Windows are cut into contiguous blocks (``block`` windows each, which keeps reads
    sequential in the memory-mapped array) and the blocks put in a seeded order each
    epoch. With ``even`` (the default) that sequence is cut into ``world_size *
    num_workers`` equal, contiguous shares: every (rank, worker) pair yields exactly
    ``ceil(windows / consumers)`` windows, the last share wrapping round to the start for
    the few it lacks, so no rank waits for another at the end of an epoch (distributed
    training needs equal step counts). ``even=False`` deals the blocks round-robin
    instead: every window exactly once per epoch over all consumers, shares differing by
    up to a block. Each consumer passes its windows through a shuffle buffer of
    ``shuffle_buffer`` windows (0: no shuffling). Call :meth:`set_epoch` between epochs.

    Each consumer reads only the pages of its own windows. Checksums would read the whole
    split on every node, so the stream checks only that the token index has the length
    the manifest gives (``verify=True`` checks every checksum; ``candletok inspect`` does
    it once for a folder).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        context: int = 128,
        shuffle_buffer: int = 0,
        seed: int = 0,
        block: int = 256,
        rank: int | None = None,
        world_size: int | None = None,
        vocab: str | Path | Tokenizer | None = None,
        even: bool = True,
        verify: bool = False,
        calendar: CalendarSpec | None = None,
    ) -> None:
        self.ds = TokenDataset(root, split, context, vocab=vocab, verify=verify,
                               calendar=calendar)
        self.shuffle_buffer = int(shuffle_buffer)
        self.seed = int(seed)
        self.block = max(1, int(block))
        self.even = bool(even)
        self.epoch = 0
        self._rank, self._world = rank, world_size
        self.vocab_size, self.fingerprint = self.ds.vocab_size, self.ds.fingerprint
        if not verify:
            self._check_length()

    def _check_length(self) -> None:
        """The token index holds one BOS per series plus one token per row: a header read."""
        path = self.ds._tokens_path
        if not path.exists():
            return
        meta = split_meta(open_dataset(self.ds.root)[0], self.ds.split)
        want = int(meta["rows"]) + len(meta["symbols"])
        if self.ds.tokens.shape[0] != want:
            raise DatasetError(
                f"{path} holds {self.ds.tokens.shape[0]} tokens where the manifest implies "
                f"{want}; the folder is damaged, re-run `candletok encode`."
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _consumer(self) -> tuple[int, int]:
        rank, world = self._rank, self._world
        if rank is None or world is None:
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
            else:
                rank, world = 0, 1
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        return rank * nw + wid, world * nw

    def window_ids(self) -> np.ndarray:
        """The window indices this consumer yields this epoch, before buffer shuffling."""
        cid, n = self._consumer()
        total = len(self.ds)
        if total == 0:
            return np.zeros(0, np.int64)
        nblocks = math.ceil(total / self.block)
        order = np.random.default_rng((self.seed, self.epoch)).permutation(nblocks)
        if not self.even:
            mine = order[cid::n]
            ids = (mine[:, None] * self.block + np.arange(self.block)[None, :]).ravel()
            return ids[ids < total]
        # Positions cid*per .. (cid+1)*per - 1 of the sequence of windows in block order
        # (wrapped), mapped back to window ids without building the whole sequence.
        per = -(-total // n)
        sizes = np.full(nblocks, self.block, np.int64)
        sizes[-1] = total - self.block * (nblocks - 1)
        ends = np.cumsum(sizes[order])
        pos = np.arange(cid * per, (cid + 1) * per, dtype=np.int64) % total
        k = np.searchsorted(ends, pos, side="right")
        return order[k] * self.block + pos - (ends[k] - sizes[order[k]])

    def __len__(self) -> int:
        return len(self.ds)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        ids = self.window_ids()
        if self.shuffle_buffer <= 1:
            for i in ids:
                yield self.ds[int(i)]
            return
        cid, _ = self._consumer()
        rng = np.random.default_rng((self.seed, self.epoch, cid))
        buf: list[int] = []
        for i in ids:
            buf.append(int(i))
            if len(buf) >= self.shuffle_buffer:
                j = int(rng.integers(len(buf)))
                buf[j], buf[-1] = buf[-1], buf[j]
                yield self.ds[buf.pop()]
        rng.shuffle(buf)
        for i in buf:
            yield self.ds[i]
