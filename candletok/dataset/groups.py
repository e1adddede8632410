"""The symbol groups of a build: how symbols are grouped, loaded (a failing group symbol by
symbol), checked (single-bar symbols, the interval the bars show) and recognised as
already sorted. Shared by the local build and the Ray engine, so both treat bars alike."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import polars as pl

from candletok.core.errors import CandletokError
from candletok.core.times import IntervalError, bar_spacings, check_interval, interval_of_spacings


def symbol_groups(symbols: Sequence[str], group_size: int) -> list[list[str]]:
    """The symbol groups of a build, in order: every engine loads and encodes the same
    groups, so their rows reach the shard writers in the same order."""
    syms = list(symbols)
    return [syms[i : i + group_size] for i in range(0, len(syms), group_size)]


def is_sorted_by_symbol_ts(bars: pl.DataFrame) -> bool:
    """True when ``bars`` is already sorted by (symbol, ts) with no repeated (symbol, ts):
    then ``sort("symbol", "ts")`` could only return the same rows in the same order, and
    the O(n log n) string sort can be skipped. Checked in O(n)."""
    sym, ts = bars["symbol"], bars["ts"]
    if bars.height < 2:
        return True
    if sym.null_count() or ts.null_count() or not sym.is_sorted():
        return False
    lengths = sym.rle().struct.field("len").to_numpy()
    step = np.diff(ts.to_physical().to_numpy())
    ok = step > 0
    ok[np.cumsum(lengths)[:-1] - 1] = True  # a new symbol may restart its timestamps
    return bool(ok.all())


def load_group(
    group: list[str], loader: Callable[..., pl.DataFrame], errors: dict[str, str],
    strict: bool, **kw: Any,
) -> list[pl.DataFrame]:
    """Load one group at once, or symbol by symbol when the group fails."""
    frames: list[pl.DataFrame] = []
    try:
        frames.append(loader(group, **kw))
    except IntervalError:  # the command's interval is wrong, not one symbol
        raise
    except CandletokError as exc:
        if strict or len(group) == 1:
            if strict:
                raise
            errors[group[0]] = str(exc)
        else:
            for sym in group:
                try:
                    frames.append(loader([sym], **kw))
                except IntervalError:
                    raise
                except CandletokError as sub:
                    errors[sym] = str(sub)
    return [f for f in frames if f.height]


def drop_lone_symbols(bars: pl.DataFrame, errors: dict[str, str]) -> pl.DataFrame:
    """``bars`` without the symbols that have a single bar, each noted in ``errors``: a
    candle is measured against the bar before it, so one bar gives no token, and such a
    symbol must not be listed in the manifest as if the dataset held it."""
    lone = bars.group_by("symbol").len().filter(pl.col("len") < 2)["symbol"]
    if lone.len() == 0:
        return bars
    for sym in lone.sort().to_list():  # one step per such symbol, not per bar
        errors[sym] = ("only 1 bar was loaded, and a candle needs the bar before it, so it "
                       "has no tokens; load a longer range (start=, end=).")
    return bars.filter(~pl.col("symbol").is_in(lone.implode()))


def group_interval(bars: pl.DataFrame) -> str | None:
    """The interval one group's bars show (the most common step between a symbol's
    bars, see :func:`candletok.core.times.infer_interval`); None when no symbol has two."""
    return interval_of_spacings(bar_spacings(bars["ts"], bars["symbol"]))


def resolve_interval(asked: str | None, found: dict[str, str]) -> str:
    """The interval a dataset records: the one its bars show (``found``: interval -> a
    symbol showing it). An asked interval that contradicts them, bars of several
    intervals, or bars too short to tell without one asked, are refused in one sentence."""
    if len(found) > 1:
        mixed = ", ".join(f"{sym} {iv}" for iv, sym in found.items())
        raise IntervalError(f"The bars mix intervals ({mixed}); encode each interval into "
                            "its own dataset.")
    got = check_interval(asked, next(iter(found), None), "the loaded bars")
    if got is None:
        raise IntervalError("The interval of the bars cannot be told (no symbol has two "
                            "bars); pass interval=.")
    return got
