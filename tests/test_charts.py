"""Issue 24, the charts: `similar` draws every match on a grid that fits them, with volume
panels, one date format, matches in the volatility units their distances are measured in
and distances with the digits they need; the evaluate chart's daily/intraday label and
its EWMA line drawn visibly over the others."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from candletok.core.display import significant
from candletok.data.synthetic import synthetic_bars
from candletok.dataset.build import build_dataset
from candletok.search import plot as plot_mod
from candletok.search.similar import similar

PARAMS = {"gap_bins": 3, "body_bins": 3, "upper_bins": 2, "lower_bins": 2}
SYMS = ["AA", "BB", "CC"]


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bars = synthetic_bars(SYMS, n_bars=400, seed=5)

    def loader(symbols: list[str], **_: Any) -> pl.DataFrame:
        return bars.filter(pl.col("symbol").is_in(symbols))

    root = tmp_path_factory.mktemp("charts") / "ds"
    build_dataset(SYMS, root, loader=loader, tokenizer_params=PARAMS)
    return root


@pytest.fixture(scope="module")
def res20(ds: Path) -> Any:
    return similar(ds, "AA", last=3, mode="nearest", top=20, horizons=(1, 3, 5))


@pytest.fixture(scope="module")
def figs(res20: Any) -> dict[int | None, Any]:
    """The chart with 7 match panels and with every listed one (None), drawn once."""
    return {n: plot_mod.similar_figure(res20, n) for n in (7, None)}


def _match_axes(fig: Any) -> list[Any]:
    return [ax for ax in fig.axes if ax.get_title().startswith("#")]


@pytest.mark.parametrize(("n", "shape"), [(1, (1, 1)), (3, (3, 1)), (8, (4, 2)),
                                          (20, (5, 4)), (7, (4, 2)), (12, (4, 3))])
def test_grid_shape_fits_the_matches(n: int, shape: tuple[int, int]) -> None:
    assert plot_mod.grid_shape(n) == shape


@given(st.integers(1, 200))
def test_grid_shape_holds_every_match_and_no_empty_row(n: int) -> None:
    cols, rows = plot_mod.grid_shape(n)
    assert 1 <= cols <= 5 and cols * rows >= n > cols * (rows - 1)


@pytest.mark.parametrize("asked", [7, None])
def test_every_asked_match_is_drawn_with_its_volume(res20: Any, figs: dict[int | None, Any],
                                                    asked: int | None) -> None:
    assert res20._e.size == 20
    fig, n = figs[asked], asked or 20  # None: every listed match
    panels = _match_axes(fig)
    assert [ax.get_title().split()[0] for ax in panels] == [f"#{i}" for i in range(1, n + 1)]
    # a volume panel under the query and under every match, one histogram per horizon
    assert len(fig.axes) == 2 * (1 + n) + 3
    vols = [ax for ax in fig.axes if ax.get_shared_x_axes().joined(ax, panels[0])
            and ax is not panels[0]]
    assert len(vols) == 1 and vols[0].collections  # the volume bars are drawn
    cols, rows = plot_mod.grid_shape(n)
    centres = [np.mean([ax.get_position().x0, ax.get_position().x1]) for ax in panels]
    first, last = centres[:cols], centres[(rows - 1) * cols:]
    assert np.mean(last) == pytest.approx(np.mean(first), abs=0.01)  # a short row is centred
    hists = [ax for ax in fig.axes if "forward return" in ax.get_title()]
    assert len(hists) == 3
    span = max(a.get_position().x1 for a in hists) - min(a.get_position().x0 for a in hists)
    assert span > 0.9 * (max(a.get_position().x1 for a in panels)
                         - min(a.get_position().x0 for a in panels))  # no empty 4th slot


def test_one_date_format_on_the_whole_chart(res20: Any, figs: dict[int | None, Any]) -> None:
    fig = figs[7]
    labels = [t.get_text() for ax in fig.axes if "forward return" not in ax.get_title()
              for t in ax.get_xticklabels() if t.get_text()]
    assert len(labels) > 10
    for lab in labels:  # every tick a date in the titles' format ("%Y-%m-%d": daily bars)
        datetime.strptime(lab, res20.time_format)
    assert res20.time_format == "%Y-%m-%d"


def test_query_is_drawn_in_its_own_volatility_units(res20: Any) -> None:
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    plot_mod._match_panel(ax, None, res20, int(res20._e[0]), 1,
                          plot_mod.series_limits(res20._idx, res20._rule.T))
    (line,) = [ln for ln in ax.get_lines() if ln.get_label().startswith("query closes")]
    q = res20.query
    want = np.log(q["close"].to_numpy() / q["close"][-1]) / q["scale"][-1]
    assert np.allclose(line.get_ydata(), want, rtol=1e-12) and line.get_ydata()[-1] == 0.0
    assert "vol units" in ax.get_ylabel()


def test_distance_label_has_the_digits_it_needs(res20: Any) -> None:
    tiny = res20.matches.with_columns(pl.lit(0.0003).alias("distance"))
    res = type(res20)(**{**res20.__dict__, "matches": tiny})
    assert plot_mod.match_title(res, 1).endswith("d=0.000300")
    assert plot_mod.match_title(res20, 1).endswith(f"d={significant(res20.matches['distance'][0])}")


@settings(max_examples=300, deadline=None)
@given(st.floats(1e-12, 1e6, allow_nan=False, allow_infinity=False))
def test_significant_keeps_three_digits(v: float) -> None:
    text = significant(v)
    assert float(text.replace(",", "")) == pytest.approx(v, rel=5e-3, abs=0.5 if v >= 1000
                                                         else 0.0)
    assert text not in ("0.00", "0")
    assert significant(float("nan")) == "-" and significant(0.0) == "0"


# ---- the evaluate chart ----------------------------------------------------------------
def _range_report(ts: np.ndarray) -> Any:
    from types import SimpleNamespace

    n = ts.size
    rng = np.random.default_rng(0)
    ewma = 0.02 + 0.002 * rng.standard_normal(n)
    return SimpleNamespace(split="test", range=[], plot_data={
        "symbol": "AAPL", "ts": ts, "realized": np.abs(ewma + 0.01 * rng.standard_normal(n)),
        "forecasts": {"EWMA": ewma, "CandleGPT": 1.0001 * ewma, "ngram-1": ewma}})


def _draw_range(ts: np.ndarray) -> Any:
    from matplotlib.figure import Figure

    from candletok.evaluation import evalplot

    ax = Figure().add_subplot()
    evalplot._range_chart(ax, _range_report(ts), ["CandleGPT", "EWMA", "ngram-1"])
    return ax


DAY_US, HOUR_US = 86_400_000_000, 3_600_000_000
DAILY_TS = 1_356_998_400_000_000 + DAY_US * np.arange(120, dtype=np.int64)  # from 2013-01-01
HOURLY_TS = 1_356_998_400_000_000 + 14 * HOUR_US + HOUR_US * np.arange(120, dtype=np.int64)


def test_no_gaps_label_says_trading_days_only_on_daily_bars() -> None:
    daily, hourly = _draw_range(DAILY_TS).get_xlabel(), _draw_range(HOURLY_TS).get_xlabel()
    assert "trading days, no gaps" in daily
    assert "trading days" not in hourly and "UTC" in hourly and "without gaps" in hourly


def test_ewma_line_stays_visible_over_lines_it_coincides_with() -> None:
    lines = {ln.get_label().split(" (")[0]: ln for ln in _draw_range(DAILY_TS).get_lines()}
    ewma = lines["EWMA"]
    assert ewma.get_zorder() > max(ln.get_zorder() for k, ln in lines.items() if k != "EWMA")
    assert ewma.get_linestyle() not in ("-", "solid") and ewma.get_marker() == "o"
    assert ewma.get_markevery() == 4  # sparse markers: 120 points / 30
    assert all(lines[k].get_linestyle() == "-" for k in ("CandleGPT", "ngram-1"))


def test_date_ticks_in_one_format_and_no_collision_at_the_left_edge() -> None:
    from candletok.viz.candles import date_ticks

    # business days from a Thursday: the first week holds two bars, the rest five
    days = np.busday_offset("2012-03-08", np.arange(60), roll="forward").astype("datetime64[us]")
    pos, labels = date_ticks(days, max_ticks=9)
    assert pos[0] == 2 and labels[0] == "2012-03-12"  # the two-bar week's label is dropped
    assert np.diff(pos).min() >= 0.5 * np.median(np.diff(pos))
    _, same = date_ticks(days, max_ticks=9, fmt="%Y-%m-%d")
    for lab in same:
        datetime.strptime(lab, "%Y-%m-%d")
