"""Chart conventions (candletok/viz): bar-index x with date labels (weekends take no
room), a volume panel exactly when the bars carry volume, the symbol on the price axis,
and a fan chart whose every drawn element is in the legend."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from candletok.data.sample import load_sample
from candletok.viz.candles import Bars, date_ticks, next_bar_times, price_chart, save
from candletok.viz.fan import fan_chart, pick_sample_paths

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def aapl() -> Bars:
    return Bars.from_frame(load_sample(["AAPL"]).tail(60))


def test_candles_sit_on_consecutive_slots_across_weekends(aapl: Bars) -> None:
    from matplotlib.collections import PolyCollection

    chart = price_chart(aapl, "AAPL")
    bodies = next(c for c in chart.price.collections if isinstance(c, PolyCollection))
    centers = np.array([p.vertices[:4, 0].mean() for p in bodies.get_paths()])
    assert np.allclose(centers, np.arange(len(aapl)))  # one slot per bar, no weekend gaps
    gaps = np.diff(aapl.ts).astype("timedelta64[D]").astype(int)
    assert gaps.max() >= 3  # the data does skip weekends, the x axis does not


def test_date_ticks_are_period_starts_with_date_labels(aapl: Bars) -> None:
    pos, labels = date_ticks(aapl.ts)
    assert 2 <= len(pos) <= 9 and len(labels) == len(pos)
    for p, label in zip(pos[1:], labels[1:], strict=True):  # the first tick is bar 0
        day = aapl.ts[p].astype("datetime64[D]").item()
        assert label in (day.strftime("%Y-%m-%d"), day.strftime("%b %Y"))
        prev = aapl.ts[p - 1].astype("datetime64[D]").item()
        assert prev.isocalendar()[1] != day.isocalendar()[1] or prev.month != day.month
    pos, labels = date_ticks(load_sample(["IBM"])["ts"].dt.replace_time_zone(None).to_numpy())
    assert all(len(lb) == 4 and lb.isdigit() for lb in labels)  # years over 13 years


def test_volume_panel_only_with_volume_and_the_symbol_on_the_price_axis(aapl: Bars) -> None:
    chart = price_chart(aapl, "AAPL")
    assert chart.volume is not None and chart.price.get_ylabel() == "AAPL price"
    no_volume = Bars(aapl.ts, aapl.open, aapl.high, aapl.low, aapl.close,
                     np.full(len(aapl), np.nan))
    assert price_chart(no_volume, "AAPL").volume is None
    labels = [t.get_text() for t in chart.volume.get_xticklabels()]
    assert any(lb.startswith("2013") for lb in labels)  # dates, not bar numbers


def test_next_bar_times_skip_weekends_for_daily_bars() -> None:
    friday = np.datetime64("2013-03-01T00:00", "us")
    days = next_bar_times(friday, 6, "1d").astype("datetime64[D]").astype(str).tolist()
    assert days == ["2013-03-04", "2013-03-05", "2013-03-06", "2013-03-07", "2013-03-08",
                    "2013-03-11"]
    five = next_bar_times(np.datetime64("2024-01-02T15:55", "us"), 2, "5m")
    assert five.astype(str).tolist() == ["2024-01-02T16:00:00.000000",
                                         "2024-01-02T16:05:00.000000"]
    hour = next_bar_times(np.datetime64("2024-01-02T15:00", "us"), 1, "1h")  # an alias
    assert hour.astype(str).tolist() == ["2024-01-02T16:00:00.000000"]


def test_pick_sample_paths_are_distinct_and_near_their_quantiles() -> None:
    finals = np.arange(100.0)
    ks = pick_sample_paths(finals, (0.1, 0.5, 0.9))
    assert len(set(ks)) == 3 and [abs(finals[k] - q * 99) <= 1 for k, q in
                                  zip(ks, (0.1, 0.5, 0.9), strict=True)] == [True] * 3
    assert pick_sample_paths(np.ones(2), (0.1, 0.5, 0.9)) == [0, 1]


def test_fan_chart_draws_what_its_legend_explains(aapl: Bars, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import candletok.viz.fan as fan

    seen: dict[str, object] = {}
    real_save = fan.save

    def spy(chart: object, out: Path) -> Path:
        seen["chart"] = chart
        return real_save(chart, out)  # type: ignore[arg-type]

    monkeypatch.setattr(fan, "save", spy)
    rng = np.random.default_rng(0)
    closes = aapl.close[-1] * np.exp(np.cumsum(rng.normal(0, 0.02, (50, 10)), axis=1))
    out = fan_chart(aapl, closes, tmp_path / "fan.png", symbol="AAPL",
                    history_label="real bars from the dataset", title="t")
    assert out.read_bytes()[:8] == PNG
    chart = seen["chart"]
    ax = chart.price  # type: ignore[attr-defined]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts[0] == "real bars from the dataset"
    assert any("10%-90%" in t for t in texts) and any("median" in t for t in texts)
    assert sum("one sampled path" in t for t in texts) == 3
    assert any("last real bar, 2013-03-01" in t for t in texts)
    drawn = [ln.get_label() for ln in ax.get_lines()]
    assert all(not lb.startswith("_") for lb in drawn), drawn  # every line is in the legend
    # the band starts at the last real close and the x axis runs on past the last bar
    assert ax.get_xlim()[1] >= len(aapl) + 9
    labels = [t.get_text() for t in chart.volume.get_xticklabels()]  # type: ignore[attr-defined]
    assert any(lb.startswith("2013-03") for lb in labels[-3:])  # forecast dates too


def test_bars_from_frame_keeps_utc_times_and_missing_volume(tmp_path: Path) -> None:
    df = pl.DataFrame({"ts": [datetime(2024, 1, 2), datetime(2024, 1, 3)],
                       "open": [1.0, 2.0], "high": [2.0, 3.0], "low": [0.5, 1.0],
                       "close": [1.5, 2.5], "volume": [None, 3.0]},
                      schema_overrides={"volume": pl.Float64}).with_columns(
        pl.col("ts").dt.replace_time_zone("UTC"))
    b = Bars.from_frame(df)
    assert b.ts.astype(str).tolist()[0].startswith("2024-01-02T00:00")
    assert np.isnan(b.volume[0]) and b.has_volume
    out = save(price_chart(b, "X"), tmp_path / "x.png")
    assert out.read_bytes()[:8] == PNG


def test_intraday_ticks_and_the_fan_legend_carry_the_time() -> None:
    """Hourly bars over two weeks get day ticks, and each says the hour its first bar
    opened; daily bars keep plain dates (issue 20: hourly charts showed dates only)."""
    from candletok.data.synthetic import synthetic_bars
    from candletok.viz.fan import _day

    ts = synthetic_bars("EURUSD", n_bars=24 * 14, interval="1h")["ts"]
    times = ts.dt.replace_time_zone(None).to_numpy()
    pos, labels = date_ticks(times)
    assert labels and all(
        lb == times[p].astype("datetime64[us]").item().strftime("%Y-%m-%d %H:%M")
        for p, lb in zip(pos[1:], labels[1:], strict=True)) and ":" in labels[-1]
    assert _day(times[-1]) == times[-1].astype("datetime64[us]").item().strftime(
        "%Y-%m-%d %H:%M")
    assert _day(np.datetime64("2013-03-01T00:00", "us")) == "2013-03-01"


def test_the_fan_draws_the_continuations_own_bar_times(aapl: Bars, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Given the exchange-calendar times the sampled bars were made with, the fan's axis
    uses them (Good Friday 2013-03-29 skipped) and says where they came from."""
    import candletok.viz.fan as fan

    seen: dict[str, object] = {}
    real = fan.price_chart

    def spy(*a: object, **k: object) -> object:
        seen["future_ts"] = k.get("future_ts")
        chart = real(*a, **k)
        seen["chart"] = chart
        return chart

    monkeypatch.setattr(fan, "price_chart", spy)
    times = np.array(["2013-03-28", "2013-04-01", "2013-04-02"], dtype="datetime64[us]")
    closes = np.full((5, 3), float(aapl.close[-1]))
    fan.fan_chart(aapl, closes, tmp_path / "f.png", symbol="AAPL", history_label="real",
                  future_ts=times, future_source="XNYS sessions")
    assert np.array_equal(seen["future_ts"], times)
    chart = seen["chart"]
    where = chart.volume if chart.volume is not None else chart.price  # type: ignore[attr-defined]
    assert "forecast times from XNYS sessions" in where.get_xlabel()
    fan.fan_chart(aapl, closes, tmp_path / "g.png", symbol="AAPL", history_label="real")
    assert not np.array_equal(seen["future_ts"], times)  # without them: the weekly step
