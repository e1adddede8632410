"""Exceptions. Every user-facing failure is a ``CandletokError`` whose message is one
sentence that says what is wrong and how to fix it; the CLI prints it without a traceback."""

from __future__ import annotations


class CandletokError(Exception):
    """Base class of every error candletok raises on purpose."""


class BarsError(CandletokError, ValueError):
    """A bars frame breaks the canonical schema or a price rule.

    ``rule`` names the broken rule (``missing_column``, ``bad_dtype``, ``empty``, ``null``,
    ``non_finite``, ``non_positive``, ``high_low``, ``negative_volume``, ``empty_symbol``,
    ``duplicate_ts``, ``unsorted``, ``unknown_symbol``, ``fetch_failed``, ...) so callers and
    tests can tell the cases apart without parsing the message; ``rows`` holds the first
    offending row indices when there are any.
    """

    def __init__(self, message: str, rule: str = "invalid", rows: list[int] | None = None):
        super().__init__(message)
        self.rule = rule
        self.rows = rows or []


class SourceError(CandletokError):
    """A data source could not deliver bars (network down, unknown source, bad path)."""


class TokenizerError(CandletokError, ValueError):
    """A vocabulary file is unknown, tampered with, or used before it was fitted."""


class DatasetError(CandletokError):
    """A token dataset folder is incomplete, corrupt, or does not match a vocabulary."""


class ModelError(CandletokError):
    """A checkpoint is unreadable or does not match the dataset or vocabulary it meets."""


class OutputError(CandletokError, OSError):
    """An output path cannot be written (a folder in the way, no permission, no space)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler, ``timeout``, ``docker stop``) turned into an exception in the
    main thread, so ``finally`` blocks clean up as they do for Ctrl-C; the CLI exits 143
    (128 + SIGTERM). A KeyboardInterrupt, so code that cleans up after Ctrl-C cleans up
    after it too; not a :class:`CandletokError` (it is no mistake of the user's)."""
