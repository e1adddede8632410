"""The one registry of tokenizer schemes: make a fresh tokenizer by name, or read a saved
one back. It imports the built-in schemes; a new scheme subclasses
:class:`~candletok.tokenize.base.Tokenizer` and is known as soon as it is imported."""

from __future__ import annotations

import inspect
import os
from typing import Any

from candletok.core.errors import TokenizerError
from candletok.tokenize.base import Tokenizer, known_schemes
from candletok.tokenize.bins import BinsTokenizer
from candletok.tokenize.kmeans import KMeansTokenizer

BUILTIN: tuple[type[Tokenizer], ...] = (BinsTokenizer, KMeansTokenizer)


def schemes() -> dict[str, type[Tokenizer]]:
    """Every known scheme by name (the built-ins and any imported subclass)."""
    return known_schemes(Tokenizer)


def scheme_class(scheme: str) -> type[Tokenizer]:
    """The class of ``scheme``, matched case-insensitively; a clear error if unknown."""
    known = schemes()
    cls = known.get(str(scheme).strip().lower())
    if cls is None:
        raise TokenizerError(
            f"Unknown scheme {scheme!r}; use {' or '.join(sorted(known))}."
        )
    return cls


def make_tokenizer(scheme: str, **params: Any) -> Tokenizer:
    """A fresh, unfitted tokenizer of ``scheme`` built with ``params`` (``k=`` for kmeans,
    ``gap_bins=`` ... for bins); a parameter the scheme does not take is one sentence."""
    cls = scheme_class(scheme)
    accepted = inspect.signature(cls.__init__).parameters
    unknown = [k for k in params if k not in accepted]
    if unknown:
        raise TokenizerError(
            f"The {cls.scheme} scheme takes no {', '.join(map(repr, unknown))} parameter; "
            f"it takes {', '.join(p for p in accepted if p != 'self')}."
        )
    return cls(**params)


def load_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """Read a vocab file back, refusing unknown formats/schemes and tampered content."""
    return Tokenizer.load(path)


def loads_tokenizer(text: str) -> Tokenizer:
    """A tokenizer from a vocab file's text (checkpoints carry it)."""
    return Tokenizer.loads(text)
