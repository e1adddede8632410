"""The forecasters every evaluation runs, in one list: the base rate, the volatility
baselines (EWMA, HistVol20), the econometric references (GARCH(1,1)-t, HAR-RV) and the
n-gram. Its own module so that the interface (:mod:`~candletok.evaluation.forecasters`)
and the econometric fits (:mod:`~candletok.evaluation.econometric`) need not import each
other."""

from __future__ import annotations

from candletok.evaluation.econometric import GARCHt, HARRange
from candletok.evaluation.forecasters import BaseRate, EWMAVol, Forecaster, HistVol, NGram


def default_forecasters() -> list[Forecaster]:
    """The baselines every evaluation runs: base rate, EWMA, HistVol20, GARCH(1,1)-t,
    HAR-RV and the n-gram."""
    return [BaseRate(), EWMAVol(), HistVol(), GARCHt(), HARRange(), NGram()]
