"""The evaluation harness: replays a split point in time, scores every forecaster against
the base rate and the volatility references, and fits the calibration maps that the
answers use (``calibrate``); ``simcal`` does the same for one pattern-search query."""

# What the package offers: its modules. Names are imported from them; this file stays
# light, so importing one module never loads the others (nor torch).
__all__ = [
    "analogues",
    "calibrate",
    "conformal",
    "econometric",
    "evalplot",
    "evaluate",
    "forecasters",
    "forecastfile",
    "gptcast",
    "history",
    "odds",
    "oddsscore",
    "references",
    "rows",
    "scores",
    "simcal",
    "winner",
]
