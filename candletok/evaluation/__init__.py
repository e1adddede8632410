"""The evaluation harness: replays a split point in time, scores every forecaster against
the base rate and the volatility references, and fits the calibration maps that the
answers use (``calibrate``); ``simcal`` does the same for one pattern-search query."""
