"""Continuous level inputs beside each token: the volatility level the scale-free tokens hide.

A token is a candle's shape in units of its causal scale, so two series whose volatility
sits at very different levels against their own past read the same tokens. The long
memory of volatility lives exactly there (a HAR regression of the next log range on its
1-, 5- and 22-bar means beats an EWMA, issue 22), so a model that may read these numbers
beside the token (``GPTConfig.levels``) can use it. For the candle at row t of a series,
with ``tr`` its log true range and ``scale`` the causal scale it was normalized by:

- ``z1 = ln(max(tr / scale, e^-4))``: the candle's range against its scale (floored so a
  flat bar is a finite number);
- ``z5``, ``z22``: the mean of ``z1`` over the last 5 and 22 candles of the series up to
  t (fewer near its start), the HAR-like weekly and monthly terms;
- ``lvl = ln(scale) - EWMA(ln scale)``: the scale against its own long-run mean, the EWMA
  (``alpha = LEVEL_ALPHA``, ``adjust=False``) seeded with the series' first scale.

Every number at t reads rows up to t only (causal), and the series' rows only: a split's
series starts afresh, as its tokens do. :func:`level_inputs` computes a whole frame of
series at once (vectorized; one Polars EWMA per series); :class:`LevelState` steps one live
series by a bar and gives the same row (``tests/test_levels.py``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from candletok.tokenize.features import true_range

__all__ = ["LEVEL_ALPHA", "LEVEL_NAMES", "N_LEVELS", "LevelState", "level_inputs"]

#: EWMA weight of the scale's long-run mean (a half-life of about 23 bars).
LEVEL_ALPHA = 0.03
#: The input columns, in order.
LEVEL_NAMES = ("z1", "z5", "z22", "lvl")
N_LEVELS = len(LEVEL_NAMES)
_WINDOWS = (5, 22)
_Z_FLOOR = -4.0


def _z1(high: np.ndarray, low: np.ndarray, prev_close: np.ndarray,
        scale: np.ndarray) -> np.ndarray:
    tr = true_range(np.asarray(high, np.float64), np.asarray(low, np.float64),
                    np.asarray(prev_close, np.float64))
    with np.errstate(divide="ignore"):
        return np.maximum(np.log(tr / np.asarray(scale, np.float64)), _Z_FLOOR)


def level_inputs(high: np.ndarray, low: np.ndarray, prev_close: np.ndarray,
                 scale: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """(sum(lens), N_LEVELS) float64 level inputs of series laid end to end (``lens``
    candles each, in time order), from the dataset's stored ``high, low, prev_close,
    scale`` columns."""
    lens = np.asarray(lens, dtype=np.int64)
    n = int(lens.sum())
    out = np.zeros((n, N_LEVELS))
    if n == 0:
        return out
    z = _z1(high, low, prev_close, scale)
    ls = np.log(np.asarray(scale, np.float64))
    out[:, 0] = z
    a = 0
    for m in lens.tolist():  # one pass per series (its own sums and EWMA), not per candle
        if m:
            zz = z[a:a + m]
            cs = np.concatenate([[0.0], np.cumsum(zz)])
            i = np.arange(m)
            for j, w in enumerate(_WINDOWS, start=1):
                lo = np.maximum(0, i - w + 1)
                out[a:a + m, j] = (cs[i + 1] - cs[lo]) / (i + 1 - lo)
            ew = pl.Series(ls[a:a + m]).ewm_mean(alpha=LEVEL_ALPHA, adjust=False).to_numpy()
            out[a:a + m, 3] = ls[a:a + m] - ew
        a += m
    return out


@dataclass
class LevelState:
    """One series' level inputs stepped a candle at a time: the last 22 ``z1`` values and
    the EWMA of ``ln scale`` are the whole state (O(1) per bar)."""

    ewma: float | None = None
    zs: deque[float] = field(default_factory=lambda: deque(maxlen=max(_WINDOWS)))

    @classmethod
    def after(cls, high: np.ndarray, low: np.ndarray, prev_close: np.ndarray,
              scale: np.ndarray) -> tuple[np.ndarray, LevelState]:
        """One series' rows (:func:`level_inputs`) and the state that steps on from its
        last candle, without a Python loop over the candles."""
        lv = level_inputs(high, low, prev_close, scale, np.array([len(scale)]))
        st = cls()
        if len(scale):
            ls = np.log(np.asarray(scale, np.float64))
            st.ewma = float(pl.Series(ls).ewm_mean(alpha=LEVEL_ALPHA, adjust=False)[-1])
            st.zs.extend(lv[-max(_WINDOWS):, 0].tolist())
        return lv, st

    def step(self, high: float, low: float, prev_close: float, scale: float) -> np.ndarray:
        """The (N_LEVELS,) inputs of the next candle of the series."""
        z = float(_z1(np.array([high]), np.array([low]), np.array([prev_close]),
                      np.array([scale]))[0])
        self.zs.append(z)
        ls = float(np.log(scale))
        self.ewma = ls if self.ewma is None else self.ewma + LEVEL_ALPHA * (ls - self.ewma)
        zs = list(self.zs)
        return np.array([z, *(float(np.mean(zs[-w:])) for w in _WINDOWS), ls - self.ewma])
