"""``sample``: the bundled daily bars (2000-2013, a few liquid stocks; see
``candletok sample``), offline and clean by construction, so only checked."""

from __future__ import annotations

import polars as pl

from candletok.core.errors import SourceError
from candletok.data.clean import finish
from candletok.data.feeds.base import LoadRequest, Source, register_source
from candletok.data.sample import load_sample


@register_source
class Sample(Source):
    name = "sample"
    help = "the bundled daily bars, offline"
    rank = 2

    def load(self, req: LoadRequest) -> pl.DataFrame:
        if req.interval != "1d":
            raise SourceError(
                f"The bundled sample holds daily bars only, not {req.interval}; use "
                "interval='1d' or source='synthetic'.")
        df = load_sample(req.symbols)
        return finish(df, repair=False, what="the bundled sample", start=req.start,
                      end=req.end)
