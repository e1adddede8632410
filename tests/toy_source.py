"""A toy data source in one file, registered from here: a deterministic zig-zag of daily
bars for any symbol (each symbol its own phase), offline."""

from __future__ import annotations

import zlib

import numpy as np
import polars as pl

from candletok.data.clean import finish
from candletok.data.feeds import LoadRequest, Source, register_source

N_BARS = 400


@register_source
class ToySource(Source):
    name = "toy"
    help = "a test's zig-zag bars"

    def load(self, req: LoadRequest) -> pl.DataFrame:
        frames = []
        for sym in req.symbols:
            i = np.arange(N_BARS)
            phase = zlib.crc32(sym.encode()) % 7
            step = 0.01 * np.sin((i + phase) * 0.9) + 0.004 * np.cos((i + phase) * 2.3)
            close = 100.0 * np.exp(np.cumsum(step))
            open_ = np.concatenate([[100.0], close[:-1]])
            high = np.maximum(open_, close) * 1.004
            low = np.minimum(open_, close) * 0.996
            ts = pl.datetime_range(pl.datetime(2001, 1, 1), pl.datetime(2001, 1, 1)
                                   + pl.duration(days=N_BARS - 1), "1d", time_zone="UTC",
                                   eager=True).dt.cast_time_unit("us")
            frames.append(pl.DataFrame({"symbol": sym, "ts": ts, "open": open_, "high": high,
                                        "low": low, "close": close,
                                        "volume": np.full(N_BARS, 1e6)}))
        return finish(pl.concat(frames), repair=req.repair, what="the toy source",
                      start=req.start, end=req.end)
