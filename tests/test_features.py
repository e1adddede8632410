"""Candle features: exact inverse, causality, scale floor, scale invariance."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from candletok import TokenizerError
from candletok.data.bars import validate_bars
from candletok.data.sample import load_sample
from candletok.tokenize.features import (
    FeatureConfig,
    candle_feature_arrays,
    candle_features,
    candle_features_grouped,
    features_from_prices,
    rebuild_bars,
    scale_state,
)


def random_bars(seed: int, n: int = 200, symbols: tuple[str, ...] = ("AAA", "BBB"),
                zero_wick: float = 0.15, volume: bool = True) -> pl.DataFrame:
    """Synthetic-like bars: GARCH-ish returns, overnight gaps, wicks (some exactly 0)."""
    rng = np.random.default_rng(seed)
    frames = []
    for k, sym in enumerate(symbols):
        vol = 0.02 * np.exp(np.cumsum(rng.normal(0, 0.1, n)) * 0.3)
        gap = rng.standard_t(4, n) * vol * 0.3
        body = rng.standard_t(4, n) * vol
        c_prev = 50.0 * (k + 1)
        o = np.empty(n)
        c = np.empty(n)
        for t in range(n):  # test data only
            o[t] = c_prev * np.exp(gap[t])
            c[t] = o[t] * np.exp(body[t])
            c_prev = c[t]
        up = np.abs(rng.normal(0, 1, n)) * vol * 0.4
        dn = np.abs(rng.normal(0, 1, n)) * vol * 0.4
        up[rng.random(n) < zero_wick] = 0.0
        dn[rng.random(n) < zero_wick] = 0.0
        h = np.maximum(o, c) * np.exp(up)
        lo = np.minimum(o, c) * np.exp(-dn)
        v = rng.lognormal(10, 0.5, n) if volume else np.full(n, np.nan)
        start = datetime(2001, 1, 1, tzinfo=timezone.utc)
        frames.append(pl.DataFrame({
            "symbol": [sym] * n,
            "ts": [start + timedelta(days=i) for i in range(n)],
            "open": o, "high": h, "low": lo, "close": c,
            "volume": pl.Series(v).fill_nan(None),
        }).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC"))))
    return validate_bars(pl.concat(frames))


def test_columns_rows_and_wicks_on_sample() -> None:
    bars = load_sample(["AAPL", "IBM"])
    f = candle_features(bars, FeatureConfig(volume=True))
    assert f.columns == ["symbol", "ts", "prev_close", "scale", "gap", "body", "upper",
                         "lower", "vol"]
    assert f.height == bars.height - 2  # each series' first bar only anchors
    assert (f["upper"] >= 0).all() and (f["lower"] >= 0).all()
    assert f.select(pl.all().exclude("symbol", "ts").is_finite().all()).row(0) == (True,) * 7
    assert f.equals(f.sort("symbol", "ts"))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_inverse_is_exact(seed: int) -> None:
    bars = random_bars(seed, n=60)
    f = candle_features(bars).join(bars, on=["symbol", "ts"])
    F = f.select("gap", "body", "upper", "lower").to_numpy()
    o, h, lo, c = rebuild_bars(F, f["prev_close"].to_numpy(), f["scale"].to_numpy())
    for got, name in ((o, "open"), (h, "high"), (lo, "low"), (c, "close")):
        np.testing.assert_allclose(got, f[name].to_numpy(), rtol=1e-12)
    back = features_from_prices(o, h, lo, c, f["prev_close"].to_numpy(), f["scale"].to_numpy())
    np.testing.assert_allclose(back, F, atol=1e-9)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), cut=st.integers(1, 58), factor=st.floats(0.2, 5.0))
def test_causal(seed: int, cut: int, factor: float) -> None:
    bars = random_bars(seed, n=60, symbols=("AAA",))
    later = pl.int_range(pl.len()) > cut
    changed = bars.with_columns(
        [pl.when(later).then(pl.col(c) * factor).otherwise(pl.col(c)).alias(c)
         for c in ("open", "high", "low", "close")]
    )
    a = candle_features(bars, FeatureConfig(volume=True)).head(cut)
    b = candle_features(changed, FeatureConfig(volume=True)).head(cut)
    assert a.equals(b)


def test_scale_floor_on_flat_candles() -> None:
    bars = random_bars(1, n=30, symbols=("FLAT",)).with_columns(
        open=pl.lit(10.0), high=pl.lit(10.0), low=pl.lit(10.0), close=pl.lit(10.0)
    )
    cfg = FeatureConfig(min_scale=1e-5)
    f = candle_features(bars, cfg)
    assert (f["scale"] >= 1e-5).all()
    assert f.select(pl.col("gap", "body", "upper", "lower").abs().max()).max_horizontal()[0] == 0


def test_volume_null_or_zero_is_neutral() -> None:
    bars = random_bars(2, n=30, volume=False)
    f = candle_features(bars, FeatureConfig(volume=True))
    assert (f["vol"] == 0).all()
    zero = random_bars(2, n=30).with_columns(volume=pl.lit(0.0))
    assert (candle_features(zero, FeatureConfig(volume=True))["vol"] == 0).all()


def test_scale_state_is_the_next_scale() -> None:
    bars = random_bars(3, n=50)
    cfg = FeatureConfig()
    head = bars.group_by("symbol", maintain_order=True).head(40)
    st_ = scale_state(head, cfg)
    nxt = candle_features(bars, cfg).group_by("symbol", maintain_order=True).agg(
        pl.col("scale").get(39), pl.col("prev_close").get(39)  # bar 40 = row 39
    )
    joined = st_.join(nxt, on="symbol")
    np.testing.assert_allclose(joined["next_scale"], joined["scale"], rtol=1e-12)
    np.testing.assert_allclose(joined["last_close"], joined["prev_close"], rtol=0)


def test_config_validation_and_roundtrip() -> None:
    cfg = FeatureConfig(alpha=0.2, volume=True)
    assert FeatureConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(TokenizerError):
        FeatureConfig(alpha=0.0)
    with pytest.raises(TokenizerError):
        FeatureConfig.from_dict({"alpha": 0.1, "nonsense": 1})


def _bitwise_equal(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    """Same columns, same rows, floats equal bit for bit (NaN == NaN)."""
    if a.columns != b.columns or a.height != b.height:
        return False
    for name in a.columns:
        if a.schema[name] == pl.Float64:
            x, y = a[name].to_numpy(), b[name].to_numpy()
            if not ((x == y) | (np.isnan(x) & np.isnan(y))).all():
                return False
        elif not a[name].equals(b[name]):
            return False
    return True


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), alpha=st.sampled_from([0.1, 0.3, 0.02, 1.0]),
       volume=st.booleans(), n=st.integers(2, 300), k=st.integers(1, 3))
def test_fast_path_is_bit_identical_to_grouped(seed: int, alpha: float, volume: bool,
                                               n: int, k: int) -> None:
    """The numpy path (global shift + restarted global EWMA) must reproduce the per-symbol
    Polars windows exactly: fitted edges, and so fingerprints, depend on every bit."""
    bars = random_bars(seed, n=n, symbols=("AAA", "BBB", "CCC")[:k])
    cfg = FeatureConfig(alpha=alpha, volume=volume)
    fa = candle_feature_arrays(bars, cfg)
    assert fa is not None and fa.starts.tolist() == [i * n for i in range(k)]
    assert _bitwise_equal(candle_features(bars, cfg), candle_features_grouped(bars, cfg))


def test_fast_path_exact_on_flat_and_nan_series() -> None:
    """A flat series after a volatile one never meets the global EWMA bit for bit (it
    stalls an ulp apart), and a NaN never equals anything: both take the per-series
    recompute and must still match."""
    bars = random_bars(4, n=800, symbols=("AAA", "BBB", "CCC"))
    flat = bars.with_columns(
        [pl.when(pl.col("symbol") == "BBB").then(10.0).otherwise(pl.col(c)).alias(c)
         for c in ("open", "high", "low", "close")]
    )
    nan = bars.with_columns(
        pl.when(pl.int_range(pl.len()) == 1000).then(float("nan")).otherwise(pl.col("high"))
        .alias("high")
    )
    for frame in (flat, nan):
        assert _bitwise_equal(candle_features(frame), candle_features_grouped(frame))


def test_interleaved_rows_fall_back_to_grouped_windows() -> None:
    bars = random_bars(6, n=40)
    interleaved = bars.sort("ts", "symbol")  # symbols alternate: not contiguous runs
    assert candle_feature_arrays(interleaved) is None
    got = candle_features(interleaved)
    assert _bitwise_equal(got, candle_features_grouped(interleaved))
    assert _bitwise_equal(got.sort("symbol", "ts"), candle_features(bars))
