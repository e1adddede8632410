"""Horizons: how many bars ahead a forecast or an outcome looks. One parser for all.

``similar``, ``motifs``, the search calibration, ``evaluate`` and the CLI's ``--horizon``
options all take horizons; each used to check them its own way (one sorted them, one
kept duplicates, one accepted text). :func:`check_horizons` is the one rule.
"""

from __future__ import annotations

from collections.abc import Sequence

from candletok.core.errors import CandletokError


def check_horizons(horizons: Sequence[int] | int | str) -> tuple[int, ...]:
    """Horizons as sorted unique positive ints (``"1,5,10"`` is accepted), or a
    :class:`CandletokError` saying in one sentence what is wrong."""
    if isinstance(horizons, str):
        parts = [p for p in horizons.replace(" ", "").split(",") if p]
        try:
            horizons = [int(p) for p in parts]
        except ValueError as exc:
            raise CandletokError(f"horizons must be whole numbers of bars, not {parts}.") from exc
    if isinstance(horizons, int):
        horizons = [horizons]
    hs = sorted({int(h) for h in horizons})
    if not hs or hs[0] < 1:
        raise CandletokError("horizons must be one or more positive numbers of bars, not "
                             f"{list(horizons)}.")
    return tuple(hs)
