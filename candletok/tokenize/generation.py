"""Generation from tokens, shared by every tokenizer: free-running price paths rebuilt
from token sequences (the causal scale recomputed along each path), canonical bars for a
generated sequence, and the state that continues a real series.

A mixin of :class:`candletok.tokenize.base.Tokenizer`, kept in its own file so the base
class stays about fitting, encoding and files; it reads only the tokenizer's decode table
(``_table``), ``features`` and ``decode_features``.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

import numpy as np
import polars as pl

from candletok.core.errors import TokenizerError
from candletok.core.ids import N_SPECIAL
from candletok.core.times import interval_delta
from candletok.tokenize.features import (
    FeatureConfig,
    ewma_scale_step,
    floor_scale,
    rebuild_bars,
    scale_state,
)


class GenerationMixin:
    """Rebuilding bars from candle tokens (see the module docstring)."""

    N_SPECIAL = N_SPECIAL
    features: FeatureConfig
    _table: np.ndarray | None

    # provided by the Tokenizer: _require_fit(), vocab_size, decode_features()
    _require_fit: Any
    vocab_size: int
    decode_features: Any

    def _check_candle_tokens(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t).astype(np.int64, copy=False)
        if t.size and (t.min() < self.N_SPECIAL or t.max() >= self.vocab_size):
            raise TokenizerError(
                f"Generation needs candle tokens in [{self.N_SPECIAL}, {self.vocab_size}); "
                "drop PAD/BOS/EOS/MISSING tokens (or mask them when sampling) first."
            )
        return t

    def default_scale(self) -> float:
        """A typical scale (used when generation is given none): the log range of an
        average candle of the fit data, floored like every scale."""
        return max(float(getattr(self, "_default_scale", 0.02)), self.features.min_scale)

    def rebuild_paths(
        self, tokens2d: np.ndarray, first_close: float | np.ndarray, scale: float | np.ndarray
    ) -> dict[str, np.ndarray]:
        """Free-running rebuild of S token paths at once: ``(S, n)`` tokens ->
        ``{"open","high","low","close","scale"}`` arrays of shape (S, n).

        Candle t is rebuilt from the previous rebuilt close and ``scale[t]``, and the
        scale is then updated causally from the rebuilt bar, with the same EWMA as
        :func:`candletok.tokenize.features.candle_features`. The loop is over time only; each step
        is vectorized across the S paths (the recursion itself is sequential).
        """
        self._require_fit()
        T2 = self._check_candle_tokens(np.atleast_2d(tokens2d))
        S, n = T2.shape
        assert self._table is not None
        D = self._table[T2]  # (S, n, d)
        prev = np.broadcast_to(np.asarray(first_close, dtype=np.float64), (S,)).copy()
        ew = np.broadcast_to(np.asarray(scale, dtype=np.float64), (S,)).copy()
        out = {k: np.empty((S, n)) for k in ("open", "high", "low", "close", "scale")}
        for t in range(n):  # time steps: inherently sequential
            s = floor_scale(ew, self.features)
            o, h, lo, c = rebuild_bars(D[:, t, :], prev, s)
            ew = ewma_scale_step(ew, h, lo, prev, self.features)
            out["open"][:, t], out["high"][:, t], out["low"][:, t] = o, h, lo
            out["close"][:, t], out["scale"][:, t] = c, s
            prev = c
        return out

    def generate_bars(
        self,
        tokens: np.ndarray,
        first_close: float,
        scale: float | None = None,
        *,
        symbol: str = "GEN",
        start: datetime | None = None,
        interval: str = "1d",
    ) -> pl.DataFrame:
        """Canonical bars for a free-running token sequence.

        The first row is an anchor bar (open = close = ``first_close``, log range equal to
        ``scale``) so that encoding the result gives back exactly ``tokens``; the n
        candles follow. ``scale`` defaults to :meth:`default_scale`; to continue a real
        series pass its :meth:`continuation_state`. With the ``vol`` feature, volumes are
        rebuilt relative to an anchor volume of 1.0; otherwise volume is null.
        """
        if not (math.isfinite(first_close) and first_close > 0):
            raise TokenizerError("first_close must be a positive finite price.")
        s0 = self.default_scale() if scale is None else float(scale)
        if not (math.isfinite(s0) and s0 > 0):
            raise TokenizerError("scale must be a positive finite number.")
        t = self._check_candle_tokens(np.asarray(tokens).reshape(-1))
        p = self.rebuild_paths(t[None, :], first_close, s0)
        n = t.size
        step = interval_delta(interval)
        t0 = start or datetime(2000, 1, 1, tzinfo=timezone.utc)
        if t0.tzinfo is None:
            t0 = t0.replace(tzinfo=timezone.utc)
        half = math.exp(s0 / 2.0)
        anchor = np.array([first_close, first_close * half, first_close / half, first_close])
        cols = {k: np.concatenate([[anchor[i]], p[k][0]])
                for i, k in enumerate(("open", "high", "low", "close"))}
        volume: np.ndarray | None = None
        if self.features.volume:
            volume = self._rebuild_volume(self.decode_features(t)[:, -1])
        df = pl.DataFrame(
            {
                "symbol": [symbol] * (n + 1),
                "ts": pl.datetime_range(
                    t0, t0 + step * n, interval=step, eager=True, time_zone="UTC"
                ).cast(pl.Datetime("us", "UTC")),
                **cols,
                "volume": pl.Series("volume", volume, dtype=pl.Float64)
                if volume is not None
                else pl.Series("volume", [None] * (n + 1), dtype=pl.Float64),
            }
        )
        return df

    def _rebuild_volume(self, vol: np.ndarray) -> np.ndarray:
        """Volumes whose ``vol`` feature is ``vol``, after an anchor volume of 1.0."""
        N = self.features.vol_window
        v = np.empty(vol.size + 1)
        v[0] = 1.0
        for t in range(vol.size):  # sequential: each volume depends on the previous N
            v[t + 1] = math.exp(vol[t]) * v[max(0, t + 1 - N) : t + 1].mean()
        return v

    def continuation_state(self, bars: pl.DataFrame) -> dict[str, tuple[float, float]]:
        """``{symbol: (last_close, next_scale)}``: what :meth:`generate_bars` needs to
        continue each real series right after its last bar."""
        st = scale_state(bars, self.features)
        return {
            s: (float(c), float(v))
            for s, c, v in zip(st["symbol"], st["last_close"], st["next_scale"], strict=True)
        }
