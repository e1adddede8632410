"""The price chart every candletok chart starts from, drawn the way a trading platform does.

Why these conventions: a trader reads a candlestick chart by its dates and by volume, and
expects weekends and holidays to take no room. So the x axis is the bar *index* (one slot
per bar, trading days without gaps, as mplfinance draws them) with the bars' dates as tick
labels, the ticks fall on the first bar of a natural period (week, month, quarter, year or
hour), a volume panel sits under the prices when the bars carry volume, and the price axis
is labelled with the symbol.

matplotlib directly, not mplfinance: the charts here extend past the last bar (forecast
fans, forward windows of matches), which mplfinance can only draw by padding the frame
with empty future rows, and mplfinance would bring pandas into a stage that takes Polars
frames. Drawing is vectorized (one LineCollection for the wicks, one PolyCollection for the
bodies), so a long history costs no Python loop per candle. The figures are made without
pyplot, so drawing never touches a global backend or a display.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from candletok.core.atomic import atomic_path
from candletok.core.times import INTERVALS, normalize_interval

UP, DOWN = "#26a69a", "#ef5350"
_US_PER_DAY = 86_400_000_000


@dataclass
class Bars:
    """One symbol's bars as numpy arrays: ``ts`` (datetime64[us], UTC) and float O/H/L/C
    and volume (NaN where missing)."""

    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    @classmethod
    def from_frame(cls, bars: pl.DataFrame | dict[str, Any]) -> Bars:
        """From a canonical frame (or a dict of its columns); ``volume`` may be absent."""
        get = bars.get if isinstance(bars, dict) else (
            lambda k: bars[k] if k in bars.columns else None)  # type: ignore[union-attr]

        def arr(key: str) -> np.ndarray:
            v = get(key)
            if v is None:
                return np.full(len(np.asarray(get("close"))), np.nan)
            if isinstance(v, pl.Series):
                return v.cast(pl.Float64).fill_null(float("nan")).to_numpy()
            return np.asarray(v, dtype=np.float64)

        ts = get("ts")
        n = len(np.asarray(get("close")))
        if ts is None:
            times = np.full(n, np.datetime64("NaT"), "datetime64[us]")
        elif isinstance(ts, pl.Series):
            times = ts.dt.replace_time_zone(None).cast(pl.Datetime("us")).to_numpy()
        else:
            times = np.asarray(ts).astype("datetime64[us]")
        return cls(times, arr("open"), arr("high"), arr("low"), arr("close"), arr("volume"))

    def __len__(self) -> int:
        return int(self.close.size)

    def tail(self, n: int) -> Bars:
        k = max(0, len(self) - n)
        return Bars(*(a[k:] for a in (self.ts, self.open, self.high, self.low, self.close,
                                      self.volume)))

    @property
    def has_volume(self) -> bool:
        v = self.volume
        return bool(v.size and np.isfinite(v).any() and np.nanmax(v) > 0)


def next_bar_times(last: np.datetime64, n: int, interval: str = "1d") -> np.ndarray:
    """Approximate open times of the ``n`` bars after ``last``, for labelling a forecast.

    Daily bars skip weekends (exchange holidays are not known here), weekly and monthly
    bars step by a week or a month, intraday bars by the interval (market closes are not
    known here either)."""
    interval = normalize_interval(interval)
    last = np.datetime64(last, "us")
    k = np.arange(1, n + 1)
    if interval == "1d":
        day = last.astype("datetime64[D]")
        return np.busday_offset(day, k, roll="forward").astype("datetime64[us]")
    if interval == "1wk":
        return last + (k * 7).astype("timedelta64[D]")
    if interval == "1mo":
        month = last.astype("datetime64[M]")
        return (month + k.astype("timedelta64[M]")).astype("datetime64[us]")
    minutes = int(INTERVALS[interval].total_seconds() // 60)
    return last + (k * minutes).astype("timedelta64[m]")


# Candidate tick periods, finest first: (name, length in microseconds or months, format).
_PERIODS: tuple[tuple[str, int, str], ...] = (
    ("hour", 1, "%m-%d %H:%M"), ("hour", 2, "%m-%d %H:%M"), ("hour", 4, "%m-%d %H:%M"),
    ("day", 1, "%Y-%m-%d"), ("week", 1, "%Y-%m-%d"), ("week", 2, "%Y-%m-%d"),
    ("month", 1, "%b %Y"), ("month", 3, "%b %Y"), ("month", 6, "%b %Y"),
    ("year", 1, "%Y"), ("year", 5, "%Y"), ("year", 10, "%Y"),
)


def _period_keys(ts: np.ndarray, kind: str, step: int) -> np.ndarray:
    us = ts.astype("datetime64[us]").astype(np.int64)
    if kind == "hour":
        return us // (3_600_000_000 * step)
    days = us // _US_PER_DAY
    if kind == "day":
        return days // step
    if kind == "week":  # weeks that start on Monday (1970-01-01 was a Thursday)
        return (days + 3) // (7 * step)
    months = ts.astype("datetime64[M]").astype(np.int64)
    return months // step if kind == "month" else months // (12 * step)


def date_ticks(ts: np.ndarray, max_ticks: int = 9,
               fmt: str | None = None) -> tuple[np.ndarray, list[str]]:
    """Tick positions (bar indices) and labels for bars at times ``ts``: the first bar of
    each period, for the finest period that gives at most ``max_ticks`` ticks.

    ``fmt`` writes every label in one ``strftime`` format (a chart whose titles name bar
    times in that format then shows one date format throughout); without it the label
    says the period ("Mar 2013" for months)."""
    ts = np.asarray(ts).astype("datetime64[us]")
    ok = ~np.isnat(ts)
    if not ok.any():
        return np.zeros(0, np.int64), []
    idx = np.flatnonzero(ok)
    t = ts[ok]
    span = (t.max() - t.min()).astype(np.int64)
    # bars shorter than a day: a day or week label also says at what time its first bar
    # opened, so hourly bars never read as one date (daily bars are stored at 00:00 UTC)
    intraday = bool((t.astype(np.int64) % _US_PER_DAY != 0).any())
    starts, label_format = np.zeros(1, np.int64), "%Y"
    for kind, step, period_format in _PERIODS:
        if kind == "hour" and span > 10 * _US_PER_DAY:
            continue
        keys = _period_keys(t, kind, step)
        starts = np.flatnonzero(np.diff(keys, prepend=keys[0] - 1) != 0)
        label_format = (period_format + " %H:%M" if intraday and kind in ("day", "week")
                        else period_format)
        if starts.size <= max_ticks:
            break
    if starts.size > 2 and starts[1] - starts[0] < 0.5 * np.median(np.diff(starts[1:])):
        starts = starts[1:]  # a period cut short at the left edge: its label would collide
    return idx[starts], [_format(t[i], fmt or label_format) for i in starts]


def _format(t: np.datetime64, fmt: str) -> str:
    return t.astype("datetime64[us]").item().strftime(fmt)


@dataclass
class PriceChart:
    """A figure with a price axis and, when the bars carry volume, a volume panel under it.

    ``x`` of bar i is i; positions after the last bar (``extra`` of them) are labelled with
    ``future_ts`` when given."""

    fig: Any
    price: Any
    volume: Any | None
    bars: Bars
    extra: int = 0
    handles: list[Any] = field(default_factory=list)  # legend entries not drawn as artists


def price_chart(bars: Bars, symbol: str, *, extra: int = 0,
                future_ts: np.ndarray | None = None, title: str = "",
                label: str | None = None, figsize: tuple[float, float] = (11, 6.5),
                dpi: int = 110) -> PriceChart:
    """Draw ``bars`` as candles (and volume) on a new figure; the caller adds overlays and
    calls :func:`save`. ``label`` puts the candles in the legend."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    fig = Figure(figsize=figsize, dpi=dpi)
    with_volume = bars.has_volume
    if with_volume:
        grid = fig.add_gridspec(2, 1, height_ratios=(3.2, 1), hspace=0.05)
        ax = fig.add_subplot(grid[0])
        vax = fig.add_subplot(grid[1], sharex=ax)
    else:
        ax, vax = fig.add_subplot(1, 1, 1), None
    x = np.arange(len(bars), dtype=np.float64)
    draw_candles(ax, x, bars.open, bars.high, bars.low, bars.close)
    if vax is not None:
        draw_volume(vax, x, bars.volume, bars.close >= bars.open)
        vax.set_ylabel("volume")
        ax.tick_params(labelbottom=False)
    ax.set_ylabel(f"{symbol} price" if symbol else "price")
    ax.grid(alpha=0.25, lw=0.5)
    if title:
        fig.suptitle(title, x=0.08, y=0.985, ha="left", fontsize=11)
    ax.set_xlim(-1, len(bars) + extra)
    times = bars.ts
    if extra:
        fut = (future_ts if future_ts is not None
               else np.full(extra, np.datetime64("NaT"), "datetime64[us]"))
        times = np.concatenate([times, np.asarray(fut).astype("datetime64[us]")[:extra]])
    pos, labels = date_ticks(times)
    bottom = vax if vax is not None else ax
    bottom.set_xticks(pos, labels, rotation=0, fontsize=8)
    chart = PriceChart(fig, ax, vax, bars, extra)
    if label:
        chart.handles.append(Patch(facecolor=UP, edgecolor=DOWN, label=label))
    return chart


def draw_candles(ax: Any, x: np.ndarray, o: np.ndarray, h: np.ndarray, lo: np.ndarray,
                 c: np.ndarray, width: float = 0.6, alpha: float = 1.0) -> None:
    """Candles at positions ``x``: green when the close is at or above the open."""
    from matplotlib.collections import LineCollection, PolyCollection

    x, o, h, lo, c = (np.asarray(a, np.float64) for a in (x, o, h, lo, c))
    colors = np.where(c >= o, UP, DOWN)
    wicks = np.stack([np.stack([x, lo], 1), np.stack([x, h], 1)], 1)  # (n, 2, 2)
    ax.add_collection(LineCollection(wicks, colors=colors, linewidths=0.8, alpha=alpha))
    y0, y1 = np.minimum(o, c), np.maximum(o, c)
    y1 = np.where(y1 - y0 < 1e-12, y0 + 1e-4 * np.abs(y0), y1)  # dojis stay visible
    hw = width / 2
    boxes = np.stack([np.stack([x - hw, y0], 1), np.stack([x - hw, y1], 1),
                      np.stack([x + hw, y1], 1), np.stack([x + hw, y0], 1)], 1)  # (n, 4, 2)
    ax.add_collection(PolyCollection(boxes, facecolors=colors, edgecolors=colors, alpha=alpha))
    ax.update_datalim(np.column_stack([np.r_[x - hw, x + hw], np.r_[lo, h]]))
    ax.autoscale_view()


def draw_volume(ax: Any, x: np.ndarray, volume: np.ndarray, up: np.ndarray,
                width: float = 0.6) -> None:
    """Volume bars coloured like their candles, as one PolyCollection (missing volume
    draws nothing)."""
    from matplotlib.collections import PolyCollection
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    x = np.asarray(x, np.float64)
    v = np.nan_to_num(np.asarray(volume, np.float64), nan=0.0)
    hw, zero = width / 2, np.zeros_like(v)
    boxes = np.stack([np.stack([x - hw, zero], 1), np.stack([x - hw, v], 1),
                      np.stack([x + hw, v], 1), np.stack([x + hw, zero], 1)], 1)
    colors = np.where(up, UP, DOWN)
    ax.add_collection(PolyCollection(boxes, facecolors=colors, edgecolors="none", alpha=0.6))
    ax.update_datalim(np.column_stack([np.r_[x - hw, x + hw], np.r_[zero, v]]))
    ax.autoscale_view()
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.25, lw=0.5)
    ax.yaxis.set_major_locator(MaxNLocator(3))
    ax.yaxis.set_major_formatter(FuncFormatter(_human))


def legend(chart: PriceChart, ncol: int = 2) -> None:
    """One legend for everything drawn on the price axis with a label, candles first,
    above the axes (so it never hides a bar)."""
    handles, _ = chart.price.get_legend_handles_labels()
    chart.price.legend(handles=[*chart.handles, *handles], loc="lower left",
                       bbox_to_anchor=(0.0, 1.01), ncol=ncol, fontsize=8, frameon=False,
                       borderaxespad=0.0)


def _human(v: float, _pos: object = None) -> str:
    """Volume tick labels a trader reads at a glance: 350k, 1.2M, 3B."""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:g}{unit}"
    return f"{v:g}"


def save(chart: PriceChart, out: str | Path) -> Path:
    """Write the chart as a PNG atomically (a temporary name, then rename)."""
    out = Path(out)
    chart.fig.subplots_adjust(left=0.08, right=0.98, top=0.84, bottom=0.08)
    with atomic_path(out) as tmp:
        chart.fig.savefig(tmp, format="png")
    return out
