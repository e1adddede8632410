"""Bars to tokens and back: causal candle features, the Tokenizer base, the bins and
kmeans schemes, their registry, words for tokens and reconstruction quality."""
