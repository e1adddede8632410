"""Answers for a trader: takes a checkpoint and bars, gives the next-candle forecast with
its calibration, sampled continuations, stop and target odds, and their charts."""

# What the package offers: its modules. Names are imported from them; this file stays
# light, so importing one module never loads the others (nor torch).
__all__ = [
    "chosen", "continuation", "incremental", "latest", "live", "odds", "plot", "predict",
    "predictor", "replay",
]
