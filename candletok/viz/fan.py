"""The forecast fan: a symbol's real last bars, then where sampled continuations went.

What is drawn is what a reader can trust and what the legend explains: the real bars (and
their volume), the 10-90% band of the sampled closes at each future bar, the median of
those closes, and a few single sampled paths, each labelled as one draw. A single draw can
leave the band (the band is per bar, over all draws), so the sampled paths are thin lines
named for where they end, never candles that look like a forecast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from candletok.viz.candles import (
    Bars,
    draw_candles,
    draw_volume,
    legend,
    next_bar_times,
    price_chart,
    save,
)

_PATH_COLORS = ("#8e24aa", "#ef6c00", "#2e7d32")


def pick_sample_paths(finals: np.ndarray, quantiles: tuple[float, ...]) -> list[int]:
    """Indices of the draws whose final value is nearest each quantile of ``finals``
    (distinct draws; fewer when there are fewer draws)."""
    finals = np.asarray(finals, np.float64)
    chosen: list[int] = []
    for q in quantiles:
        target = np.quantile(finals, q)
        for i in np.argsort(np.abs(finals - target), kind="stable"):
            if int(i) not in chosen:
                chosen.append(int(i))
                break
    return chosen


def fan_chart(
    history: Bars,
    closes: np.ndarray,
    out: str | Path,
    *,
    symbol: str,
    history_label: str,
    interval: str = "1d",
    title: str = "",
    band: tuple[float, float] = (0.1, 0.9),
    sample_quantiles: tuple[float, ...] = (0.1, 0.5, 0.9),
    caveat: str = "",
    future_ts: np.ndarray | None = None,
    future_source: str = "",
    realized: Bars | None = None,
) -> Path:
    """Write the fan chart as a PNG.

    ``future_ts`` (datetime64, one per sampled bar) are the times the continuation's bars
    were given (an exchange's sessions, say) and ``future_source`` names that rule; without
    them the chart steps the interval from the last bar, skipping weekends only.

    ``caveat`` is printed under the chart: what is known of the forecaster's direction
    skill at this horizon, so that a drifting median is not read as a forecast.

    ``history`` holds the real bars drawn as candles (``history_label`` says where they
    come from, e.g. "real daily bars"), ``closes`` the sampled closes, shape (S, n), of
    ``S`` continuations of ``n`` bars that start from the last close of ``history``.

    ``realized`` (a replay of a past origin: ``generate --at``) are the real bars that
    followed the last bar of ``history``, at most ``n`` of them (fewer, or none, where
    the data ends): drawn over the fan as faint candles with their closes as a black
    line, so what was forecast and what happened read on one axis."""
    closes = np.asarray(closes, dtype=np.float64)
    if closes.ndim != 2 or closes.shape[1] < 1:
        raise ValueError("closes must have shape (samples, bars) with at least one bar")
    S, n = closes.shape
    lo_q, hi_q = np.quantile(closes, band, axis=0)
    fan = _Fan(history, n, symbol, history_label, interval, title, future_ts, future_source,
               "sampled continuation")
    fan.band(lo_q, hi_q, f"{band[0]:.0%}-{band[1]:.0%} of the {S} sampled closes, bar by bar")
    fan.line(np.median(closes, axis=0), f"median of the {S} sampled closes", "#1565c0", 1.8)
    for color, q, k in zip(_PATH_COLORS, sample_quantiles,
                           pick_sample_paths(closes[:, -1], sample_quantiles), strict=False):
        fan.line(closes[k], f"one sampled path (#{k + 1}, ends near the {q:.0%} quantile)",
                 color, 0.9)
    return fan.finish(out, caveat, realized)


def quantile_fan_chart(
    history: Bars,
    quantiles: dict[float, np.ndarray],
    out: str | Path,
    *,
    symbol: str,
    history_label: str,
    forecaster: str,
    interval: str = "1d",
    title: str = "",
    caveat: str = "",
    future_ts: np.ndarray | None = None,
    future_source: str = "",
    realized: Bars | None = None,
) -> Path:
    """Write a fan drawn from forecast quantiles of the close at each of ``n`` future
    bars (``quantiles``: level -> (n,) closes, e.g. 0.05, 0.1, 0.5, 0.9, 0.95): the outer
    pair as a light band, the inner pair darker, the median as a line; the rest as in
    :func:`fan_chart`. ``forecaster`` names who forecast them (``predict --at``: the
    numbers ``evaluate --forecasts`` scored at that origin)."""
    levels = sorted(quantiles)
    if not levels:
        raise ValueError("quantiles must hold at least one level")
    n = int(np.asarray(quantiles[levels[0]]).size)
    fan = _Fan(history, n, symbol, history_label, interval, title, future_ts, future_source,
               "forecast quantiles")
    half = len(levels) // 2  # (lowest, highest), then inwards: one pair per band
    pairs = list(zip(levels[:half], levels[::-1][:half], strict=True))
    for j, (a, b) in enumerate(pairs):  # outermost first, lighter
        fan.band(np.asarray(quantiles[a], np.float64), np.asarray(quantiles[b], np.float64),
                 f"{a:.0%}-{b:.0%} of {forecaster}'s forecast close",
                 alpha=0.14 + 0.12 * j / max(1, len(pairs) - 1))
    mid = min(levels, key=lambda q: abs(q - 0.5))
    fan.line(np.asarray(quantiles[mid], np.float64), f"{forecaster}'s {mid:.0%} quantile",
             "#1565c0", 1.8)
    return fan.finish(out, caveat, realized)


class _Fan:
    """The shared frame of a fan: the real bars, the x positions of the ``n`` future
    bars (from the last real close on), and the notes and legend under and above it."""

    def __init__(self, history: Bars, n: int, symbol: str, history_label: str,
                 interval: str, title: str, future_ts: np.ndarray | None,
                 future_source: str, what: str) -> None:
        self.n_ctx, self.n, self.interval, self.what = len(history), n, interval, what
        self.last_ts = history.ts[-1] if self.n_ctx else None
        if future_ts is not None and len(future_ts) == n:
            self.future = np.asarray(future_ts).astype("datetime64[us]")
        else:
            future_source = ""
            self.future = (next_bar_times(self.last_ts, n, interval)
                           if self.last_ts is not None and not np.isnat(self.last_ts)
                           else None)
        self.source = future_source
        self.chart = price_chart(history, symbol, extra=n, future_ts=self.future, title=title,
                                 label=history_label)
        self.last = float(history.close[-1]) if self.n_ctx else float("nan")
        # from the last real close on
        self.xf = np.arange(self.n_ctx - 1, self.n_ctx + n, dtype=np.float64)

    def _from_last(self, y: np.ndarray) -> np.ndarray:
        first = self.last if np.isfinite(self.last) else float(np.asarray(y)[0])
        return np.concatenate([[first], y])

    def band(self, lo: np.ndarray, hi: np.ndarray, label: str, alpha: float = 0.22) -> None:
        self.chart.price.fill_between(self.xf, self._from_last(lo), self._from_last(hi),
                                      color="#42a5f5", alpha=alpha, lw=0, label=label)

    def line(self, y: np.ndarray, label: str, color: str, lw: float) -> None:
        self.chart.price.plot(self.xf, self._from_last(y), color=color, lw=lw,
                              alpha=1.0 if lw > 1 else 0.9, label=label)

    def realized(self, bars: Bars) -> None:
        """The real bars after the origin over the fan: faint candles, their closes as a
        black line with markers from the last real close on, their volume faint below."""
        k = min(len(bars), self.n)
        ax = self.chart.price
        if k == 0:
            return
        x = np.arange(self.n_ctx, self.n_ctx + k, dtype=np.float64)
        draw_candles(ax, x, bars.open[:k], bars.high[:k], bars.low[:k], bars.close[:k],
                     alpha=0.35)
        ax.plot(np.r_[self.n_ctx - 1, x], self._from_last(bars.close[:k]), color="black",
                lw=1.4, marker="o", ms=3, zorder=7,
                label=f"what happened: the real closes after {_day(self.last_ts)} "
                      f"({k} of {self.n} bars)")
        if self.chart.volume is not None and np.isfinite(bars.volume[:k]).any():
            draw_volume(self.chart.volume, x, bars.volume[:k],
                        bars.close[:k] >= bars.open[:k])

    def finish(self, out: str | Path, caveat: str, realized: Bars | None) -> Path:
        chart, ax, n_ctx, n = self.chart, self.chart.price, self.n_ctx, self.n
        if realized is not None:
            self.realized(realized)
        sep = (f"last real bar, {_day(self.last_ts)}" if self.last_ts is not None
               else "last real bar")
        ax.axvline(n_ctx - 0.5, color="grey", ls=":", lw=1, label=sep)
        if chart.volume is not None:
            chart.volume.axvline(n_ctx - 0.5, color="grey", ls=":", lw=1)
            chart.volume.set_xlim(-1, n_ctx + n)
        ax.autoscale_view()
        ax.set_xlim(-1, n_ctx + n)
        legend(chart)
        where = chart.volume if chart.volume is not None else ax
        lines = [caveat] if caveat else []
        if realized is not None and len(realized) < n:
            lines.append(f"the data holds {len(realized)} of the {n} bars after the origin")
        if self.future is not None:
            note = (f"forecast times from {self.source}" if self.source else
                    "forecast dates skip weekends, not holidays" if self.interval == "1d"
                    else "forecast times assume no market close")
            what = f"real bars | {self.what}" + (
                "" if realized is None else ", the real bars that followed over it")
            lines.insert(0, f"{what} ({note})")
        if lines:
            where.set_xlabel("\n".join(lines), fontsize=8)
        return save(chart, out)


def _day(t: np.datetime64 | None) -> str:
    """The bar's date, with its time (UTC) when it did not open at midnight (an intraday
    bar: daily bars are stored at 00:00 UTC)."""
    if t is None or np.isnat(t):
        return ""
    us = np.datetime64(t, "us")
    if us == np.datetime64(t, "D"):
        return str(np.datetime64(t, "D"))
    return str(np.datetime64(t, "m")).replace("T", " ")
