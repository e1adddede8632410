"""Every origin's forecast as one table, and the one function that turns a forecast into
the numbers a user is shown.

Why a table: a score is only worth trusting if the forecasts behind it can be read one by
one, and ``predict --at T`` is only honest if it prints what the evaluation scored at T.
:func:`shown_values` is the single place where a :class:`~candletok.evaluation.forecasters.
Forecast` becomes the shown numbers (raw P(up), the val-fit map applied, the range times
its val- or train-fit constant, the return quantiles); ``evaluate --forecasts`` writes
its output for every origin (:func:`forecast_frame`) and the
:class:`~candletok.predict.predictor.Predictor` calls it for one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from candletok.core.atomic import atomic_write, refuse_existing
from candletok.core.errors import OutputError
from candletok.evaluation.conformal import INTERVAL_COLUMNS, interval_bands
from candletok.evaluation.forecasters import LEVELS, Forecast
from candletok.evaluation.history import SPLIT_CODE, History

__all__ = ["FORECAST_COLUMNS", "QUANTILE_COLUMNS", "check_forecasts_path", "forecast_frame",
           "shown_values", "write_forecasts"]

QUANTILE_COLUMNS: dict[str, int] = {"q05": 3, "q10": 0, "q50": 1, "q90": 2, "q95": 4}
"""Column name -> index in :data:`~candletok.evaluation.forecasters.LEVELS` (forward log
return quantiles at 5, 10, 50, 90, 95%)."""
assert all(abs(LEVELS[i] - int(k[1:]) / 100) < 1e-12 for k, i in QUANTILE_COLUMNS.items())

FORECAST_COLUMNS: tuple[str, ...] = (
    "symbol", "origin", "split", "forecaster", "horizon", "p_up_raw", "p_up", "range_raw",
    "range", *QUANTILE_COLUMNS, *INTERVAL_COLUMNS)
"""The forecasts file's columns. ``origin`` is the open time of the last bar the forecast
saw (what ``predict --at`` takes); ``p_up`` is the calibrated P(close at origin + h above
the close at origin) (the raw number for a forecaster that learns nothing, null for a
learned one without a map); ``range`` is the next candle's ln(high / low) after the one
fitted constant (``range_raw`` before it); ``q05`` ... ``q95`` are the forward log
return's quantiles; ``lo80 hi80 lo90 hi90`` its conformal 80% and 90% intervals and
``range_lo80 ... range_hi90`` the next range's (:mod:`~candletok.evaluation.conformal`,
fit on val; null without a fit)."""

_SUFFIXES = (".parquet", ".csv")


def shown_values(fc: Forecast, cmap: Any | None, range_a: float | None,
                 calibrate: bool = True, intervals: Any | None = None,
                 aci: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray | None]:
    """The shown numbers of every origin of ``fc``: ``p_up_raw``; ``p_up``, ``cmap``
    applied to it (``cmap``: anything with ``apply``, a
    :class:`~candletok.evaluation.calibrate.CalibrationMap`; ``calibrate=False``: the raw
    number itself, for a forecaster that learns nothing; None without a map);
    ``range_raw`` and ``range`` (``range_a`` times it; None without a constant); the
    quantile columns (None where ``fc`` has none); the interval columns, from the
    conformal fit ``intervals`` (an :class:`~candletok.evaluation.conformal.IntervalFit`,
    with ACI's per-origin offsets ``aci`` when it chose ACI; None: no intervals)."""
    n = fc.rows.size
    raw = None if fc.p_up is None else np.asarray(fc.p_up, dtype=np.float64)
    if raw is None:
        cal = None
    elif not calibrate:
        cal = raw
    else:
        cal = None if cmap is None else np.asarray(cmap.apply(raw), dtype=np.float64)
    rng = None if fc.range_mean is None else np.asarray(fc.range_mean, dtype=np.float64)
    out: dict[str, np.ndarray | None] = {
        "p_up_raw": raw, "p_up": cal, "range_raw": rng,
        "range": None if rng is None or range_a is None else float(range_a) * rng}
    q = fc.quantiles
    for name, j in QUANTILE_COLUMNS.items():
        out[name] = None if q is None or q.shape[1] <= j else np.asarray(q[:n, j], np.float64)
    out.update(interval_bands(fc, intervals, aci, range_a))
    return out


def forecast_frame(hist: History, panels: Mapping[int, Any],
                   maps: Mapping[str, Mapping[int, Any]],
                   consts: Mapping[str, tuple[float, float]],
                   learned: set[str], intervals: Mapping[str, Mapping[int, Any]] | None = None,
                   walks: Mapping[str, Mapping[int, Any]] | None = None) -> pl.DataFrame:
    """One row per (symbol, origin, forecaster, horizon) of the evaluated ``panels``
    (horizon -> :class:`~candletok.evaluation.evaluate.Panel`), the numbers from
    :func:`shown_values` with each learned forecaster's val-fit map (``maps``) and each
    forecaster's range constant ``a`` (``consts``), its conformal fits (``intervals``)
    and ACI's offsets over these origins (``walks``). Sorted by forecaster, horizon,
    symbol, origin."""
    names = np.array(sorted(SPLIT_CODE, key=SPLIT_CODE.__getitem__))
    parts = []
    for h, panel in sorted(panels.items()):
        for name, fc in panel.fc.items():
            if fc.rows.size == 0:
                continue
            cmap = maps.get(name, {}).get(h)
            const = consts.get(name)
            vals = shown_values(fc, cmap, None if const is None else const[0],
                                calibrate=name in learned,
                                intervals=(intervals or {}).get(name, {}).get(h),
                                aci=(walks or {}).get(name, {}).get(h))
            n = fc.rows.size
            cols: dict[str, Any] = {
                "symbol": hist.symbol[fc.rows].astype(str),
                "origin": pl.Series(hist.ts[fc.rows]).cast(pl.Datetime("us", "UTC")),
                "split": names[hist.split[fc.rows]],
                "forecaster": [name] * n, "horizon": np.full(n, int(h), np.int32)}
            for k, v in vals.items():
                cols[k] = pl.Series(k, np.full(n, np.nan) if v is None else v).fill_nan(None)
            parts.append(pl.DataFrame(cols))
    if not parts:
        return pl.DataFrame(schema={c: pl.Float64 for c in FORECAST_COLUMNS})
    return pl.concat(parts).select(FORECAST_COLUMNS).sort(
        "forecaster", "horizon", "symbol", "origin", maintain_order=True)


def check_forecasts_path(path: str | Path, overwrite: bool = False) -> Path:
    """Refuse a forecasts file of another kind than Parquet or CSV (by its extension),
    or one that exists, unless ``overwrite``: before any work, so a refusal costs
    nothing."""
    p = Path(path)
    if p.suffix.lower() not in _SUFFIXES:
        raise OutputError(f"--forecasts writes .parquet or .csv files, not {p.name!r}; "
                          "name the file with one of those extensions.")
    refuse_existing(p, overwrite)
    return p


def write_forecasts(df: pl.DataFrame, path: str | Path, overwrite: bool = False) -> Path:
    """Write the forecasts table atomically, as Parquet or CSV by ``path``'s extension
    (CSV times in ISO 8601 with their offset)."""
    p = check_forecasts_path(path, overwrite)
    if p.suffix.lower() == ".csv":
        return atomic_write(p, lambda t: df.write_csv(t))
    return atomic_write(p, lambda t: df.write_parquet(t, compression="zstd"))
