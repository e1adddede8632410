"""The packed n-gram keys of the search index (:mod:`candletok.search.index`): the
``order`` tokens ending at each position in one mixed-radix uint64, newest most
significant, and the arithmetic the lookups do on them (prefix runs, suffix values,
position ranges). Kept apart from the index's files and layout: these are pure functions
of arrays."""

from __future__ import annotations

import numpy as np

__all__ = ["KEY_LIMIT", "POS_BITS", "POS_MASK", "gram_keys", "gram_order", "prefix_bounds",
           "ranges_to_indices", "suffix_value"]

POS_BITS = 32
POS_MASK = np.uint64((1 << POS_BITS) - 1)
KEY_LIMIT = 1 << 32  # keys must fit the high 32 bits of a packed value


def gram_order(radix: int) -> int:
    """How many tokens one 32-bit key holds: the largest L with radix**L <= 2**32."""
    order = 1
    while radix ** (order + 1) <= KEY_LIMIT:
        order += 1
    return order


def gram_keys(tokens: np.ndarray, starts: np.ndarray, radix: int, order: int) -> np.ndarray:
    """uint64 key of the ``order`` tokens ending at each position (newest most
    significant); slots before the series start hold PAD (0). Vectorized: ``order``
    passes over the array, plus a fix-up of the first ``order - 1`` rows of each series."""
    n = tokens.size
    key = tokens.astype(np.uint64)
    first = starts[:-1]
    lens = np.diff(starts)
    for lag in range(1, order):
        key *= np.uint64(radix)
        if lag < n:  # in place: no shifted copy of the whole array per lag
            np.add(key[lag:], tokens[:-lag], out=key[lag:])
        # the first `lag` positions of each series look back past its start: PAD there
        j = np.arange(lag)
        bad = (first[:, None] + j[None, :])[j[None, :] < lens[:, None]]
        bad = bad[bad >= lag]  # before `lag` nothing was added
        key[bad] -= tokens[bad - lag].astype(np.uint64)
    return key


def prefix_bounds(prefix: np.ndarray, m: int, radix: int, order: int) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    """Packed-value bounds [lo, hi) of the runs whose key starts with ``prefix`` (the
    mixed-radix value of m tokens, newest first)."""
    span = np.uint64(radix ** (order - m))
    p = np.asarray(prefix, dtype=np.uint64)
    return (p * span) << np.uint64(POS_BITS), ((p + np.uint64(1)) * span) << np.uint64(POS_BITS)


def suffix_value(tokens_newest_first: np.ndarray, radix: int) -> int:
    """Mixed-radix value of a token suffix given newest first."""
    v = 0
    for t in np.asarray(tokens_newest_first, dtype=np.int64).tolist():
        v = v * radix + int(t)
    return v


def ranges_to_indices(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(lo[i], hi[i])`` for every i, without a Python loop."""
    lo = np.asarray(lo, dtype=np.int64)
    hi = np.asarray(hi, dtype=np.int64)
    lens = np.maximum(hi - lo, 0)
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    keep = lens > 0
    lo, lens = lo[keep], lens[keep]
    offs = np.cumsum(lens) - lens
    return np.repeat(lo - offs, lens) + np.arange(total, dtype=np.int64)
