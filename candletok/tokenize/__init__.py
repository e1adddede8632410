"""Bars to tokens and back: causal candle features, the Tokenizer base, the bins and
kmeans schemes, their registry, words for tokens and reconstruction quality."""

# What the package offers: its modules. Names are imported from them; this file stays
# light, so importing one module never loads the others (nor torch).
__all__ = [
    "base", "bins", "calendar", "exchange", "features", "generation", "kmeans",
    "nearest_centroid",
    "quality", "registry",
    "words",
]
