"""Forecasts for the latest bars of several symbols, read from the right source.

Why a module of its own: ``candletok predict AAPL MSFT --dataset ds`` should read the
bars from where the dataset's bars came from (its manifest's ``source``: the bundled
sample, a file, Yahoo) unless told otherwise, so that a dataset built offline is not
forecast from a network source the user never asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from candletok.core.errors import SourceError
from candletok.data.sources import is_path_source, load_bars, normalize_symbols
from candletok.dataset.manifest import read_manifest
from candletok.forecast.predict import UNITS, Calibration, Prediction, predict_next


def bars_source(source: str | None, dataset: str | Path | None) -> str:
    """The source to read bars from: ``source`` when given, else the dataset's own (its
    manifest's ``source``), else ``auto``."""
    if source is not None:
        return source
    if dataset is None:
        return "auto"
    own = str(read_manifest(dataset).get("source") or "auto")
    if is_path_source(own) and not Path(own).expanduser().exists():
        raise SourceError(
            f"The dataset {dataset} was built from {own}, which is not there from here; "
            "give the bars to forecast from as source=."
        )
    return own


def predict_symbols(model: Any, tok: Any, symbols: Sequence[str], *, source: str = "auto",
                    interval: str = "1d", repair: bool = True) -> list[Prediction]:
    """The next-candle forecast after the last bar of each symbol, in the given order
    (bars loaded once for all of them)."""
    syms = normalize_symbols(symbols)
    if not syms:
        raise SourceError("Give at least one symbol to forecast.")
    bars = load_bars(syms, source=source, interval=interval, repair=repair)
    return [predict_next(model, tok, bars.filter(pl.col("symbol") == s)) for s in syms]


def forecast_report(predictions: Sequence[Prediction],
                    calibration: Calibration | None = None,
                    calibrated: Sequence[Any] | None = None) -> dict[str, Any]:
    """Every forecast (with its calibrated P(close up), when given: one
    :class:`~candletok.forecast.calibrate.CalibratedProbability` per forecast) and the
    test-split calibration check, when made, as one JSON-ready document with the units of
    its numbers."""
    rows = [p.to_dict() for p in predictions]
    for row, cp in zip(rows, calibrated or [], strict=False):
        row["p_close_up_calibrated"] = cp.to_dict()
    return {
        "units": dict(UNITS),
        "predictions": rows,
        "calibration": None if calibration is None else calibration.to_dict(),
    }
