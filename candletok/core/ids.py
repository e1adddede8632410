"""Token ids and split names that every stage shares: one home, so that the tokenizer,
the dataset writer, the model and the baselines can never disagree about them."""

from __future__ import annotations

import numpy as np

from candletok.core.errors import DatasetError

PAD, BOS, EOS, MISSING = 0, 1, 2, 3
SPECIALS: dict[str, int] = {"PAD": PAD, "BOS": BOS, "EOS": EOS, "MISSING": MISSING}
N_SPECIAL = 4
"""Candle tokens are ids ``N_SPECIAL .. vocab_size - 1``."""

IGNORE_INDEX = -1
"""Target id of padded positions: the loss and every score skip it."""

SPLITS: tuple[str, ...] = ("train", "val", "test")
"""Time splits of a dataset, earliest first."""

_SPLIT_ALIASES = {"validation": "val", "valid": "val", "training": "train", "testing": "test"}


def normalize_split(split: str) -> str:
    """``"val"``, ``"Validation"`` (the Hugging Face name) ... -> one of :data:`SPLITS`."""
    key = str(split).strip().lower()
    key = _SPLIT_ALIASES.get(key, key)
    if key not in SPLITS:
        raise DatasetError(f"Unknown split {split!r}; use train, val (or validation) or test.")
    return key


def series_bounds(lengths: np.ndarray, pad: int = 1) -> np.ndarray:
    """``[start, end)`` of each series in the :func:`with_bos` layout (start = first BOS)."""
    lens = np.asarray(lengths, dtype=np.int64).reshape(-1)
    ends = np.cumsum(lens + pad)
    return np.stack([ends - lens - pad, ends], axis=1) if lens.size else np.zeros((0, 2), np.int64)


def with_bos(tokens: np.ndarray, lengths: np.ndarray, pad: int = 1,
             dtype: type = np.uint16) -> tuple[np.ndarray, np.ndarray]:
    """Series laid end to end, each preceded by ``pad`` BOS tokens, in one vectorized step.

    ``tokens`` holds the series back to back and ``lengths`` their sizes. Returns the flat
    array and each series' ``[start, end)`` bounds, where ``start`` is its first BOS. Every
    stage that turns series into model input (dataset writer, torch datasets, training,
    baselines) uses this one layout."""
    lens = np.asarray(lengths, dtype=np.int64).reshape(-1)
    toks = np.asarray(tokens).reshape(-1)
    if int(lens.sum()) != toks.size:
        raise ValueError("lengths must add up to the number of tokens")
    bounds = series_bounds(lens, pad)
    flat = np.full(int(bounds[-1, 1]) if lens.size else 0, BOS, dtype=dtype)
    real = np.ones(flat.size, bool)
    if lens.size:
        real[(bounds[:, :1] + np.arange(pad)[None, :]).ravel()] = False
    flat[real] = toks
    return flat, bounds.astype(np.int64)


def series_with_bos(series: list[np.ndarray], pad: int = 1,
                    dtype: type = np.int64) -> tuple[np.ndarray, np.ndarray]:
    """:func:`with_bos` over a list of per-series token arrays."""
    arrays = [np.asarray(s).reshape(-1) for s in series]
    lens = np.array([a.size for a in arrays], dtype=np.int64)
    flat = np.concatenate(arrays) if arrays else np.zeros(0, np.int64)
    return with_bos(flat, lens, pad, dtype)
