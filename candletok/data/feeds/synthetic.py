"""``synthetic``: seeded generated bars of any interval (``seed``, ``n_bars``), offline;
clean by construction, so only checked."""

from __future__ import annotations

import polars as pl

from candletok.data.bars import validate_bars
from candletok.data.feeds.base import LoadRequest, Source, register_source
from candletok.data.synthetic import synthetic_bars


@register_source
class Synthetic(Source):
    name = "synthetic"
    help = "seeded generated bars, offline"
    rank = 3

    def load(self, req: LoadRequest) -> pl.DataFrame:
        df = synthetic_bars(req.symbols, n_bars=req.n_bars, interval=req.interval,
                            seed=req.seed, start=req.start, end=req.end)
        return validate_bars(df, "strict")
