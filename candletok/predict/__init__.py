"""Answers for a trader: takes a checkpoint and bars, gives the next-candle forecast with
its calibration, sampled continuations, stop and target odds, and their charts."""
