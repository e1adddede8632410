"""The data-source protocol and its registry: one file per source in this package.

A source turns symbols and a time range into the canonical bars
(``validate_bars(..., "strict")`` passes on what it returns); :func:`load_bars
<candletok.data.sources.load_bars>` checks the arguments once, picks the source by
name here, and a path (a CSV/Parquet file or folder) is read by the file reader. A new
source is one file in this package (a :class:`Source` subclass under
``@register_source``), or a ``register_source`` call in the user's own code; the CLI's
``--source`` help comes from :func:`source_help` (the tiktoken ``registry`` pattern).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import polars as pl

from candletok.core.errors import SourceError
from candletok.core.registry import Registry, decorator

SOURCE_HINT = "work offline with source='sample' (or 'synthetic', or a CSV/Parquet path)"


@dataclass(frozen=True)
class LoadRequest:
    """What :func:`~candletok.data.sources.load_bars` was asked, checked: symbols
    normalised (at least one), times parsed, ``interval`` the one to load (daily unless
    asked) and ``asked`` the one the caller named (None: not named)."""

    symbols: list[str]
    interval: str
    asked: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    cache_dir: str | Path | None = None
    fetch: Callable[..., Any] | None = None  # replaces a download (tests pass recordings)
    seed: int = 0
    n_bars: int | None = None
    repair: bool = True  # drop broken rows with a report (False: refuse them)
    date_format: str | None = None


class Source:
    """One place bars come from. Subclasses set ``name`` and ``help`` and implement
    :meth:`load`; ``rank`` orders the help text (built-ins first)."""

    name: ClassVar[str]
    help: ClassVar[str]  # a few words for the CLI's --source help
    rank: ClassVar[int] = 100

    def load(self, req: LoadRequest) -> pl.DataFrame:
        """Canonical, validated bars of ``req.symbols`` (``candletok.data.clean.finish``
        repairs or refuses, validates and cuts to the range); a failure a user can fix
        raises :class:`~candletok.core.errors.SourceError` saying how."""
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.name} ({self.help})"


SOURCES: Registry[Source] = Registry("source", "candletok.data.feeds", SourceError,
                                     beside="an existing CSV/Parquet path")
register_source = decorator(SOURCES)
"""``@register_source`` on a :class:`Source` subclass (or ``register_source(instance,
replace=False)``): makes it a ``source=`` of ``load_bars`` and a ``--source`` of the CLI."""


def get_source(name: str) -> Source:
    """The source registered as ``name``; an unknown name lists every known one."""
    return SOURCES.get(name)


def sources() -> tuple[str, ...]:
    """The registered sources' names, built-ins first."""
    return SOURCES.names()


def source_help(short: bool = False) -> str:
    """The CLI's ``--source`` help: every registered source (with a few words each
    unless ``short``), or a CSV/Parquet path."""
    from candletok.core.registry import one_of

    return one_of([s.name if short else s.describe() for s in SOURCES.items()]
                  + ["a CSV/Parquet path"]) + "."


__all__ = ["SOURCES", "SOURCE_HINT", "LoadRequest", "Source", "get_source", "register_source",
           "source_help", "sources"]
