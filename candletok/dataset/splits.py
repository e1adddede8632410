"""The time split of a dataset: where val and test begin, and the one rule that puts a bar
in its split. Every engine and the evaluation harness cut by these, so a bar is in the
same split wherever it is read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import polars as pl

from candletok.core.errors import CandletokError
from candletok.core.ids import SPLITS


@dataclass
class Cuts:
    """Where val and test begin (aware UTC datetimes), and the one rule that puts a bar
    in its split: test from ``test_from`` on, val from ``val_from`` until then, train
    before (codes 0, 1, 2: the indices of :data:`~candletok.core.ids.SPLITS`)."""

    val_from: datetime
    test_from: datetime

    def split_expr(self, ts: pl.Expr | None = None) -> pl.Expr:
        """The split code of every bar time ``ts`` (default the ``ts`` column), in Polars."""
        ts = pl.col("ts") if ts is None else ts
        return pl.when(ts >= pl.lit(self.test_from)).then(2).when(
            ts >= pl.lit(self.val_from)).then(1).otherwise(0)

    def split_of(self, ts: pl.Series) -> np.ndarray:
        """The split code (int8) of every bar time in ``ts``, as numpy."""
        is_test = (ts >= self.test_from).to_numpy()
        is_val = (ts >= self.val_from).to_numpy()
        return np.where(is_test, 2, np.where(is_val, 1, 0)).astype(np.int8)


def split_boundaries(
    ts_min: datetime,
    ts_max: datetime,
    val_from: datetime | None = None,
    test_from: datetime | None = None,
    val_frac: float = 0.1,
    test_frac: float = 0.1,
    bar_times: np.ndarray | None = None,
) -> tuple[datetime, datetime]:
    """Cut dates of the time split: by default the last 10% of the pooled time range is test
    and the 10% before it is val. Explicit dates win; they must be ordered.

    With ``bar_times`` (sorted unique bar open times, int64 microseconds UTC) a default cut
    moves forward to the first bar at or after it, so it never falls between two bars."""
    span = ts_max - ts_min
    if test_from is None:
        test_from = _snap(ts_max - span * test_frac, bar_times)
    if val_from is None:
        val_from = _snap(test_from - span * val_frac, bar_times)
    if val_from > test_from:
        raise CandletokError(
            f"val_from ({val_from.date()}) must not be after test_from ({test_from.date()})."
        )
    return val_from, test_from


def _snap(t: datetime, bar_times: np.ndarray | None) -> datetime:
    if bar_times is None or bar_times.size == 0:
        return t
    us = int((t - datetime(1970, 1, 1, tzinfo=timezone.utc)).total_seconds() * 1_000_000)
    i = int(np.searchsorted(bar_times, us, side="left"))
    if i >= bar_times.size:
        return t
    return datetime.fromtimestamp(int(bar_times[i]) / 1_000_000, tz=timezone.utc)


def expected_split_rows(bars: pl.DataFrame | pl.LazyFrame, cuts: Cuts) -> dict[str, int]:
    """The token rows each split will get from ``bars`` (sorted by (symbol, ts)): its bars
    less each series' first, which only anchors the next candle. Known before anything is
    encoded, so shard counts can be chosen in advance (see
    :func:`candletok.dataset.writer.shard_sizes`)."""
    split = cuts.split_expr()
    first = pl.col("symbol").rle_id().diff().fill_null(1) != 0
    got = (bars.lazy().filter(~first).select(split.alias("split"))
           .group_by("split").len().collect())
    n = dict(zip(got["split"].to_list(), got["len"].to_list(), strict=True))
    return {s: int(n.get(i, 0)) for i, s in enumerate(SPLITS)}
