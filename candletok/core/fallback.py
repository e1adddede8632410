"""Loud fallbacks: when candletok answers with less than it was asked for, it says why.

A fallback (an uncalibrated P(close up), a vocabulary that could not be checked, an
interval read as daily) is sometimes the right thing to do, but never silently: the
number shown would look like the full answer. :func:`say_fallback` logs the reason as a
warning (the CLI prints the ``candletok`` loggers' warnings on stderr) and says each
reason once per process, so a loop over symbols does not repeat it a thousand times.
"""

from __future__ import annotations

import logging
import threading

_SAID: set[str] = set()
_LOCK = threading.Lock()


def say_fallback(log: logging.Logger, reason: str) -> bool:
    """Warn ``reason`` on ``log`` unless this process said it already; True when said."""
    with _LOCK:
        if reason in _SAID:
            return False
        _SAID.add(reason)
    log.warning("%s", reason)
    return True
