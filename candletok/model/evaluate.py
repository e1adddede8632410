"""Scoring a model: bits per candle on a split, summed so that ranks can all-reduce the
sums, and the table of the model next to every baseline."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812

from candletok.core.ids import N_SPECIAL
from candletok.model.baselines import fit_baselines, score_baselines
from candletok.model.gpt import CandleGPT

MODEL_NAME = "CandleGPT"


@dataclass
class ScoreRow:
    """One row of the model-vs-baselines table: bits per candle on val and test."""

    name: str
    val: float
    test: float
    params: dict[str, float] = field(default_factory=dict)


def eval_windows(ds: Any, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(ds, "batch"):
        return ds.batch(ids)
    xs, ys = zip(*(ds[int(i)] for i in ids), strict=True)
    return torch.stack(xs).numpy(), torch.stack(ys).numpy()


@torch.no_grad()
def evaluate_sums(
    model: CandleGPT, ds: Any, batch_size: int = 64, max_windows: int = 0
) -> tuple[float, int]:
    """Total bits and number of candle targets of ``model`` on ``ds``'s windows (or an
    evenly spaced subset of ``max_windows`` of them)."""
    n = len(ds)
    if n == 0:
        return 0.0, 0
    ids = np.arange(n)
    if 0 < max_windows < n:
        ids = np.unique(np.linspace(0, n - 1, max_windows).round().astype(np.int64))
    was_training = model.training
    model.eval()
    dev = model.device
    total, count = 0.0, 0
    try:
        for chunk in np.array_split(ids, math.ceil(ids.size / batch_size)):
            x, y = eval_windows(ds, chunk)
            xt = torch.from_numpy(np.ascontiguousarray(x)).to(dev)
            yt = torch.from_numpy(np.ascontiguousarray(y)).to(dev)
            with autocast(dev):
                logits, _ = model(xt)
            logits = logits.float()
            logits[..., :N_SPECIAL] = float("-inf")  # score over candle tokens only
            mask = yt >= N_SPECIAL
            logp = F.log_softmax(logits[mask], dim=-1)  # (n, V)
            nll = -logp.gather(1, yt[mask][:, None]).squeeze(1)
            total += float(nll.sum()) / math.log(2)
            count += int(mask.sum())
    finally:
        model.train(was_training)
    return total, count


def evaluate(model: CandleGPT, ds: Any, batch_size: int = 64, max_windows: int = 0) -> float:
    """Bits per candle of ``model`` on a dataset split: mean -log2 P(next candle), with the
    distribution renormalized over candle tokens and padded targets ignored (NaN if the
    split holds no candles)."""
    total, count = evaluate_sums(model, ds, batch_size, max_windows)
    return total / count if count else float("nan")


def autocast(dev: torch.device) -> contextlib.AbstractContextManager[Any]:
    if dev.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()




def compare_to_baselines(
    model: CandleGPT, splits: Mapping[str, Any], batch_size: int = 64
) -> tuple[list[ScoreRow], str, bool, str]:
    """Score the model and every baseline (fit on train, tuned on val) on val and test.

    Returns the table rows (model first), the best n-gram of orders 0-3 (chosen on val),
    whether the
    model beats it (on test, or val when there is no test split) and a one-line verdict."""
    tr, va, te = splits["train"], splits.get("val"), splits.get("test")
    vocab = model.config.vocab_size

    def ser(ds: Any) -> list[np.ndarray]:
        return ds.series() if ds is not None else []

    val_s, test_s = ser(va), ser(te)
    models = fit_baselines(tr.series(), vocab, tune=val_s or None)
    rows = [ScoreRow(MODEL_NAME,
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
        summary = (f"{MODEL_NAME} beats the best n-gram baseline ({best.name}) on {on}: "
                   f"{m:.4f} vs {b:.4f} bits/candle ({b - m:.4f} fewer).")
    else:
        summary = (f"{MODEL_NAME} does NOT beat the best n-gram baseline ({best.name}) on {on}: "
                   f"{m:.4f} vs {b:.4f} bits/candle ({m - b:.4f} more); the n-gram is the "
                   "better predictor here.")
    return rows, best.name, beats, summary
