"""``auto``: the cache, then Yahoo Finance, then the bundled sample when Yahoo cannot be
reached (said once, as a warning) and the sample holds what was asked."""

from __future__ import annotations

import polars as pl

from candletok.core.errors import SourceError
from candletok.data.feeds.base import SOURCE_HINT, LoadRequest, Source, get_source, register_source
from candletok.data.feeds.yahoo import download
from candletok.data.sample import sample_symbols
from candletok.data.yahoo import YahooUnreachable


@register_source
class Auto(Source):
    name = "auto"
    help = "the cache, then Yahoo, then the bundled sample offline"
    rank = 0

    def load(self, req: LoadRequest) -> pl.DataFrame:
        from candletok.data import sources  # its once-per-process warning

        try:
            return download(req)
        except YahooUnreachable as exc:
            missing = [s for s in req.symbols if s not in set(sample_symbols())]
            if missing or req.interval != "1d":
                why = (
                    f"{', '.join(missing)} not in the bundled sample" if missing
                    else "the bundled sample holds daily bars only"
                )
                raise SourceError(
                    f"Yahoo Finance could not be reached ({exc.reason}) and {why}; "
                    f"{SOURCE_HINT}."
                ) from exc
            sources._say(
                f"Yahoo Finance unreachable ({exc.reason}); using the bundled sample "
                "(daily bars 2000-2013) instead."
            )
            return get_source("sample").load(req)
