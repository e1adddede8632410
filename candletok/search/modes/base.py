"""The search-mode protocol and its registry: one file per mode in this package.

Every mode searches the same :class:`~candletok.search.index.SearchIndex` (built and
saved by :func:`~candletok.search.index.open_index`, keyed to the dataset) under the same
time rule; what a mode owns is *how* it finds the windows most like the query (the HF
``datasets`` ``BaseIndex.search`` part). Everything after that, the outcomes, the base
rate, the words and the calibration, is the same for every mode, so a new mode is one
file here (a :class:`SearchMode` subclass under ``@register_mode``) plus its tests; the
CLI's ``--mode`` and ``--analogues`` choices and help come from :func:`modes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np

from candletok.core.errors import CandletokError
from candletok.core.registry import Registry, decorator

if TYPE_CHECKING:
    from candletok.search.index import SearchIndex
    from candletok.search.query import Query
    from candletok.search.timerule import TimeRule
    from candletok.tokenize.base import Tokenizer


class SearchOptions(Protocol):
    """What a mode reads of a :class:`~candletok.search.spec.SearchSpec`. A protocol, not
    the class: the spec looks modes up in this registry, so the modes must not import it
    back (no cycle)."""

    mode: str
    top: int
    min_matches: int
    model: Path | None
    device: str
    approximate: bool
    alphabet: str


@dataclass
class Found:
    """The matches of one query before statistics: window ends, distances, and how the
    search got there."""

    e: np.ndarray
    dist: np.ndarray
    window: int
    raw: int  # candidates before the time rule and thinning (exact: occurrences)
    eligible: int  # after the time rule, before thinning
    notes: list[str] = field(default_factory=list)
    search: str = ""  # how the search went (a diagnostic, not part of the answer)


class SearchMode:
    """One way to find the windows of history most like a query.

    Subclasses set ``name`` and ``help`` and implement :meth:`search`; the flags say
    what the rest of the package must know about the mode instead of testing its name."""

    name: ClassVar[str]
    help: ClassVar[str]  # a few words for the CLI's --mode help ("same tokens")
    rank: ClassVar[int] = 100  # order in help texts (built-ins first)
    needs_model: ClassVar[bool] = False  # needs a trained checkpoint (SearchSpec.model)
    costly: ClassVar[bool] = False  # runs a model per query: the harness asks fewer origins
    by_recency: ClassVar[bool] = False  # every match counts; the most recent are listed
    same_tokens: ClassVar[bool] = False  # every match has the query's tokens (one distance)
    uses_alphabet: ClassVar[bool] = False  # matches symbols: SearchSpec.alphabet applies

    def check(self, spec: SearchOptions) -> None:
        """Refuse a spec this mode cannot answer, in one sentence (before any work)."""
        if self.needs_model and spec.model is None:
            raise CandletokError(f"mode={self.name!r} needs a trained checkpoint: pass "
                                 "model=FILE.")

    def missing(self, model: str | Path | None) -> str | None:
        """Why this mode cannot answer with checkpoint ``model`` (None: it can), for the
        harness to leave the mode out in words rather than fail every origin."""
        if self.needs_model and model is None:
            return "no checkpoint given"
        return None

    def model_file(self, model: str | Path) -> Path:
        """The file this mode reads for checkpoint ``model`` (what a cache key hashes)."""
        return Path(model)

    def search(self, idx: SearchIndex, tok: Tokenizer, q: Query, rule: TimeRule,
               spec: SearchOptions) -> tuple[Found, TimeRule]:
        """The matches of query ``q`` among the windows ``rule`` lets answer (only
        those: :class:`~candletok.search.timerule.Cut` says which), and the rule they were
        found under (a mode that backs off to fewer candles returns the shorter one)."""
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.name} ({self.help})"


MODES: Registry[SearchMode] = Registry("mode", "candletok.search.modes")
register_mode = decorator(MODES)
"""``@register_mode`` on a :class:`SearchMode` subclass (or ``register_mode(instance,
replace=False)``): makes it a ``mode=`` of :func:`~candletok.search.similar.similar`, of
the calibration, the evaluation harness's analogues and the CLI."""


def get_mode(name: str) -> SearchMode:
    """The mode registered as ``name`` (an unknown name lists the known ones)."""
    return MODES.get(name)


def modes() -> tuple[str, ...]:
    """The registered modes' names, built-ins first."""
    return MODES.names()


def mode_help() -> str:
    """``exact (same tokens), nearest (...) or model (...)``: the CLI's --mode help."""
    from candletok.core.registry import one_of

    return one_of([m.describe() for m in MODES.items()]) + "."


__all__ = ["MODES", "Found", "SearchMode", "get_mode", "mode_help", "modes", "register_mode"]
