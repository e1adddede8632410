"""Forecasts for the latest bars of several symbols, read from the right source.

Why a module of its own: ``candletok predict AAPL MSFT --dataset ds`` should read the
bars from where the dataset's bars came from (its manifest's ``source``: the bundled
sample, a file, Yahoo) unless told otherwise, so that a dataset built offline is not
forecast from a network source the user never asked for.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from candletok.core.errors import SourceError
from candletok.core.fallback import say_fallback
from candletok.data.sources import is_path_source, load_bars, normalize_symbols
from candletok.dataset.manifest import read_manifest
from candletok.evaluation.calibrate import (
    CalibratedProbability,
    calibrate_probability,
    saved_fit,
)
from candletok.model.checkpoint import FitFacts
from candletok.predict.predict import (
    UNITS,
    Calibration,
    Prediction,
    measured_check,
    predict_next,
)

log = logging.getLogger(__name__)


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
                    interval: str = "1d", repair: bool = True,
                    bars: pl.DataFrame | None = None,
                    predictor: Any = None) -> list[Prediction]:
    """The next-candle forecast after the last bar of each symbol, in the given order
    (bars loaded once for all of them; or ``bars``, already loaded, e.g. by a caller that
    also samples paths from them). ``predictor``: the numbers ``evaluate`` scores
    (:func:`~candletok.predict.predict.predict_next`)."""
    syms = normalize_symbols(symbols)
    if not syms:
        raise SourceError("Give at least one symbol to forecast.")
    if bars is None:
        bars = load_bars(syms, source=source, interval=interval, repair=repair)
    return [predict_next(model, tok, bars.filter(pl.col("symbol") == s), predictor)
            for s in syms]


@dataclass
class BaseRate:
    """The one base rate a ``predict`` answer shows, named by the split it comes from
    (``train``: known before any forecast), and where it was read."""

    value: float | None
    split: str | None = None
    source: str = "unknown"  # "calibration", "checkpoint", "dataset" or "unknown"

    def text(self) -> str:
        if self.value is None:
            return "unknown (an older checkpoint that does not record it; give the dataset)"
        return f"{self.value:.1%} ({self.split} share of up closes)"

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "split": self.split, "from": self.source}


def one_base_rate(model: Any, saved: dict[str, Any] | None,
                  dataset: str | Path | None) -> BaseRate:
    """The base rate of a ``predict`` answer, and the only one: the calibration's (the
    train frequency ``evaluate`` fit the maps about), else the checkpoint's
    ``train_base_rate``, else the dataset's train split's share of up closes."""
    fit = saved_fit(saved, None, 1)
    if fit is not None and fit.get("base_rate") is not None:
        return BaseRate(float(fit["base_rate"]), "train", "calibration")
    rate = FitFacts.of(getattr(model, "meta", None)).train_base_rate
    if rate is not None:
        return BaseRate(rate, "train", "checkpoint")
    if dataset is not None:
        from candletok.dataset.torchdata import TokenDataset
        from candletok.predict.predict import train_base_rate

        rate = train_base_rate(model, TokenDataset(dataset, "train", context=8))
        if rate is not None:
            return BaseRate(rate, "train", "dataset")
    return BaseRate(None)


def answer_cps(preds: Sequence[Prediction], saved: dict[str, Any] | None,
               interval: str | None) -> list[CalibratedProbability]:
    """The calibrated P(close up) of each forecast; a symbol the model never trained on
    gets none (its calibrated skill was never measured), with the reason in words."""
    out = []
    for pr in preds:
        cp = calibrate_probability(pr.p_close_up, saved, symbol=pr.symbol,
                                   interval=pr.interval or interval)
        if pr.in_training is False and cp.calibrated:
            cp = CalibratedProbability(cp.raw, None, "none", cp.base_rate, reason=(
                f"{pr.symbol} was not in the model's training data; no skill was measured "
                "on it"))
        out.append(cp)
    return out


def recorded_check(saved: dict[str, Any] | None, dataset: str | Path,
                   model: str | Path = "MODEL") -> Calibration | None:
    """``predict --dataset``'s test check: what ``candletok evaluate`` scored of the model's
    P(close up) at h=1 on that dataset (:func:`~candletok.predict.predict.measured_check`).
    None, said once in words, when evaluate never measured it or measured it on another
    dataset: a check on other data is not this answer's."""
    from candletok.model.checkpoint import dataset_fingerprint

    cal = measured_check(saved)
    if cal is None:
        say_fallback(log, f"no test check of P(close up) is shown: `candletok evaluate` has "
                     f"not measured this model on {dataset} (run `candletok evaluate "
                     f"--model {model} --dataset {dataset}`)")
        return None
    want = (saved or {}).get("dataset_fingerprint")
    if want is not None and want != dataset_fingerprint(dataset):
        say_fallback(log, f"no test check of P(close up) is shown: the calibration file's "
                     f"was measured on another dataset than {dataset} (rerun `candletok "
                     f"evaluate` on it)")
        return None
    return cal


def answer_verdict(cps: Sequence[CalibratedProbability], cal: Calibration | None,
                   base: BaseRate) -> str:
    """The one verdict of a ``predict`` answer on P(close up), in words: the test check
    when one was made (the numbers shown, against the same base rate), else the val skill
    of the calibration, else that it was never measured."""
    b = base.text()
    if cal is not None:
        better = np.isfinite(cal.skill) and cal.skill > 0
        return (f"On {cal.split} ({cal.n:,} candles) the {cal.probability} P(close up) scored "
                f"Brier {cal.brier:.4f} vs {cal.brier_base:.4f} for the base rate {b}: "
                f"{'better' if better else 'NOT better'} than always saying the base rate "
                f"(skill {cal.skill:+.3f}).")
    cp = next((c for c in cps if c.calibrated), None)
    if cp is None:
        why = next((c.reason for c in cps if c.reason), None) or "no calibration"
        return (f"Direction skill of P(close up) was never measured ({why}); the base rate "
                f"is {b}.")
    if cp.shows_skill:
        return f"P(close up) has shown skill on val ({cp.skill_text()}); the base rate is {b}."
    return (f"The model has shown no skill for P(next close up) on val ({cp.skill_text()} "
            f"includes zero); the base rate, {b}, is the better guide.")


def forecast_report(predictions: Sequence[Prediction],
                    calibration: Calibration | None = None,
                    calibrated: Sequence[Any] | None = None,
                    base: BaseRate | None = None, verdict: str | None = None
                    ) -> dict[str, Any]:
    """Every forecast (with its calibrated P(close up), when given: one
    :class:`~candletok.evaluation.calibrate.CalibratedProbability` per forecast; null with
    the reason in words where no calibration applies), the one base rate (named by its
    split), the one verdict and the test-split calibration check, when made, as one
    JSON-ready document with the units of its numbers."""
    rows = [p.to_dict() for p in predictions]
    for row, cp in zip(rows, calibrated or [], strict=False):
        row["p_close_up_calibrated"] = cp.to_dict()
        row["p_close_up_calibrated_reason"] = cp.reason if not cp.calibrated else None
    return {
        "units": dict(UNITS),
        "base_rate": None if base is None else base.to_dict(),
        "verdict": verdict,
        "predictions": rows,
        "calibration": None if calibration is None else calibration.to_dict(),
    }
