"""Scoring a model: bits per candle on a split, summed so that ranks can all-reduce the
sums, and the table of the model next to every baseline.

:func:`window_logits` is the one evaluation loop: it runs the model over a split's fixed
windows (eval mode, no gradients, bf16 autocast on a GPU) and hands back the logits of
every candle target. :func:`evaluate_sums` turns them into bits; the evaluation stage's
calibration turns them into P(close up). For distributed evaluation each rank passes its
``rank``/``world_size`` (it then scores every ``world_size``-th window) and the caller
all-reduces the ``(bits, count)`` pair."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812

from candletok.core.errors import ModelError
from candletok.core.ids import N_SPECIAL
from candletok.dataset.torchdata import window_calendar, window_levels
from candletok.model.arch import TokenModel
from candletok.model.baselines import fit_baselines, score_baselines
from candletok.model.split import SplitSource

MODEL_NAME = "CandleGPT"  # the default model's name; a table row takes its model's own


@dataclass
class ScoreRow:
    """One row of the model-vs-baselines table: bits per candle on val and test."""

    name: str
    val: float
    test: float
    params: dict[str, float] = field(default_factory=dict)


@dataclass
class WindowLogits:
    """One batch of evaluation windows and the model's logits at their candle targets.

    ``mask`` (B, context) marks the positions whose target is a candle; ``logits`` (n, V)
    and ``targets`` (n,) hold those positions only, in row-major order of ``mask``, with the
    special tokens' logits at -inf (every score is over candle tokens only)."""

    ids: np.ndarray
    mask: np.ndarray
    targets: torch.Tensor
    logits: torch.Tensor


def window_ids(n: int, max_windows: int = 0, rank: int = 0, world_size: int = 1) -> np.ndarray:
    """The windows to score of ``n``: all of them, or ``max_windows`` evenly spaced ones;
    then this rank's share (every ``world_size``-th, starting at ``rank``), so that the
    ranks together score each chosen window once."""
    ids = np.arange(n, dtype=np.int64)
    if 0 < max_windows < n:
        ids = np.unique(np.linspace(0, n - 1, max_windows).round().astype(np.int64))
    return ids[rank::world_size]


def eval_windows(ds: SplitSource, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Windows ``ids`` of ``ds`` as contiguous int64 ``(x, y)`` arrays."""
    x, y = ds.batch(ids)[:2]  # a TokenDataset opened with a calendar also gives its ids
    return np.ascontiguousarray(x, dtype=np.int64), np.ascontiguousarray(y, dtype=np.int64)


def split_calendar(model: TokenModel, ds: SplitSource) -> np.ndarray | None:
    """The flat calendar ids of ``ds`` (:meth:`SplitSource.calendar_ids`) when ``model``
    reads calendar inputs, None when it does not; a split without timestamps is an
    error then."""
    if model.calendar is None:
        return None
    cal = ds.calendar_ids(model.calendar)
    if cal is None:
        raise ModelError(f"The model reads calendar inputs but the {ds.split} split has no "
                         "timestamps to compute them from.")
    return cal


@torch.no_grad()
def window_logits(
    model: TokenModel, ds: SplitSource, ids: np.ndarray, batch_size: int = 64
) -> Iterator[WindowLogits]:
    """The model's candle-target logits over windows ``ids`` of ``ds``, ``batch_size``
    windows at a time. The model is in eval mode while the iterator runs and gets its
    previous mode back when it ends (or is closed)."""
    was_training = model.training
    model.eval()
    dev = model.device
    cal = split_calendar(model, ds)
    lv = ds.level_inputs() if model.config.levels else None
    try:
        for chunk in np.array_split(ids, max(1, math.ceil(ids.size / batch_size))):
            if chunk.size == 0:
                continue
            x, y = eval_windows(ds, chunk)
            xt = torch.from_numpy(x).to(dev)
            yt = torch.from_numpy(y).to(dev)
            ct = None
            if cal is not None and model.calendar is not None:
                ct = torch.from_numpy(window_calendar(cal, ds.starts[chunk], x,
                                                      model.calendar)).to(dev)
            vt = None if lv is None else torch.from_numpy(
                window_levels(lv, ds.starts[chunk], x)).to(dev)
            with autocast(dev):
                logits, _ = model(xt, cal=ct, lv=vt)
            logits = logits.float()
            logits[..., :N_SPECIAL] = float("-inf")  # score over candle tokens only
            mask = yt >= N_SPECIAL
            yield WindowLogits(chunk, mask.cpu().numpy(), yt[mask], logits[mask])
    finally:
        model.train(was_training)


@torch.no_grad()
def evaluate_sums(
    model: TokenModel, ds: SplitSource, batch_size: int = 64, max_windows: int = 0,
    rank: int = 0, world_size: int = 1,
) -> tuple[float, int]:
    """Total bits and number of candle targets of ``model`` on ``ds``'s windows (or an
    evenly spaced subset of ``max_windows`` of them; this rank's share of them). Sums, not
    a mean, so that ranks can all-reduce them before dividing."""
    total, count = 0.0, 0
    for w in window_logits(model, ds, window_ids(len(ds), max_windows, rank, world_size),
                           batch_size):
        logp = F.log_softmax(w.logits, dim=-1)  # (n, V)
        nll = -logp.gather(1, w.targets[:, None]).squeeze(1)
        total += float(nll.sum()) / math.log(2)
        count += int(w.targets.numel())
    return total, count


def bits_per_candle(total: float, count: int) -> float:
    """Mean bits per candle from summed bits and candle count (NaN when there are none)."""
    return total / count if count else float("nan")


def evaluate(model: TokenModel, ds: SplitSource, batch_size: int = 64,
             max_windows: int = 0) -> float:
    """Bits per candle of ``model`` on a dataset split: mean -log2 P(next candle), with the
    distribution renormalized over candle tokens and padded targets ignored (NaN if the
    split holds no candles)."""
    return bits_per_candle(*evaluate_sums(model, ds, batch_size, max_windows))


def autocast(dev: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on a GPU that has it; nothing on CPU (fp32 is faster there)."""
    if dev.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def compare_to_baselines(
    model: TokenModel, splits: Mapping[str, SplitSource | None], batch_size: int = 64
) -> tuple[list[ScoreRow], str, bool, str]:
    """Score the model and every baseline (fit on train, tuned on val) on val and test.

    Returns the table rows (model first), the best n-gram of orders 0-3 (chosen on val),
    whether the model beats it (on test, or val when there is no test split) and a
    one-line verdict."""
    tr, va, te = splits["train"], splits.get("val"), splits.get("test")
    assert tr is not None
    vocab = model.config.vocab_size

    def ser(ds: SplitSource | None) -> list[np.ndarray]:
        return ds.series() if ds is not None else []

    val_s, test_s = ser(va), ser(te)
    models = fit_baselines(tr.series(), vocab, tune=val_s or None)
    name = getattr(model, "name", MODEL_NAME)
    rows = [ScoreRow(name,
                     evaluate(model, va, batch_size) if va is not None else float("nan"),
                     evaluate(model, te, batch_size) if te is not None else float("nan"))]
    for b in score_baselines(models, {"val": val_s, "test": test_s}, vocab):
        rows.append(ScoreRow(b.name, b.scores["val"], b.scores["test"], b.params))
    # The unigram is the order-0 n-gram: on little data it can beat every longer context.
    ngrams = [r for r in rows if r.name.startswith("ngram") or r.name == "unigram"]
    key = "val" if all(math.isfinite(r.val) for r in ngrams) else "test"
    best = min(ngrams, key=lambda r: getattr(r, key))
    on = "test" if math.isfinite(rows[0].test) else "val"
    m, b = getattr(rows[0], on), getattr(best, on)
    if not (math.isfinite(m) and math.isfinite(b)):
        return rows, best.name, False, "No val/test candles to score; encode with a later split."
    beats = m < b
    if beats:
        summary = (f"{name} beats the best n-gram baseline ({best.name}) on {on}: "
                   f"{m:.4f} vs {b:.4f} bits/candle ({b - m:.4f} fewer).")
    else:
        summary = (f"{name} does NOT beat the best n-gram baseline ({best.name}) on {on}: "
                   f"{m:.4f} vs {b:.4f} bits/candle ({m - b:.4f} more); the n-gram is the "
                   "better predictor here.")
    return rows, best.name, beats, summary
