"""CandleGPT and its yardsticks: takes a dataset folder, gives a trained checkpoint,
bits per candle next to n-gram baselines, and per-token P(close up)."""
