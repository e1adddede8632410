"""Answers for a trader: takes a checkpoint and bars, gives the next-candle forecast,
its calibration, sampled continuations, charts and the end-to-end demo."""
