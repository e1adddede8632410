"""CandleGPT (and its recurrent baseline, CandleLSTM) and its yardsticks: takes a dataset
folder, gives a trained checkpoint, bits per candle next to n-gram baselines, and per-token
P(close up)."""

# What the package offers: its modules. Names are imported from them; this file stays
# light, so importing one module never loads the others (nor torch).
__all__ = [
    "arch", "baselines", "checkpoint", "config", "ddp", "evaluate", "gpt", "layers", "lstm",
    "run", "runtime", "sampler", "size", "split", "train", "updown",
]
