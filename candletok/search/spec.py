"""``SearchSpec``: one object for the options of a pattern search, passed through.

:func:`~candletok.search.similar.similar`, its calibration
(:func:`~candletok.evaluation.simcal.calibrated_similar`, whose cache key is the spec's
:meth:`~SearchSpec.key`), the evaluation harness's analogues and ``candletok similar``
all take this one object, so an option is declared (and checked) once; ``similar``'s
keyword arguments build one (:meth:`SearchSpec.of`).
"""

from __future__ import annotations

import dataclasses
import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from candletok.core.errors import CandletokError
from candletok.core.horizons import check_horizons
from candletok.search.alphabet import DEFAULT_ALPHABET, check_alphabet
from candletok.search.modes.base import SearchMode, get_mode

DEFAULT_HORIZONS = (1, 5, 10)


@dataclass(frozen=True)
class SearchSpec:
    """What to search for and how: the mode (a name in
    :func:`~candletok.search.modes.modes`), the query window ``last``, ``top`` neighbours
    (listed matches), ``min_matches`` (exact's back-off threshold), the forward
    ``horizons``, and for the model mode the checkpoint, device and ``approximate``
    (faiss HNSW); ``alphabet`` is what a mode that matches symbols (exact) matches:
    ``coarse`` (:mod:`candletok.search.alphabet`, the default) or the vocabulary's own
    ``tokens``. Checked when made: a bad value fails here, in one sentence, not deep
    inside a search."""

    mode: str = "exact"
    last: int = 5
    top: int = 20
    min_matches: int = 10
    horizons: tuple[int, ...] = DEFAULT_HORIZONS
    model: str | Path | None = None
    device: str = "cpu"
    approximate: bool = False
    alphabet: str = DEFAULT_ALPHABET

    def __post_init__(self) -> None:
        m = get_mode(self.mode)
        set_ = object.__setattr__  # frozen: normalise once, here
        set_(self, "mode", m.name)
        for f in ("last", "top", "min_matches"):
            v = getattr(self, f)
            try:
                if isinstance(v, bool):
                    raise TypeError
                set_(self, f, operator.index(v))
            except TypeError:
                raise CandletokError(f"{f}= must be a whole number, not {v!r}.") from None
        if self.last < 1 or self.top < 1 or self.min_matches < 0:
            raise CandletokError("last and top must be at least 1, min_matches at least 0.")
        set_(self, "horizons", check_horizons(self.horizons))
        set_(self, "approximate", bool(self.approximate))
        set_(self, "alphabet", check_alphabet(self.alphabet))
        m.check(self)

    @classmethod
    def of(cls, spec: SearchSpec | None = None, **options: Any) -> SearchSpec:
        """``spec`` (the defaults when None) with every option that is not None
        replaced: how the keyword APIs build their spec."""
        given = {k: v for k, v in options.items() if v is not None}
        unknown = set(given) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise CandletokError(f"SearchSpec has no option {', '.join(sorted(unknown))}.")
        base = spec if spec is not None else cls()
        return dataclasses.replace(base, **given) if given else base

    def replace(self, **options: Any) -> SearchSpec:
        return dataclasses.replace(self, **options)

    @property
    def search_mode(self) -> SearchMode:
        return get_mode(self.mode)

    def key(self) -> dict[str, Any]:
        """The settings that change an answer, as plain JSON: the checkpoint by its
        sha256 (its path and the device change nothing), only for a mode that uses it;
        the alphabet only for a mode that matches symbols (exact)."""
        from candletok.core.atomic import sha256_file

        m = self.search_mode
        used = m.model_file(self.model) if m.needs_model and self.model is not None else None
        # a missing file hashes as None: the search itself then says what is missing
        sha = sha256_file(used) if used is not None and Path(used).exists() else None
        key = {"mode": self.mode, "last": self.last, "top": self.top,
               "min_matches": self.min_matches, "horizons": list(self.horizons),
               "model_sha256": sha, "approximate": self.approximate}
        if m.uses_alphabet:  # other modes keep the key their caches have
            key["alphabet"] = self.alphabet
        return key

    @property
    def same_tokens(self) -> bool:
        """Every match carries the query's very tokens (one distance for all): a
        same-tokens mode searching the vocabulary itself, not the coarse alphabet."""
        m = self.search_mode
        return m.same_tokens and not (m.uses_alphabet and self.alphabet != "tokens")


__all__ = ["DEFAULT_HORIZONS", "SearchSpec", "check_horizons"]
