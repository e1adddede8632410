"""The one default model size, chosen on val (docs/model.md, "Choosing the defaults,
measured"): :class:`~candletok.model.config.TrainConfig` and
:class:`~candletok.model.gpt.GPTConfig` both read it, so the size a user gets from
``candletok train`` and from ``GPTConfig()`` is the same. Torch-free, and importing
nothing, so neither config depends on the other."""

from __future__ import annotations

CONTEXT = 128  # tokens of context per window
N_LAYER = 2  # transformer blocks
N_HEAD = 4  # attention heads
N_EMBD = 64  # embedding width (a multiple of the heads)
DROPOUT = 0.2
BIAS = False
ARCHS = ("gpt", "lstm")  # the model bodies a checkpoint may name (model/arch.py maps them)

__all__ = ["ARCHS", "BIAS", "CONTEXT", "DROPOUT", "N_EMBD", "N_HEAD", "N_LAYER"]
