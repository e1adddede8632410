"""``Predictor.update``: one bar at a time, through the causal state and the model's
key-value cache, gives what ``predict`` gives on every bar so far (and, as a property, for
any bars and any point to start following them)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from _helpers import trained_on_synthetic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from candletok.core.errors import BarsError, ModelError
from candletok.evaluation.forecastfile import QUANTILE_COLUMNS

FIELDS = ("p_up_raw", "p_up", "range_raw", "range")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("live")
    trained_on_synthetic(root)
    return root


@pytest.fixture(scope="module")
def predictor(work: Path):  # type: ignore[no-untyped-def]
    from candletok.predict.predictor import Predictor

    p = Predictor.from_checkpoint(work / "m.pt", work / "ds")
    p.forecaster.samples = 4  # h > 1: few paths, the same ones both ways
    return p


def bars_of(rets: list[tuple[float, float, float, float]], sym: str = "AAA",
            step: timedelta = timedelta(days=1)) -> pl.DataFrame:
    """Bars from (gap, body, upper, lower) log moves, a random walk from 100."""
    rows, c = [], 100.0
    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    for i, (g, b, u, lo) in enumerate(rets):
        o = c * np.exp(g)
        c = o * np.exp(b)
        rows.append({"symbol": sym, "ts": t0 + i * step, "open": o,
                     "high": max(o, c) * np.exp(u), "low": min(o, c) * np.exp(-lo),
                     "close": c, "volume": 1000.0 + i})
    return pl.DataFrame(rows).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))


def assert_same(got, ref, tol: float = 1e-6) -> None:  # type: ignore[no-untyped-def]
    assert (got.symbol, got.origin, got.horizon, got.last_close) == (
        ref.symbol, ref.origin, ref.horizon, ref.last_close)
    for k in FIELDS:
        x, y = getattr(got, k), getattr(ref, k)
        assert (x is None) == (y is None), k
        if x is not None:
            assert abs(x - y) <= tol, (k, x, y)
    for q in QUANTILE_COLUMNS:
        x, y = got.quantiles[q], ref.quantiles[q]
        assert (x is None) == (y is None) and (x is None or abs(x - y) <= tol), q
    assert got.base_rate == ref.base_rate


def walk(n: int, seed: int) -> pl.DataFrame:
    r = np.random.default_rng(seed)
    return bars_of([(r.normal(0, 0.003), r.normal(0, 0.01), abs(r.normal(0, 0.004)),
                     abs(r.normal(0, 0.004))) for _ in range(n)])


def test_updates_equal_predict_past_the_window_slides(predictor) -> None:  # type: ignore[no-untyped-def]
    """Context 16: the window slides every 8 bars; 30 updates cross it three times, and each
    answer equals ``predict`` on the bars so far, h = 1 (every bar) and h = 3 (a few)."""
    bars = walk(40, 1)
    first = predictor.start(bars.head(10), horizons=(1, 3))
    for a, b in zip(first, predictor.predict(bars.head(10), horizons=(1, 3)), strict=True):
        assert_same(a, b)
    for i in range(10, 40):
        got = predictor.update(bars.row(i, named=True))
        hs = (1, 3) if i % 9 == 0 else (1,)
        ref = predictor.predict(bars.head(i + 1), horizons=hs)
        for a, b in zip(got, ref, strict=False):
            assert_same(a, b)
    live = predictor._live["AAA"]
    enc = predictor.tokenizer.encode(bars)
    assert live.token == enc["token"].to_list()  # the tokens are the encoder's, exactly
    assert live.scale == enc["scale"].to_list()


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(moves=st.lists(st.tuples(st.floats(-0.02, 0.02), st.floats(-0.05, 0.05),
                                st.floats(0, 0.02), st.floats(0, 0.02)),
                      min_size=3, max_size=30),
       cut=st.integers(2, 29), frame=st.booleans())
def test_any_updates_equal_predicting_from_scratch(predictor, moves, cut, frame) -> None:  # type: ignore[no-untyped-def]
    """Property: start on the first ``cut`` bars of any walk, feed the rest one at a time
    (as dicts or one-row frames): every answer is ``predict``'s on the bars so far."""
    bars = bars_of(moves)
    cut = min(cut, bars.height)
    predictor.start(bars.head(cut))
    for i in range(cut, bars.height):
        one = bars.slice(i, 1) if frame else bars.row(i, named=True)
        got = predictor.update(one)
        assert_same(got[0], predictor.predict(bars.head(i + 1))[0])


def test_duplicates_ignored_and_bad_bars_refused(predictor) -> None:  # type: ignore[no-untyped-def]
    bars = walk(12, 2)
    predictor.start(bars.head(10))
    a = predictor.update(bars.row(10, named=True))
    n = predictor._live["AAA"].n
    assert predictor.update(bars.row(10, named=True)) == a  # an exact duplicate: ignored
    assert predictor._live["AAA"].n == n
    with pytest.raises(BarsError, match="not after its last bar"):
        predictor.update(bars.row(5, named=True))
    changed = dict(bars.row(10, named=True), close=float(bars["close"][10]) * 1.01,
                   high=float(bars["high"][10]) * 1.02)
    with pytest.raises(BarsError, match="already has a different bar"):
        predictor.update(changed)
    bad = dict(bars.row(11, named=True), low=float(bars["high"][11]) * 2)
    with pytest.raises(BarsError, match="not a valid bar"):
        predictor.update(bad)
    with pytest.raises(ModelError, match="is not followed"):
        predictor.update(dict(bars.row(11, named=True), symbol="ZZZ"))
    assert predictor._live["AAA"].n == n  # nothing refused was counted
    assert_same(predictor.update(bars.row(11, named=True))[0], predictor.predict(bars)[0])


def test_several_series_and_update_before_start(work: Path) -> None:
    from candletok.predict.predictor import Predictor

    p = Predictor.from_checkpoint(work / "m.pt", work / "ds")
    with pytest.raises(ModelError, match="start"):
        p.update({"symbol": "AAA", "ts": "2024-01-01", "open": 1, "high": 1, "low": 1,
                  "close": 1})
    a, b = walk(20, 3), walk(20, 4).with_columns(pl.lit("BBB").alias("symbol"))
    p.start(pl.concat([a.head(12), b.head(15)]))
    with pytest.raises(ModelError, match="symbol"):
        p.update({k: v for k, v in a.row(12, named=True).items() if k != "symbol"})
    for i in range(15, 20):
        got = p.update(b.row(i, named=True))
        assert_same(got[0], p.predict(b.head(i + 1))[0])
    got = p.update(a.row(12, named=True))
    assert_same(got[0], p.predict(a.head(13))[0])


@settings(max_examples=30, deadline=None)
@given(secs=st.lists(st.integers(-315_619_200, 2_208_988_800), min_size=1, max_size=40),
       tz=st.sampled_from(["UTC", "America/New_York", "Europe/London", "Asia/Tokyo"]))
def test_calendar_fast_paths_equal_polars(secs: list[int], tz: str) -> None:
    """The ids of a few int64 times (zoneinfo) and of UTC times (integer arithmetic), which
    a live update asks for, are Polars' ids exactly, 1960 to 2040, across DST changes."""
    from candletok.tokenize.calendar import CalendarSpec, calendar_ids

    us = np.asarray(secs, dtype=np.int64) * 1_000_000 + 123
    spec = CalendarSpec(tz)
    ref = calendar_ids(pl.Series("ts", us).cast(pl.Datetime("us", "UTC")), spec)
    assert np.array_equal(calendar_ids(us, spec), ref)
    assert np.array_equal(calendar_ids(us[:1], spec), ref[:1])


def test_updates_follow_the_val_winners_as_predict_does(work: Path,
                                                        tmp_path: Path) -> None:
    """With an evaluated model (its calibration names a val winner per quantity and fits
    conformal intervals), following a series gives what ``predict`` gives: the same
    sources, the same numbers and the same intervals."""
    import shutil

    from candletok.evaluation.evaluate import evaluate_forecasts
    from candletok.predict.predictor import Predictor

    m = tmp_path / "m.pt"
    shutil.copy(work / "m.pt", m)
    evaluate_forecasts(work / "ds", m, horizons=(1,), analogues=(), n_boot=20)
    p = Predictor.from_checkpoint(m, work / "ds")
    bars = walk(24, 5)
    got = p.start(bars.head(12))
    for i in range(12, 24):
        got = p.update(bars.row(i, named=True))
    ref = p.predict(bars)
    for a, b in zip(got, ref, strict=True):
        assert_same(a, b)
        assert a.sources == b.sources and a.sources  # the winners were applied both ways
        assert a.intervals.keys() == b.intervals.keys()
        for k, v in a.intervals.items():
            w = b.intervals[k]
            assert (v is None) == (w is None) and (v is None or abs(v - w) <= 1e-6), k
