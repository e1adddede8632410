"""P(close up) per token: the one quantity that ties the token language to the question
"did the next close rise?". Learned in training from the stored closes and saved in the
checkpoint; ``predict`` and ``calibration`` read it back. No torch here."""

from __future__ import annotations

import logging
from typing import Any, Protocol

import numpy as np

from candletok.core.fallback import say_fallback
from candletok.core.ids import N_SPECIAL
from candletok.dataset.manifest import read_split
from candletok.model.split import SplitSource
from candletok.tokenize.base import Tokenizer

log = logging.getLogger(__name__)


class HasMeta(Protocol):
    """A model with checkpoint metadata (CandleGPT's ``meta``), typed without torch."""

    meta: dict[str, Any]


def candle_feature_table(tok: Tokenizer) -> np.ndarray:
    """(n_candle_tokens, d) representative features of every candle token."""
    return np.asarray(tok.decode_features(np.arange(N_SPECIAL, tok.vocab_size)), dtype=np.float64)


def up_mask(tok: Tokenizer) -> np.ndarray:
    """Boolean (vocab_size,): the candle tokens whose close is above the previous close."""
    F = candle_feature_table(tok)
    return np.concatenate([np.zeros(N_SPECIAL, bool), (F[:, 0] + F[:, 1]) > 0])


def closed_up(close: np.ndarray, prev_close: np.ndarray) -> np.ndarray:
    """The up-sign rule, 1.0 where a candle closed above the previous close, else 0.0: the
    one definition of "up" that the learned rates, the real outcomes and the evaluation's
    train rates all count by (an unchanged close is not up)."""
    return (np.asarray(close, dtype=np.float64) > np.asarray(prev_close, dtype=np.float64)
            ).astype(np.float64)


def smoothed_up_rates(tokens: np.ndarray, up: np.ndarray, tok: Tokenizer,
                      prior_weight: float = 2.0) -> np.ndarray:
    """(vocab_size,) P(close up | token) from candles ``tokens`` with outcomes ``up``
    (0/1, as :func:`closed_up` gives), each rate add-``prior_weight`` smoothed toward the
    sign of the token's representative candle (:func:`up_mask`), so a token never seen
    keeps that sign; special tokens get 0. The one counting rule behind the checkpoint's
    ``token_up_rate`` and the evaluation's train rates."""
    t = np.asarray(tokens, dtype=np.int64)
    V = int(tok.vocab_size)
    n = np.bincount(t, minlength=V)[:V].astype(np.float64)
    ups = np.bincount(t, weights=np.asarray(up, dtype=np.float64), minlength=V)[:V]
    prior = up_mask(tok).astype(np.float64)
    rate = (ups + prior_weight * prior) / (n + prior_weight)
    rate[:N_SPECIAL] = 0.0
    return rate


def real_up(ds: SplitSource) -> np.ndarray | None:
    """Per position of ``ds``'s flat token array: 1.0 if that candle closed above its
    previous close, 0.0 if not, NaN where unknown (BOS). None when
    ``ds`` has no stored rows to read the closes from (no dataset folder)."""
    if ds.root is None:
        return None
    bounds = ds.bounds
    rows = read_split(ds.root, ds.split)
    pc = rows["prev_close"].to_numpy().astype(np.float64)
    close = rows["close"].to_numpy().astype(np.float64)
    a, b = bounds[:, 0].astype(np.int64), bounds[:, 1].astype(np.int64)
    if pc.size != int((b - a - 1).sum()):
        return None  # rows and index disagree: do not guess
    out = np.full(int(b.max()) if b.size else 0, np.nan)
    series = np.repeat(np.arange(a.size), b - a - 1)
    pos = np.arange(pc.size) + series + 1  # candle r of the split sits after r's BOS count
    out[pos] = closed_up(close, pc)
    return out


def token_up_rates(ds: SplitSource, tok: Tokenizer,
                   prior_weight: float = 2.0) -> np.ndarray | None:
    """(vocab_size,) P(real close above previous close | token), learned on ``ds`` (the
    train split of a dataset folder) from the stored closes.

    Why not the token's representative candle alone: with coarse bins a "doji, no gap"
    token holds real candles that closed both up and down, and counting it by the sign of
    its representative biases P(close up) (measured on the demo: 58 % forecast, 49 %
    observed). Each token's rate is add-``prior_weight`` smoothed toward that sign, so a
    token never seen in train keeps it. None when ``ds`` has no stored rows."""
    real = real_up(ds)
    if real is None:
        return None
    flat = np.asarray(ds.tokens, dtype=np.int64)
    known = ~np.isnan(real)
    return smoothed_up_rates(flat[known], real[known], tok, prior_weight)


def up_probability(model: HasMeta, tok: Tokenizer) -> np.ndarray:
    """Per token, the probability that its candle closes up: the rates learned in training
    (saved in the checkpoint) when present, else the sign of the representative candle."""
    rates = model.meta.get("token_up_rate")
    if rates is not None and len(rates) == tok.vocab_size:
        return np.asarray(rates, dtype=np.float64)
    why = ("holds no learned P(close up) per token" if rates is None else
           f"holds {len(rates)} learned P(close up) rates for {tok.vocab_size} tokens")
    say_fallback(log, f"the checkpoint {why}; each token counts by the sign of its "
                 "representative candle, which biases P(close up) (retrain on a dataset "
                 "folder to learn the rates)")
    return up_mask(tok).astype(np.float64)
