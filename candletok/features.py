"""Candle features in log space, normalized by a causal volatility scale (DESIGN.md §4).

For candle t with previous close ``C[t-1]``::

    gap   = ln(O / C[t-1])            body  = ln(C / O)
    upper = ln(H / max(O, C)) >= 0    lower = ln(min(O, C) / L) >= 0
    vol   = ln(V / mean(V[t-N .. t-1]))          (optional; null/zero volume -> 0)

The four price features are divided by ``scale[t]``, an EWMA (``adjust=False``, so its
state is one number) of the log true range ``ln(max(H, C[t-1]) / min(L, C[t-1]))`` over
bars *before* t, seeded with bar 0's ``ln(H/L)`` and floored at ``min_scale``. Dividing by
it is what lets one vocabulary serve calm and wild markets and every ticker; using only
earlier bars is what keeps a token from leaking the future.

The map is exactly invertible given ``C[t-1]`` and ``scale[t]`` (:func:`rebuild_bars`),
which is what makes ``encode(generate_bars(tokens)) == tokens`` possible.

The first bar of each series only provides the anchor close, so it yields no row.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import polars as pl

from candletok.errors import TokenizerError

PRICE_FEATURES: tuple[str, ...] = ("gap", "body", "upper", "lower")


@dataclass(frozen=True)
class FeatureConfig:
    """How candles become feature vectors; saved in every vocab file.

    ``alpha`` is the EWMA weight of the newest true range (0.1 ~ a 19-bar span);
    ``min_scale`` floors the scale so zero-range candles never divide by zero;
    ``volume`` adds the ``vol`` feature over a ``vol_window``-bar mean.
    """

    alpha: float = 0.1
    min_scale: float = 1e-6
    volume: bool = False
    vol_window: int = 20

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha <= 1.0:
            raise TokenizerError(f"FeatureConfig.alpha must be in (0, 1], not {self.alpha}.")
        if not self.min_scale > 0.0:
            raise TokenizerError("FeatureConfig.min_scale must be positive.")
        if self.vol_window < 1:
            raise TokenizerError("FeatureConfig.vol_window must be at least 1.")

    @property
    def names(self) -> tuple[str, ...]:
        """Feature column names, in the order every array in candletok uses."""
        return (*PRICE_FEATURES, "vol") if self.volume else PRICE_FEATURES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise TokenizerError(
                f"Unknown feature setting(s) {sorted(unknown)} in the vocab file; "
                "it was written by a newer candletok."
            )
        return cls(**d)


def _ln(x: pl.Expr) -> pl.Expr:
    return x.log()


def candle_features(bars: pl.DataFrame, cfg: FeatureConfig | None = None) -> pl.DataFrame:
    """Normalized features of every candle but each series' first (its anchor close).

    ``bars`` is a canonical frame sorted by ``(symbol, ts)``; returns ``symbol, ts,
    prev_close, scale, gap, body, upper, lower[, vol]`` in the same order. All work is
    Polars window expressions per symbol; nothing looks at a later bar.
    """
    cfg = cfg or FeatureConfig()
    o, h, lo, c = (pl.col(x) for x in ("open", "high", "low", "close"))
    pc = pl.col("prev_close")
    first = pc.is_null()
    tr = (
        pl.when(first)
        .then(_ln(h / lo))
        .otherwise(_ln(pl.max_horizontal(h, pc) / pl.min_horizontal(lo, pc)))
    )
    cols = ["symbol", "ts", "open", "high", "low", "close"] + (["volume"] if cfg.volume else [])
    lf = bars.lazy().select(cols).with_columns(c.shift(1).over("symbol").alias("prev_close"))
    lf = lf.with_columns(tr.alias("_tr")).with_columns(
        pl.col("_tr").ewm_mean(alpha=cfg.alpha, adjust=False).over("symbol").alias("_ew")
    )
    lf = lf.with_columns(
        pl.max_horizontal(pl.col("_ew").shift(1).over("symbol"), pl.lit(cfg.min_scale))
        .alias("scale")
    )
    s = pl.col("scale")
    top, bot = pl.max_horizontal(o, c), pl.min_horizontal(o, c)
    exprs = [
        (_ln(o / pc) / s).alias("gap"),
        (_ln(c / o) / s).alias("body"),
        # clip: the wick features are >= 0 by construction on validated bars
        (_ln(h / top) / s).clip(lower_bound=0.0).alias("upper"),
        (_ln(bot / lo) / s).clip(lower_bound=0.0).alias("lower"),
    ]
    if cfg.volume:
        v = pl.when(pl.col("volume") > 0).then(pl.col("volume")).otherwise(None)
        lf = lf.with_columns(v.alias("_v")).with_columns(
            pl.col("_v")
            .shift(1)
            .rolling_mean(window_size=cfg.vol_window, min_samples=1)
            .over("symbol")
            .alias("_vmean")
        )
        exprs.append(
            _ln(pl.col("_v") / pl.col("_vmean")).fill_null(0.0).fill_nan(0.0).alias("vol")
        )
    out = (
        lf.filter(~first)
        .select("symbol", "ts", "prev_close", "scale", *exprs)
        .collect()
    )
    return out


def features_from_prices(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    prev_close: np.ndarray,
    scale: np.ndarray,
) -> np.ndarray:
    """The four normalized price features from arrays (numpy twin of the Polars map).

    Used to re-featurize rebuilt bars against a stored ``prev_close``/``scale``.
    """
    top, bot = np.maximum(open_, close), np.minimum(open_, close)
    out = np.empty((np.shape(open_)[0], 4), dtype=np.float64)
    out[:, 0] = np.log(open_ / prev_close) / scale
    out[:, 1] = np.log(close / open_) / scale
    out[:, 2] = np.maximum(np.log(high / top) / scale, 0.0)
    out[:, 3] = np.maximum(np.log(bot / low) / scale, 0.0)
    return out


def rebuild_bars(
    feats: np.ndarray, prev_close: np.ndarray | float, scale: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of the feature map: (n, >=4) normalized features -> O, H, L, C arrays.

    ``feats`` columns are gap, body, upper, lower (a ``vol`` column is ignored); NaN rows
    (special tokens) give NaN prices. A wick of exactly 0 gives ``H == max(O, C)`` exactly,
    so the zero-wick bin survives the trip through prices.
    """
    f = np.asarray(feats, dtype=np.float64)
    s = np.asarray(scale, dtype=np.float64)
    o = np.asarray(prev_close, dtype=np.float64) * np.exp(f[..., 0] * s)
    c = o * np.exp(f[..., 1] * s)
    h = np.maximum(o, c) * np.exp(f[..., 2] * s)
    lo = np.minimum(o, c) * np.exp(-f[..., 3] * s)
    return o, h, lo, c


def true_range(
    high: np.ndarray, low: np.ndarray, prev_close: np.ndarray
) -> np.ndarray:
    """Log true range ``ln(max(H, C[t-1]) / min(L, C[t-1]))`` (numpy, for generation)."""
    return np.log(np.maximum(high, prev_close) / np.minimum(low, prev_close))


def next_scale(ewma: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """The scale a candle sees, from the EWMA state after the previous bar."""
    return np.maximum(ewma, cfg.min_scale)


def scale_state(bars: pl.DataFrame, cfg: FeatureConfig) -> pl.DataFrame:
    """Per symbol: the last close and the scale the *next* (not yet seen) candle would get.

    This is what free-running generation needs to continue a real series right after its
    last bar, with the same arithmetic as :func:`candle_features`.
    """
    h, lo, c = pl.col("high"), pl.col("low"), pl.col("close")
    pc = c.shift(1).over("symbol")
    tr = (
        pl.when(pc.is_null())
        .then((h / lo).log())
        .otherwise((pl.max_horizontal(h, pc) / pl.min_horizontal(lo, pc)).log())
    )
    return (
        bars.lazy()
        .with_columns(tr.alias("_tr"))
        .with_columns(
            pl.col("_tr").ewm_mean(alpha=cfg.alpha, adjust=False).over("symbol").alias("_ew")
        )
        .group_by("symbol", maintain_order=True)
        .agg(
            pl.col("close").last().alias("last_close"),
            pl.max_horizontal(pl.col("_ew").last(), pl.lit(cfg.min_scale)).alias("next_scale"),
        )
        .collect()
    )
