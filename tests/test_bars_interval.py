"""The bar interval is read off the bars' own times (issue 20, item 4): inferred where
none is given, and an interval that contradicts the bars is refused in one sentence."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from candletok.core.errors import SourceError
from candletok.core.times import INTERVALS, IntervalError, infer_interval, normalize_interval
from candletok.data.sources import load_bars
from candletok.data.synthetic import synthetic_bars
from candletok.dataset.build import build_dataset


def _utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=timezone.utc)


def _bars_at(ts: pl.Series, symbol: str = "EURUSD") -> pl.DataFrame:
    """Flat valid bars at the times ``ts``."""
    n = ts.len()
    walk = 1.1 + 0.001 * np.sin(np.arange(n))
    return pl.DataFrame({
        "symbol": [symbol] * n, "ts": ts, "open": walk, "high": walk * 1.001,
        "low": walk * 0.999, "close": walk, "volume": np.ones(n),
    })


def _fx_hourly(days: int = 30) -> pl.Series:
    """24h FX hourly bars: every hour from Sunday 22:00 to Friday 22:00 UTC, no weekends."""
    start = _utc(2024, 1, 7, 22)
    ts = pl.datetime_range(start, start + timedelta(days=days), "1h",
                           time_zone="UTC", eager=True)
    wd, hour = ts.dt.weekday(), ts.dt.hour()
    open_ = ~((wd == 6) | ((wd == 5) & (hour >= 22)) | ((wd == 7) & (hour < 22)))
    return ts.filter(open_)


@settings(max_examples=40, deadline=None)
@given(interval=st.sampled_from(sorted(INTERVALS)), n=st.integers(3, 400),
       seed=st.integers(0, 10_000), n_sym=st.integers(1, 3))
def test_the_generators_bars_infer_their_own_interval(interval: str, n: int, seed: int,
                                                      n_sym: int) -> None:
    # sessions (intraday), weekends (daily), month lengths (monthly) all allowed for
    bars = synthetic_bars([f"S{i}" for i in range(n_sym)], n_bars=n, interval=interval,
                          seed=seed)
    assert infer_interval(bars) == interval
    assert infer_interval(bars["ts"], bars["symbol"]) == interval


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), drop=st.floats(0.0, 0.3))
def test_daily_bars_with_holidays_are_daily(seed: int, drop: float) -> None:
    bars = synthetic_bars(["A"], n_bars=300, interval="1d", seed=seed)
    keep = np.random.default_rng(seed).random(bars.height) >= drop  # random holidays
    assert infer_interval(bars.filter(pl.Series(keep))) == "1d"


@pytest.mark.parametrize(("ts", "want"), [
    (_fx_hourly(), "60m"),
    (pl.datetime_range(_utc(2024, 1, 1), _utc(2024, 6, 1), "1w", time_zone="UTC",
                       eager=True), "1wk"),
    (pl.datetime_range(_utc(2024, 1, 2, 14, 30), _utc(2024, 1, 2, 21), "1m",
                       time_zone="UTC", eager=True), "1m"),
])
def test_fx_weekly_and_minute_bars(ts: pl.Series, want: str) -> None:
    assert infer_interval(ts) == want
    assert infer_interval(ts.to_numpy()) == want  # numpy datetime64 too


def test_us_session_hourly_bars_are_hourly_despite_the_nights() -> None:
    days = pl.date_range(_utc(2024, 1, 1), _utc(2024, 3, 1), eager=True)
    days = days.filter(days.dt.weekday() <= 5)
    ts = pl.concat([
        pl.datetime_range(datetime(d.year, d.month, d.day, 14, 30, tzinfo=timezone.utc),
                          datetime(d.year, d.month, d.day, 20, 30, tzinfo=timezone.utc),
                          "1h", time_zone="UTC", eager=True)
        for d in days.to_list()  # building the fixture, one step per day
    ])
    assert infer_interval(ts) == "60m" == normalize_interval("1h")


def test_a_spacing_that_is_no_interval_or_too_few_bars_is_one_sentence() -> None:
    ts = pl.datetime_range(_utc(2024, 1, 1), _utc(2024, 2, 1), "4h", time_zone="UTC",
                           eager=True)
    with pytest.raises(SourceError, match="4h apart, which is none of the supported"):
        infer_interval(ts)
    with pytest.raises(SourceError, match="no symbol has two bars"):
        infer_interval(_bars_at(ts.head(1)))


@pytest.fixture
def hourly_file(tmp_path: Path) -> Path:
    path = tmp_path / "EURUSD.parquet"
    _bars_at(_fx_hourly()).write_parquet(path)
    return path


def test_load_bars_refuses_an_interval_the_file_contradicts(hourly_file: Path) -> None:
    with pytest.raises(IntervalError, match=r"interval='1d' contradicts .*60m bars") as e:
        load_bars(["EURUSD"], source=str(hourly_file), interval="1d")
    assert "\n" not in str(e.value)
    assert load_bars(["EURUSD"], source=str(hourly_file), interval="1h").height > 100
    assert load_bars(["EURUSD"], source=str(hourly_file)).height > 100  # none: no check


def test_encode_records_the_inferred_interval(hourly_file: Path, tmp_path: Path) -> None:
    res = build_dataset(["EURUSD"], tmp_path / "ds", source=str(hourly_file))
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["interval"] == res.manifest["interval"] == "60m"
    syn = build_dataset(["AAA"], tmp_path / "syn", source="synthetic", interval="1h")
    assert syn.manifest["interval"] == "60m"  # canonical spelling


def test_encode_cli_refuses_a_contradicting_interval(hourly_file: Path,
                                                     tmp_path: Path) -> None:
    from candletok.cli import commands  # noqa: F401  (registers every command)
    from candletok.cli.app import app, flag_wording

    r = CliRunner().invoke(app, ["encode", "EURUSD", "--source", str(hourly_file),
                                 "--interval", "1d", "--out", str(tmp_path / "ds")])
    assert r.exit_code != 0
    assert isinstance(r.exception, IntervalError), r.output
    msg = flag_wording(str(r.exception))  # as the CLI prints it
    assert msg.startswith("--interval 1d contradicts") and "--interval 60m." in msg
    assert not (tmp_path / "ds").exists()
    r = CliRunner().invoke(app, ["encode", "EURUSD", "--source", str(hourly_file),
                                 "--out", str(tmp_path / "ok")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "ok" / "manifest.json").read_text())["interval"] == "60m"


def test_encode_refuses_bars_of_mixed_intervals(tmp_path: Path) -> None:
    folder = tmp_path / "bars"
    folder.mkdir()
    _bars_at(_fx_hourly(), "FX").write_parquet(folder / "FX.parquet")
    synthetic_bars(["IDX"], n_bars=200, interval="1d", seed=1).write_parquet(
        folder / "IDX.parquet")
    with pytest.raises(IntervalError, match="mix intervals"):
        build_dataset(["FX", "IDX"], tmp_path / "ds", source=str(folder), group_size=1)


def test_download_refuses_an_interval_the_file_contradicts(hourly_file: Path,
                                                           tmp_path: Path) -> None:
    from candletok.cli import commands  # noqa: F401  (registers every command)
    from candletok.cli.app import app

    out = tmp_path / "out.parquet"
    r = CliRunner().invoke(app, ["download", "EURUSD", "--source", str(hourly_file),
                                 "--interval", "1d", "--out", str(out)])
    assert isinstance(r.exception, IntervalError) and not out.exists()
    r = CliRunner().invoke(app, ["download", "EURUSD", "--source", str(hourly_file),
                                 "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "2024-01-07 22:00" in r.output  # printed as intraday bars: to the minute
