"""Training windows and the learning-rate schedule: pure functions of (seed, step), so a
resumed or distributed run draws exactly the batches a single straight run would."""

from __future__ import annotations

import math

import numpy as np

from candletok.core.errors import ModelError
from candletok.core.ids import IGNORE_INDEX, PAD
from candletok.dataset.torchdata import window_calendar, window_levels
from candletok.model.config import TrainConfig
from candletok.model.split import SplitSource
from candletok.tokenize.calendar import CalendarSpec


class WindowSampler:
    """Random training windows of ``context`` inputs, a pure function of
    ``(seed, step, rank)``.

    A window may start at any token of a series (BOS included) such that its ``context + 1``
    tokens stay inside the series; series shorter than that give one padded window. Series
    are weighted by how many windows they hold, so every start is equally likely. With
    ``calendar`` the batches are ``(x, y, cal)``, ``cal`` the calendar ids of each input
    (:meth:`SplitSource.calendar_ids`); with ``levels`` the level inputs of each input
    (:meth:`SplitSource.level_inputs`) come last."""

    def __init__(self, ds: SplitSource, context: int,
                 calendar: CalendarSpec | None = None, levels: bool = False) -> None:
        self.tokens = ds.tokens
        self.lv = ds.level_inputs() if levels else None
        self.calendar = calendar
        self.cal = None if calendar is None else ds.calendar_ids(calendar)
        if calendar is not None and self.cal is None:
            raise ModelError("The training split has no timestamps for calendar inputs; "
                             "train with calendar='off'.")
        bounds = np.asarray(ds.bounds, dtype=np.int64).reshape(-1, 2)
        bounds = bounds[(bounds[:, 1] - bounds[:, 0]) >= 2]  # series with >= 1 candle
        self.a, self.b = bounds[:, 0], bounds[:, 1]
        self.context = int(context)
        n_starts = np.maximum(1, (self.b - self.a) - self.context)
        self.cum = np.cumsum(n_starts)
        self.first = self.cum - n_starts  # first global start number of each series
        if self.cum.size == 0:
            raise ModelError("The training split holds no candles; encode more data first.")

    def batch(self, seed: int, step: int, size: int, rank: int = 0,
              world_size: int = 1) -> tuple[np.ndarray, ...]:
        """``(x, y)`` int64 arrays (size / world_size, context); padded inputs PAD, padded
        targets -1 (and ``cal`` (size / world_size, context, n_fields) with a calendar).

        ``size`` is the global batch: its window starts are drawn from the seed
        ``(seed, step)`` and rank ``r`` of ``world_size`` reads only its contiguous share,
        rows ``[r * size / world_size, (r + 1) * size / world_size)``. So the ranks'
        batches laid end to end are exactly the single-process batch of the same step (a
        DDP run follows the one-process run), drawing the starts costs a few integers,
        and no rank reads another's windows."""
        if world_size < 1 or not 0 <= rank < world_size or size % world_size:
            raise ModelError(f"A batch of {size} windows cannot be split evenly between "
                             f"{world_size} processes (rank {rank}); give a batch size that "
                             "is a multiple of the number of processes.")
        share = size // world_size
        rng = np.random.default_rng((int(seed), int(step)))
        u = rng.integers(0, int(self.cum[-1]), size=size)[rank * share:(rank + 1) * share]
        s = np.searchsorted(self.cum, u, side="right")
        start = self.a[s] + (u - self.first[s])
        c = self.context
        pos = start[:, None] + np.arange(c + 1)[None, :]
        end = self.b[s][:, None]
        valid = pos < end
        chunk = np.asarray(self.tokens[np.minimum(pos, end - 1)], dtype=np.int64)
        x = np.where(valid[:, 1:], chunk[:, :-1], PAD)  # an input only where it has a target
        y = np.where(valid[:, 1:], chunk[:, 1:], IGNORE_INDEX)
        out: tuple[np.ndarray, ...] = (x, y)
        if self.calendar is not None and self.cal is not None:
            out += (window_calendar(self.cal, start, x, self.calendar),)
        if self.lv is not None:
            out += (window_levels(self.lv, start, x),)
        return out


def count_candles(ds: SplitSource) -> int:
    """Candles in a split (its series' lengths, the BOS before each not counted)."""
    b = np.asarray(ds.bounds, dtype=np.int64).reshape(-1, 2)
    return int((b[:, 1] - b[:, 0] - 1).sum())


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``lr`` over ``warmup_steps``, then cosine decay to
    ``lr * min_lr_ratio`` at ``steps``."""
    steps = cfg.total_steps
    min_lr = cfg.lr * cfg.min_lr_ratio
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if step >= steps:
        return min_lr
    ratio = (step - cfg.warmup_steps) / max(1, steps - cfg.warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.lr - min_lr)
