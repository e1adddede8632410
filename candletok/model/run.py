"""A training run's state: a fresh model and optimizer, or the run a checkpoint saved
(weights, optimizer moments, step, history, best weights, early-stopping count, RNG).

Kept apart from :mod:`candletok.model.train` (the loop, the boundary evaluations and the
checkpoints it writes) because setting a run up is its own job: the model's shape from the
split (features, calendar inputs, the output bias at the train unigram) and the checks a
resume must pass before a single step runs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from candletok.core.errors import CandletokError, ModelError
from candletok.core.fallback import say_fallback
from candletok.core.ids import N_SPECIAL
from candletok.model.arch import build_model, checkpoint_arch
from candletok.model.checkpoint import check_fingerprint, fit_facts, restore_weights
from candletok.model.config import TrainConfig, calendar_spec
from candletok.model.gpt import CandleGPT, GPTConfig
from candletok.model.lstm import LSTMConfig
from candletok.model.split import SplitSource, vocab_json
from candletok.model.updown import token_up_rates
from candletok.tokenize.calendar import CalendarSpec

log = logging.getLogger(__name__)


# -- init / resume --------------------------------------------------------------------------
@dataclass
class BestWeights:
    """The best val so far, the step and (``keep_best``) a CPU copy of those weights, and
    ``stale``: how many scheduled evaluations have passed without beating it (early
    stopping compares it with ``patience``)."""

    val: float = math.inf
    step: int = 0
    state: dict[str, torch.Tensor] | None = None
    stale: int = 0


@dataclass
class RunState:
    """Everything a run carries from step to step, and everything a checkpoint saves."""

    cfg: TrainConfig
    gcfg: GPTConfig | LSTMConfig  # the model's shape, of cfg.arch
    model: CandleGPT  # or its subclass CandleLSTM (cfg.arch)
    opt: torch.optim.Optimizer
    train_split: SplitSource
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best: BestWeights = field(default_factory=BestWeights)
    last_val: float | None = None
    up_rate: list[float] | None = None
    vocab_text: str | None = None
    wrapped: torch.nn.Module | None = None  # the DDP wrapper the steps run through, if any
    facts: dict[str, Any] = field(default_factory=dict)  # fit_facts(train split), recorded


def _token_feature_table(ds: SplitSource) -> np.ndarray | None:
    """(vocab_size, d) representative features of every token from the split's vocab, or
    None when it has no tokenizer to ask."""
    tok = ds.tokenizer()
    if tok is None:
        return None
    return np.asarray(tok.decode_features(np.arange(tok.vocab_size)), dtype=np.float64)


def _up_rates(ds: SplitSource) -> list[float] | None:
    """P(real close up | token) from the train split's stored closes, for ``predict``.

    None when they cannot be learned; the model then counts each token by the sign of its
    representative candle (:func:`~candletok.model.updown.up_probability`), which biases
    P(close up), so why is said once as a warning rather than swallowed."""
    why = "the training split has no vocabulary to read its tokens with"
    tok = ds.tokenizer()
    rates = None
    if tok is not None:
        try:
            rates = token_up_rates(ds, tok)
            why = "the training split has no stored closes (no dataset folder beside it)"
        except (OSError, CandletokError) as exc:
            why = f"the training split's closes could not be read ({exc})"
    if rates is None:
        say_fallback(log, f"P(close up) per token was not learned: {why}; the checkpoint "
                     "will count each token by its representative candle's sign")
        return None
    return [float(x) for x in rates]


def _calendar(tr: SplitSource, cfg: TrainConfig) -> CalendarSpec | None:
    """The calendar the new model reads (:func:`calendar_spec`); ``auto`` turns it off for
    a split without timestamps, ``on`` refuses one."""
    spec = calendar_spec(cfg.calendar, tr.interval, cfg.calendar_tz)
    if spec is None or tr.calendar_ids(spec) is not None:  # computed once, kept by tr
        return spec
    if cfg.calendar == "on":
        raise ModelError("calendar='on' needs timestamps, and the training split has none; "
                         "use calendar='off'.")
    return None


def new_run(tr: SplitSource, cfg: TrainConfig) -> RunState:
    """A fresh model (output bias at the train unigram, feature-aware embeddings when the
    vocabulary is known, calendar inputs as ``cfg.calendar`` says) and its optimizer,
    seeded by ``cfg.seed``."""
    torch.manual_seed(cfg.seed)
    table = _token_feature_table(tr) if cfg.token_features else None
    gcfg = cfg.model_config(int(tr.vocab_size), 0 if table is None else table.shape[1],
                            _calendar(tr, cfg))
    model = build_model(cfg.arch, gcfg)
    counts = np.bincount(np.asarray(tr.tokens, dtype=np.int64), minlength=gcfg.vocab_size)
    counts[:N_SPECIAL] = 0  # BOS starts series; it is never a target
    model.init_output_bias(counts[: gcfg.vocab_size])
    if table is not None:
        model.set_token_features(table)
    opt = model.configure_optimizer(cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2))
    return RunState(cfg, gcfg, model, opt, tr, up_rate=_up_rates(tr), vocab_text=vocab_json(tr))


def resume_run(tr: SplitSource, cfg: TrainConfig, ck: dict[str, Any], out: Path,
               dev: torch.device) -> RunState:
    """The run saved in checkpoint ``ck`` (read from ``out``): weights, optimizer moments,
    step, history, best weights, early-stopping count and the torch RNG."""
    check_fingerprint(ck.get("fingerprint"), tr, "this dataset")
    torch.manual_seed(cfg.seed)
    model = build_model(checkpoint_arch(ck), ck["gpt_config"])
    gcfg = model.config
    opt = model.configure_optimizer(cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2))

    def load(m: CandleGPT) -> None:
        m.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])

    restore_weights(out, ck, load, model)
    run = RunState(cfg, gcfg, model, opt, tr, step=int(ck["step"]),
                   history=list(ck.get("metrics", {}).get("history", [])),
                   up_rate=ck.get("token_up_rate"), vocab_text=ck.get("vocab_json"))
    if run.step > cfg.total_steps:
        raise ModelError(f"{out} is already at step {run.step}; pass steps=N with N "
                         f"above {run.step} to train further.")
    if ck.get("best_model") is not None or math.isfinite(ck.get("best_val", math.inf)):
        run.best = BestWeights(float(ck["best_val"]), int(ck["best_step"]),
                               ck.get("best_model"), int(ck.get("stale_evals", 0)))
    if cfg.patience and run.best.stale >= cfg.patience:
        raise ModelError(f"{out} stopped early at step {run.step} (val not better for "
                         f"{run.best.stale} evaluations); pass patience=0, or patience=N "
                         f"with N above {run.best.stale}, to train further.")
    run.last_val = run.history[-1].get("val_bpc") if run.history else None
    torch.set_rng_state(ck["rng"]["torch"])
    if dev.type == "cuda" and ck["rng"].get("cuda") is not None:
        torch.cuda.set_rng_state(ck["rng"]["cuda"])
    return run


def init_run(splits: Mapping[str, SplitSource | None], cfg: TrainConfig, out: Path,
             dev: torch.device, ck: dict[str, Any] | None) -> RunState:
    """A new run, or the one checkpoint ``ck`` saved, on device ``dev``."""
    tr = splits["train"]
    assert tr is not None
    run = new_run(tr, cfg) if ck is None else resume_run(tr, cfg, ck, out, dev)
    run.model.fingerprint = tr.fingerprint
    run.facts = fit_facts(tr)
    run.model.to(dev)
    for st in run.opt.state.values():  # optimizer state moves with its parameters
        for k, v in st.items():
            if isinstance(v, torch.Tensor) and k != "step":
                st[k] = v.to(dev)
    return run
