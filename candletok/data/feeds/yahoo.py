"""``yahoo``: Yahoo Finance through yfinance, cached on disk (see
:mod:`candletok.data.yahoo`); unreachable is an error that says how to work offline."""

from __future__ import annotations

import polars as pl

from candletok.core.errors import SourceError
from candletok.data.feeds.base import SOURCE_HINT, LoadRequest, Source, register_source
from candletok.data.yahoo import YahooUnreachable, load_yahoo


def download(req: LoadRequest) -> pl.DataFrame:
    """The cached Yahoo download (raises :class:`YahooUnreachable` when offline)."""
    return load_yahoo(req.symbols, interval=req.interval, start=req.start, end=req.end,
                      cache_dir=req.cache_dir, fetch=req.fetch, repair=req.repair)


@register_source
class Yahoo(Source):
    name = "yahoo"
    help = "Yahoo Finance, cached"
    rank = 1

    def load(self, req: LoadRequest) -> pl.DataFrame:
        try:
            return download(req)
        except YahooUnreachable as exc:
            raise SourceError(
                f"Yahoo Finance could not be reached ({exc.reason}); check your connection "
                f"or {SOURCE_HINT}."
            ) from exc
