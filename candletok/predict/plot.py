"""The fan charts of a forecast, drawn with the shared chart conventions of
:mod:`candletok.viz` (dates on the x axis without gaps, volume panel, symbol on the price
axis); this module only maps a forecast's arrays onto them: sampled continuations
(``generate``) or forecast quantiles (``predict --at``), each with the real bars that
followed drawn over it when a past origin is replayed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from candletok.viz.candles import Bars
from candletok.viz.fan import fan_chart, quantile_fan_chart


def _bars(d: dict[str, np.ndarray] | None) -> Bars | None:
    return None if d is None else Bars.from_frame(d)


def plot_fan(
    context: dict[str, np.ndarray],
    paths: dict[str, np.ndarray],
    out: str | Path,
    title: str = "",
    quantiles: tuple[float, float] = (0.1, 0.9),
    *,
    symbol: str = "",
    history_label: str = "real bars",
    interval: str = "1d",
    caveat: str = "",
    future_ts: np.ndarray | None = None,
    future_source: str = "",
    realized: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write a PNG: ``context`` (1-d ``open``/``high``/``low``/``close`` arrays, and
    ``ts`` and ``volume`` when known) as candles, then the sampled ``paths`` (dict of
    (S, n) arrays from ``rebuild_paths``; their closes are drawn) as a band, a median and
    a few labelled single paths; ``caveat`` (what was measured of direction skill at this
    horizon, in words) is printed under the chart. ``realized`` (arrays like ``context``)
    are the real bars after the last one, drawn over the fan."""
    return fan_chart(Bars.from_frame(context), paths["close"], out, symbol=symbol,
                     history_label=history_label, interval=interval, title=title, band=quantiles,
                     caveat=caveat, future_ts=future_ts, future_source=future_source,
                     realized=_bars(realized))


def plot_quantile_fan(
    context: dict[str, np.ndarray],
    quantiles: dict[float, np.ndarray],
    out: str | Path,
    *,
    symbol: str,
    forecaster: str,
    title: str = "",
    history_label: str = "real bars",
    interval: str = "1d",
    caveat: str = "",
    future_ts: np.ndarray | None = None,
    future_source: str = "",
    realized: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write a PNG of forecast close quantiles per future bar (level -> (n,) closes) after
    ``context``'s bars, with ``realized`` over them as in :func:`plot_fan`."""
    return quantile_fan_chart(Bars.from_frame(context), quantiles, out, symbol=symbol,
                              history_label=history_label, forecaster=forecaster,
                              interval=interval, title=title, caveat=caveat,
                              future_ts=future_ts, future_source=future_source,
                              realized=_bars(realized))
