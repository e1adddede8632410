"""Data sources, one file per source (see :mod:`candletok.data.feeds.base`)."""

from candletok.data.feeds.base import (
    SOURCE_HINT,
    SOURCES,
    LoadRequest,
    Source,
    get_source,
    register_source,
    source_help,
    sources,
)

__all__ = ["SOURCES", "SOURCE_HINT", "LoadRequest", "Source", "get_source", "register_source",
           "source_help", "sources"]
