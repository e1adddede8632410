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

from candletok.viz.candles import Bars, legend, next_bar_times, price_chart, save

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
) -> Path:
    """Write the fan chart as a PNG.

    ``future_ts`` (datetime64, one per sampled bar) are the times the continuation's bars
    were given (an exchange's sessions, say) and ``future_source`` names that rule; without
    them the chart steps the interval from the last bar, skipping weekends only.

    ``caveat`` is printed under the chart: what is known of the forecaster's direction
    skill at this horizon, so that a drifting median is not read as a forecast.

    ``history`` holds the real bars drawn as candles (``history_label`` says where they
    come from, e.g. "real daily bars"), ``closes`` the sampled closes, shape (S, n), of
    ``S`` continuations of ``n`` bars that start from the last close of ``history``."""
    closes = np.asarray(closes, dtype=np.float64)
    if closes.ndim != 2 or closes.shape[1] < 1:
        raise ValueError("closes must have shape (samples, bars) with at least one bar")
    S, n = closes.shape
    n_ctx = len(history)
    last_ts = history.ts[-1] if n_ctx else None
    if future_ts is not None and len(future_ts) == n:
        future = np.asarray(future_ts).astype("datetime64[us]")
    else:
        future_source = ""
        future = (next_bar_times(last_ts, n, interval)
                  if last_ts is not None and not np.isnat(last_ts) else None)
    chart = price_chart(history, symbol, extra=n, future_ts=future, title=title,
                        label=history_label)
    ax = chart.price
    last = float(history.close[-1]) if n_ctx else float(np.median(closes[:, 0]))
    xf = np.arange(n_ctx - 1, n_ctx + n, dtype=np.float64)  # from the last real close on

    def from_last(y: np.ndarray) -> np.ndarray:
        return np.concatenate([[last], y])

    lo_q, hi_q = np.quantile(closes, band, axis=0)
    ax.fill_between(xf, from_last(lo_q), from_last(hi_q), color="#42a5f5", alpha=0.22,
                    lw=0, label=f"{band[0]:.0%}-{band[1]:.0%} of the {S} sampled closes, "
                                "bar by bar")
    ax.plot(xf, from_last(np.median(closes, axis=0)), color="#1565c0", lw=1.8,
            label=f"median of the {S} sampled closes")
    for color, q, k in zip(_PATH_COLORS, sample_quantiles,
                           pick_sample_paths(closes[:, -1], sample_quantiles), strict=False):
        ax.plot(xf, from_last(closes[k]), color=color, lw=0.9, alpha=0.9,
                label=f"one sampled path (#{k + 1}, ends near the {q:.0%} quantile)")
    sep = f"last real bar, {_day(last_ts)}" if last_ts is not None else "last real bar"
    ax.axvline(n_ctx - 0.5, color="grey", ls=":", lw=1, label=sep)
    if chart.volume is not None:
        chart.volume.axvline(n_ctx - 0.5, color="grey", ls=":", lw=1)
    ax.autoscale_view()
    ax.set_xlim(-1, n_ctx + n)
    legend(chart)
    where = chart.volume if chart.volume is not None else ax
    lines = [caveat] if caveat else []
    if future is not None:
        note = (f"forecast times from {future_source}" if future_source else
                "forecast dates skip weekends, not holidays" if interval == "1d"
                else "forecast times assume no market close")
        lines.insert(0, f"real bars | sampled continuation ({note})")
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
