"""Training for CandleGPT: the configuration, the pieces of a run, and :func:`train`.

The loop is deliberately plain (nanoGPT style): AdamW, linear warm-up then cosine decay,
gradient clipping, periodic validation in bits per candle, early stopping on val, and
atomic checkpoints.

Exact resume is a design goal, not a best effort: the batch at step ``s`` is a pure
function of ``(seed, s)`` (:meth:`WindowSampler.batch`; under DDP rank ``r`` reads its
share of it), the learning rate a pure function of ``s`` (:func:`lr_at`), and the
checkpoint holds the model, the optimizer, the step, the early-stopping count and the
torch RNG state (for dropout). So ``N`` steps straight and ``N/2`` steps, then
``--resume`` for the rest, end with the same weights.

Training windows start at random offsets inside a series (many more distinct windows than
the dataset's fixed, non-overlapping ones); evaluation uses the dataset's own windows, in
which every candle is a target exactly once, so bits per candle is an exact figure.

The pieces, each usable on its own, and where distributed training (DDP) plugs in:

- :func:`init_run`: the model, optimizer, best-so-far weights, step and RNG, new
  (:func:`new_run`) or restored from a checkpoint (:func:`resume_run`). Under DDP every
  rank builds the same :class:`RunState` (same seed), then wraps ``run.model`` in
  ``run.wrapped`` (the DistributedDataParallel module the steps run through); ``run.model``
  stays the plain module that is evaluated and saved (nanoGPT's ``raw_model``).
- :func:`train_step`: one optimizer step on ``sampler.batch(seed, step, batch_size,
  rank, world_size)``: ``batch_size`` is the *global* batch, each rank reads its
  ``batch_size / world_size`` windows of it, so the ranks together take exactly the
  single-process step (DDP averages their gradients).
- :func:`evaluate_at_boundary`: val bits per candle as ``(bits, count)`` sums from
  :func:`~candletok.model.evaluate.evaluate_sums`, passed through ``reduce`` (identity
  here; an all-reduce under DDP, with each rank scoring its share of the windows), then
  the best weights and the early-stopping count.
- :func:`checkpoint_state` and :func:`~candletok.model.checkpoint.save_checkpoint`: under
  DDP only rank 0 writes.
- :func:`run_steps` ties the step, the evaluation and the checkpoint together; its
  ``ranks`` (:class:`Ranks`) carries the rank, the world size, the all-reduce of the
  evaluation sums and, under a process group, the per-step agreement on the loss and on
  stopping, and the barrier after rank 0's checkpoint.
- :func:`final_scores`: the best weights next to every baseline (rank 0).

:mod:`candletok.model.ddp` starts the process group (``torchrun``) and hands
:func:`train` its :class:`Ranks`.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from candletok.core.errors import CandletokError, ModelError
from candletok.core.ids import IGNORE_INDEX, N_SPECIAL, PAD, SPLITS
from candletok.dataset.manifest import read_manifest
from candletok.dataset.torchdata import TokenDataset
from candletok.model.checkpoint import (
    CHECKPOINT_FORMAT,
    check_fingerprint,
    load_model,
    read_checkpoint,
    resolve_device,
    restore_weights,
    save_checkpoint,
)
from candletok.model.evaluate import (
    ScoreRow,
    autocast,
    bits_per_candle,
    compare_to_baselines,
    evaluate,
    evaluate_sums,
)
from candletok.model.gpt import CandleGPT, GPTConfig
from candletok.model.runtime import stop_on_sigint, torch_threads
from candletok.model.split import Splits, SplitSource, vocab_json
from candletok.model.updown import token_up_rates

__all__ = [
    "StepInfo", "TrainConfig", "TrainResult", "WindowSampler", "auto_eval_every",
    "auto_steps", "evaluate",
    "load_model", "lr_at", "read_checkpoint", "resolve_device", "resume_config", "train",
]

# -- configuration ------------------------------------------------------------------------
AUTO_PASSES = 25  # default steps: this many passes over the training candles ...
AUTO_MIN_STEPS = 200  # ... but at least this many (warm-up and a few evaluations) ...
AUTO_MAX_STEPS = 20_000  # ... and at most this many (early stopping usually ends sooner)


AUTO_EVALS = 20  # default eval interval: this many evaluations per run, ...
AUTO_EVAL_EVERY = (10, 500)  # ... every 10 to 500 steps


def auto_eval_every(steps: int) -> int:
    """The default eval (and checkpoint) interval of a ``steps``-step run: about
    :data:`AUTO_EVALS` evaluations per run, every 10 to 500 steps. Early stopping counts
    evaluations, so this is also what makes the default patience mean the same share of
    a short run and of a long one."""
    lo, hi = AUTO_EVAL_EVERY
    return int(min(hi, max(lo, round(steps / AUTO_EVALS))))


def auto_steps(n_candles: int, batch_size: int, context: int) -> int:
    """The default number of steps for ``n_candles`` training candles: enough for
    :data:`AUTO_PASSES` passes over them (a step reads ``batch_size * context`` tokens),
    clamped to [:data:`AUTO_MIN_STEPS`, :data:`AUTO_MAX_STEPS`]. Early stopping ends a run
    sooner when val stops improving, so this is a budget, not a target."""
    passes = math.ceil(AUTO_PASSES * max(0, n_candles) / max(1, batch_size * context))
    return int(min(AUTO_MAX_STEPS, max(AUTO_MIN_STEPS, passes)))


@dataclass
class TrainConfig:
    """Everything that shapes a training run. Saved in every checkpoint."""

    # Defaults measured on the bundled sample (10k train candles, ~1,000 tokens): larger or
    # longer-trained models only overfit sooner (val is best after ~40 steps there); the
    # best-on-val weights are kept and early stopping ends the run.
    steps: int | None = None  # None: sized to the data (auto_steps), fixed at the start
    batch_size: int = 32
    context: int = 128
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    dropout: float = 0.2
    bias: bool = False
    lr: float = 1e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 50
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    eval_every: int | None = None  # also the checkpoint interval; None: auto_eval_every
    eval_windows: int = 512  # cap on val windows for periodic evals (0: all); final is full
    eval_batch: int = 64
    patience: int = 5  # stop after this many evaluations without a better val (0: never)
    seed: int = 0
    threads: int = 0  # CPU threads; 0: OMP_NUM_THREADS if set, else torch's (see runtime)
    token_features: bool = True  # feature-aware embeddings when the vocab is available
    keep_best: bool = True  # the model you load is the one with the best val score

    MAX_CONTEXT: ClassVar[int] = 8192
    RESUMABLE: ClassVar[tuple[str, ...]] = ("steps", "eval_every", "patience", "threads")

    def check(self) -> None:
        """One :class:`ModelError` for the first setting that cannot train (fail fast)."""
        ints = {"number of steps": 1 if self.steps is None else self.steps,
                "batch size": self.batch_size, "context": self.context,
                "number of layers": self.n_layer, "number of heads": self.n_head,
                "width": self.n_embd,
                "eval interval": 1 if self.eval_every is None else self.eval_every}
        for name, v in ints.items():
            if v < 1:
                raise ModelError(f"The {name} must be at least 1, not {v}.")
        for name, v in {"patience": self.patience, "number of threads": self.threads}.items():
            if v < 0:
                raise ModelError(f"The {name} must be 0 or more, not {v}.")
        if self.n_embd % self.n_head:
            raise ModelError(f"The width ({self.n_embd}) must be a multiple of the number of "
                             f"heads ({self.n_head}).")
        if self.context > self.MAX_CONTEXT:
            raise ModelError(f"The context must be at most {self.MAX_CONTEXT} tokens, not "
                             f"{self.context}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ModelError(f"Dropout must be in [0, 1), not {self.dropout}.")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ModelError(f"The learning rate must be a positive number, not {self.lr}.")

    @property
    def total_steps(self) -> int:
        """``steps`` once fixed (the schedule needs a number)."""
        if self.steps is None:
            raise ModelError("The number of steps is not fixed yet; call sized_for() first.")
        return self.steps

    @property
    def eval_interval(self) -> int:
        """``eval_every`` once fixed."""
        if self.eval_every is None:
            raise ModelError("The eval interval is not fixed yet; call sized_for() first.")
        return self.eval_every

    def sized_for(self, n_candles: int) -> TrainConfig:
        """This configuration with ``steps`` and ``eval_every`` fixed: as given, or sized
        to ``n_candles`` training candles (:func:`auto_steps`, :func:`auto_eval_every`)."""
        steps = (auto_steps(n_candles, self.batch_size, self.context) if self.steps is None
                 else self.steps)
        every = auto_eval_every(steps) if self.eval_every is None else self.eval_every
        return dataclasses.replace(self, steps=steps, eval_every=every)

    def merged_for_resume(self, **changes: int | None) -> TrainConfig:
        """This (saved) configuration with only what a resume may change replaced:
        ``steps``, ``eval_every``, ``patience`` and ``threads``; a ``None`` keeps the saved
        value. Anything else would change the run being continued."""
        bad = set(changes) - set(self.RESUMABLE)
        if bad:
            raise ModelError(f"A resumed run keeps its saved {', '.join(sorted(bad))}; only "
                             f"{', '.join(self.RESUMABLE)} may change.")
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def gpt_config(self, vocab_size: int, n_features: int = 0) -> GPTConfig:
        return GPTConfig(vocab_size=vocab_size, context=self.context, n_layer=self.n_layer,
                         n_head=self.n_head, n_embd=self.n_embd, dropout=self.dropout,
                         bias=self.bias, n_features=n_features)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def resume_config(out: str | Path, **changes: int | None) -> TrainConfig:
    """The configuration saved in the checkpoint at ``out``, with the changes a resume
    allows (:meth:`TrainConfig.merged_for_resume`)."""
    saved = TrainConfig.from_dict(read_checkpoint(out)["train_config"])
    return saved.merged_for_resume(**changes)


StopReason = Literal["steps", "early_stop", "until", "interrupted"]
STOP_REASONS: dict[str, str] = {
    "steps": "all steps done",
    "early_stop": "early stop: val stopped improving",
    "until": "stopped at the requested step",
    "interrupted": "interrupted; the checkpoint holds the last step",
}


def describe_stop(reason: str, patience: int | None = None) -> str:
    """Why a run stopped, in words (with the patience, for an early stop, when given)."""
    text = STOP_REASONS.get(reason, reason)
    if reason == "early_stop" and patience:
        text += f" for {patience} evaluations"
    return text


@dataclass
class StepInfo:
    """What the progress callback receives after every step (and at phase changes).

    ``val_bpc`` is the latest periodic evaluation of the weights being trained (on at
    most ``eval_windows`` val windows) during ``train``/``eval``; on ``done`` it is the
    model's val in the final table, which scores the best-on-val weights (from
    ``best_step``) on every val window."""

    step: int
    steps: int
    loss: float
    lr: float
    tokens_per_s: float
    val_bpc: float | None
    phase: str = "train"  # "train", "eval", "baselines", "done"
    boundary: bool = False  # an evaluation + checkpoint boundary was just completed; then
    # ``loss`` is the mean over the steps since the previous boundary
    best_step: int | None = None  # step of the best-on-val weights so far
    stop_reason: str | None = None  # on "done": a key of STOP_REASONS

    @property
    def loss_bits(self) -> float:
        """The training loss (cross-entropy, nats) in bits, the unit of ``val_bpc``."""
        return self.loss / math.log(2)


@dataclass
class TrainResult:
    path: Path
    step: int
    steps: int
    device: str
    n_params: int
    tokens_per_s: float
    data_wait_share: float
    history: list[dict[str, float]]
    table: list[ScoreRow]
    best_ngram: str
    beats_best_ngram: bool
    summary: str
    interrupted: bool = False
    model: CandleGPT | None = None
    stop_reason: str = "steps"  # a key of STOP_REASONS
    best_step: int | None = None  # step of the weights in the table (None: the last step)
    threads: int = 0  # CPU threads used (per process)
    processes: int = 1  # DDP world size; tokens_per_s counts every process's windows


Progress = Callable[[StepInfo], None]


# -- data and schedule --------------------------------------------------------------------
class WindowSampler:
    """Random training windows of ``context`` inputs, a pure function of
    ``(seed, step, rank)``.

    A window may start at any token of a series (BOS included) such that its ``context + 1``
    tokens stay inside the series; series shorter than that give one padded window. Series
    are weighted by how many windows they hold, so every start is equally likely."""

    def __init__(self, ds: SplitSource, context: int) -> None:
        self.tokens = ds.tokens
        bounds = np.asarray(ds.bounds, dtype=np.int64).reshape(-1, 2)
        bounds = bounds[(bounds[:, 1] - bounds[:, 0]) >= 2]  # series with >= 1 candle
        self.a, self.b = bounds[:, 0], bounds[:, 1]
        self.context = int(context)
        n_starts = np.maximum(1, (self.b - self.a) - self.context)
        self.cum = np.cumsum(n_starts)
        self.first = self.cum - n_starts  # first global start number of each series
        if self.cum.size == 0:
            raise ModelError("The training split holds no candles; encode more data first.")

    def batch(self, seed: int, step: int, size: int, rank: int = 0,
              world_size: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` int64 arrays (size / world_size, context); padded inputs PAD, padded
        targets -1.

        ``size`` is the global batch: its window starts are drawn from the seed
        ``(seed, step)`` and rank ``r`` of ``world_size`` reads only its contiguous share,
        rows ``[r * size / world_size, (r + 1) * size / world_size)``. So the ranks'
        batches laid end to end are exactly the single-process batch of the same step (a
        DDP run follows the one-process run), drawing the starts costs a few integers,
        and no rank reads another's windows."""
        if world_size < 1 or not 0 <= rank < world_size or size % world_size:
            raise ModelError(f"A batch of {size} windows cannot be split evenly between "
                             f"{world_size} processes (rank {rank}); give a batch size that "
                             "is a multiple of the number of processes.")
        share = size // world_size
        rng = np.random.default_rng((int(seed), int(step)))
        u = rng.integers(0, int(self.cum[-1]), size=size)[rank * share:(rank + 1) * share]
        s = np.searchsorted(self.cum, u, side="right")
        start = self.a[s] + (u - self.first[s])
        c = self.context
        pos = start[:, None] + np.arange(c + 1)[None, :]
        end = self.b[s][:, None]
        valid = pos < end
        chunk = np.asarray(self.tokens[np.minimum(pos, end - 1)], dtype=np.int64)
        x = np.where(valid[:, 1:], chunk[:, :-1], PAD)  # an input only where it has a target
        y = np.where(valid[:, 1:], chunk[:, 1:], IGNORE_INDEX)
        return x, y


def count_candles(ds: SplitSource) -> int:
    """Candles in a split (its series' lengths, the BOS before each not counted)."""
    b = np.asarray(ds.bounds, dtype=np.int64).reshape(-1, 2)
    return int((b[:, 1] - b[:, 0] - 1).sum())


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``lr`` over ``warmup_steps``, then cosine decay to
    ``lr * min_lr_ratio`` at ``steps``."""
    steps = cfg.total_steps
    min_lr = cfg.lr * cfg.min_lr_ratio
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if step >= steps:
        return min_lr
    ratio = (step - cfg.warmup_steps) / max(1, steps - cfg.warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.lr - min_lr)


def open_splits(root: str | Path | Splits, context: int) -> dict[str, SplitSource | None]:
    """The train/val/test splits of a dataset folder (or the mapping given, for tests and
    in-memory data). A split the manifest lists must open: a corrupt shard is an error, not
    an absent split."""
    if isinstance(root, Mapping):
        return {split: root.get(split) for split in SPLITS}
    listed = read_manifest(root)["splits"]
    return {split: TokenDataset(root, split, context=context)
            if split == "train" or split in listed else None for split in SPLITS}


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
    gcfg: GPTConfig
    model: CandleGPT
    opt: torch.optim.Optimizer
    train_split: SplitSource
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best: BestWeights = field(default_factory=BestWeights)
    last_val: float | None = None
    up_rate: list[float] | None = None
    vocab_text: str | None = None
    wrapped: torch.nn.Module | None = None  # the DDP wrapper the steps run through, if any


def _token_feature_table(ds: SplitSource) -> np.ndarray | None:
    """(vocab_size, d) representative features of every token from the split's vocab, or
    None when it has no tokenizer to ask."""
    tok = ds.tokenizer()
    if tok is None:
        return None
    return np.asarray(tok.decode_features(np.arange(tok.vocab_size)), dtype=np.float64)


def _up_rates(ds: SplitSource) -> list[float] | None:
    """P(real close up | token) from the train split's stored closes, for ``predict``."""
    tok = ds.tokenizer()
    if tok is None:
        return None
    try:
        rates = token_up_rates(ds, tok)
    except (OSError, CandletokError):
        return None
    return None if rates is None else [float(x) for x in rates]


def new_run(tr: SplitSource, cfg: TrainConfig) -> RunState:
    """A fresh model (output bias at the train unigram, feature-aware embeddings when the
    vocabulary is known) and its optimizer, seeded by ``cfg.seed``."""
    torch.manual_seed(cfg.seed)
    table = _token_feature_table(tr) if cfg.token_features else None
    gcfg = cfg.gpt_config(int(tr.vocab_size), 0 if table is None else table.shape[1])
    model = CandleGPT(gcfg)
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
    gcfg = GPTConfig.from_dict(ck["gpt_config"])
    model = CandleGPT(gcfg)
    opt = model.configure_optimizer(cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2))

    def load(m: CandleGPT) -> None:
        m.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])

    restore_weights(out, ck, load, model)
    run = RunState(cfg, gcfg, model, opt, tr, step=int(ck["step"]),
                   history=list(ck.get("metrics", {}).get("history", [])),
                   up_rate=ck.get("token_up_rate"), vocab_text=ck.get("vocab_json"))
    if run.step > cfg.total_steps:
        raise ModelError(f"{out} is already at step {run.step}; give --steps above "
                         f"{run.step} to train further.")
    if ck.get("best_model") is not None or math.isfinite(ck.get("best_val", math.inf)):
        run.best = BestWeights(float(ck["best_val"]), int(ck["best_step"]),
                               ck.get("best_model"), int(ck.get("stale_evals", 0)))
    if cfg.patience and run.best.stale >= cfg.patience:
        raise ModelError(f"{out} stopped early at step {run.step} (val not better for "
                         f"{run.best.stale} evaluations); give --patience above "
                         f"{run.best.stale} (or 0) to train further.")
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
    run.model.to(dev)
    for st in run.opt.state.values():  # optimizer state moves with its parameters
        for k, v in st.items():
            if isinstance(v, torch.Tensor) and k != "step":
                st[k] = v.to(dev)
    return run


# -- one step, one evaluation, one checkpoint -----------------------------------------------
def train_step(run: RunState, sampler: WindowSampler, dev: torch.device, rank: int = 0,
               world_size: int = 1) -> tuple[float, float, float, int]:
    """One optimizer step at ``run.step`` (then advanced) on this rank's share of the
    global batch, through ``run.wrapped`` (DDP) when set: returns this rank's loss, the
    seconds spent getting the batch to the device, the seconds of the whole step, and the
    tokens read. A non-finite loss is a :class:`ModelError` (the run diverged)."""
    cfg = run.cfg
    t0 = time.perf_counter()
    x, y = sampler.batch(cfg.seed, run.step, cfg.batch_size, rank, world_size)
    xt = torch.from_numpy(x).to(dev, non_blocking=True)
    yt = torch.from_numpy(y).to(dev, non_blocking=True)
    t1 = time.perf_counter()
    for g in run.opt.param_groups:
        g["lr"] = lr_at(run.step, cfg)
    with autocast(dev):
        _, loss = (run.wrapped or run.model)(xt, yt)
    assert loss is not None
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    run.opt.step()
    lv = float(loss.item())  # also synchronizes the device, so timings are honest
    run.step += 1
    if not math.isfinite(lv):
        raise ModelError(f"Training diverged at step {run.step} (loss {lv}); lower --lr and "
                         "retry.")
    return lv, t1 - t0, time.perf_counter() - t0, int(x.size)


Reduce = Callable[[tuple[float, int]], tuple[float, int]]


def evaluate_at_boundary(run: RunState, val: SplitSource | None, scheduled: bool = True,
                         reduce: Reduce | None = None, rank: int = 0,
                         world_size: int = 1) -> float | None:
    """Val bits per candle of the weights being trained (None without a val split), and
    the bookkeeping that follows: a better val becomes the best (a CPU copy of the
    weights with ``keep_best``); a ``scheduled`` evaluation (every ``eval_every`` steps)
    that does not beat it adds one to the early-stopping count. ``reduce`` combines the
    ranks' ``(bits, count)`` sums (an all-reduce under DDP)."""
    if val is None:
        return None
    cfg = run.cfg
    sums = evaluate_sums(run.model, val, cfg.eval_batch, cfg.eval_windows, rank, world_size)
    v = bits_per_candle(*(reduce(sums) if reduce is not None else sums))
    run.last_val = v
    if math.isfinite(v) and v < run.best.val:
        state = ({k: t.detach().to("cpu", copy=True) for k, t in run.model.state_dict().items()}
                 if cfg.keep_best else None)
        run.best = BestWeights(v, run.step, state, 0)
    elif scheduled:
        run.best.stale += 1
    return v


def early_stop_due(run: RunState) -> bool:
    """Whether val has not improved for ``patience`` scheduled evaluations."""
    return run.cfg.patience > 0 and run.best.stale >= run.cfg.patience


def rng_state(dev: torch.device) -> dict[str, Any]:
    """The torch RNG state a resume must restore (dropout draws from it)."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state() if dev.type == "cuda" else None}


def checkpoint_state(run: RunState, metrics: dict[str, Any],
                     rng: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint dict of ``run`` (see :mod:`candletok.model.checkpoint`)."""
    tr = run.train_split
    return {
        "format": CHECKPOINT_FORMAT,
        "model": run.model.state_dict(),
        "gpt_config": run.gcfg.to_dict(),
        "train_config": asdict(run.cfg),
        "optimizer": run.opt.state_dict(),
        "step": run.step,
        "rng": rng,
        "metrics": metrics,
        "best_model": run.best.state,
        "best_step": run.best.step,
        "best_val": run.best.val,
        "stale_evals": run.best.stale,
        "fingerprint": tr.fingerprint,
        "vocab_size": run.gcfg.vocab_size,
        "vocab_json": run.vocab_text,
        "dataset": str(tr.root or ""),
        "token_up_rate": run.up_rate,
        "interval": tr.interval,  # the bars the model reads
    }


def final_scores(run: RunState, splits: Mapping[str, SplitSource | None],
                 dev: torch.device) -> tuple[CandleGPT, list[ScoreRow], str, bool, str]:
    """The model to hand back (the best-on-val weights when kept, else the last) scored
    next to every baseline on val and test: the model, the table rows, the best n-gram,
    whether the model beats it, and the one-line verdict."""
    final = run.model
    if run.best.state is not None:
        final = CandleGPT(run.gcfg).to(dev)
        final.load_state_dict(run.best.state)
        final.fingerprint = run.model.fingerprint
    final.meta["token_up_rate"] = run.up_rate
    rows, best_name, beats, summary = compare_to_baselines(final, splits, run.cfg.eval_batch)
    if run.best.state is not None:
        summary += f" (model weights from step {run.best.step}, the best on val)"
    return final.eval(), rows, best_name, beats, summary


# -- the loop ---------------------------------------------------------------------------------
@dataclass
class LoopStats:
    """Timings and the stop reason of the step loop."""

    t_train: float = 0.0
    t_data: float = 0.0
    tokens: int = 0
    rate: float = 0.0  # smoothed tokens/s, for display
    losses: list[float] = field(default_factory=list)  # since the last boundary
    stop_reason: str = "steps"


@dataclass(frozen=True)
class Ranks:
    """Where this process sits in a distributed run; the defaults are a single process.

    ``reduce`` combines the ranks' ``(bits, count)`` evaluation sums; without it, and with
    ``comm`` set (the device a running ``torch.distributed`` process group communicates
    on), they are all-reduced. Only the writer (rank 0) saves checkpoints; the others
    wait at a barrier. The stop decisions agree across ranks: early stopping through the
    reduced val, Ctrl-C through :meth:`agree`, which all-reduces a stop flag every step."""

    rank: int = 0
    world_size: int = 1
    reduce: Reduce | None = None
    comm: torch.device | None = None  # set only when a process group is running

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    def reduce_sums(self, sums: tuple[float, int]) -> tuple[float, int]:
        """The evaluation sums over every rank."""
        if self.reduce is not None:
            return self.reduce(sums)
        if self.comm is None:
            return sums
        t = torch.tensor([sums[0], float(sums[1])], dtype=torch.float64, device=self.comm)
        torch.distributed.all_reduce(t)
        return float(t[0]), round(float(t[1]))

    def agree(self, loss: float, stop: bool) -> tuple[float, bool]:
        """The mean loss over the ranks (the loss of the global batch when every window
        is full) and whether any rank was asked to stop: one all-reduce per step, so that
        every rank logs the same loss and stops at the same step."""
        if self.comm is None:
            return loss, stop
        t = torch.tensor([loss, float(stop)], dtype=torch.float64, device=self.comm)
        torch.distributed.all_reduce(t)
        return float(t[0]) / self.world_size, bool(t[1] > 0)

    def barrier(self) -> None:
        """Wait for every rank (after rank 0 writes a checkpoint)."""
        if self.comm is not None:
            torch.distributed.barrier()

    def seed_dropout(self, seed: int, step: int) -> None:
        """Under DDP, the dropout RNG of a step is re-derived from ``(seed, step, rank)``:
        ranks draw different masks, and a resume with any number of processes needs no
        per-rank state from the checkpoint. A single process keeps one torch stream (and
        the checkpoint's saved state) instead."""
        if self.world_size > 1:
            key = np.random.SeedSequence((int(seed), int(step), self.rank))
            torch.manual_seed(int(key.generate_state(1, dtype=np.uint64)[0] >> 1))


def _boundary(run: RunState, splits: Mapping[str, SplitSource | None], out: Path,
              dev: torch.device, stats: LoopStats, scheduled: bool, lr: float,
              emit: Progress, ranks: Ranks) -> None:
    """Evaluate, record the history and write the checkpoint (rank 0; the others wait)."""
    if splits.get("val") is not None:
        emit(StepInfo(run.step, run.cfg.total_steps, stats.losses[-1], lr, stats.rate,
                      run.last_val, "eval"))
    evaluate_at_boundary(run, splits.get("val"), scheduled, ranks.reduce_sums, ranks.rank,
                         ranks.world_size)
    run.history.append({"step": run.step, "loss": float(np.mean(stats.losses)), "lr": lr,
                        "val_bpc": math.nan if run.last_val is None else run.last_val,
                        "tokens_per_s": stats.rate})
    stats.losses = []
    if ranks.is_writer:
        save_checkpoint(out, checkpoint_state(run, {"history": run.history}, rng_state(dev)))
    ranks.barrier()
    emit(StepInfo(run.step, run.cfg.total_steps, run.history[-1]["loss"], lr, stats.rate,
                  run.last_val, boundary=True, best_step=run.best.step or None))


def run_steps(run: RunState, splits: Mapping[str, SplitSource | None], out: Path,
              dev: torch.device, stop_at: int, stop: threading.Event,
              emit: Progress, ranks: Ranks = Ranks()) -> LoopStats:
    """Steps until ``stop_at``, an early stop or ``stop`` (Ctrl-C, on any rank); at every
    ``eval_every`` boundary (and the last step) evaluate, record the history and write a
    checkpoint. Tokens and tokens/s count every rank's windows (the global batch)."""
    cfg, stats = run.cfg, LoopStats()
    sampler = WindowSampler(run.train_split, cfg.context)
    (run.wrapped or run.model).train()
    while run.step < stop_at:
        ranks.seed_dropout(cfg.seed, run.step)
        lv, t_data, t_step, n = train_step(run, sampler, dev, ranks.rank, ranks.world_size)
        lv, stopping = ranks.agree(lv, stop.is_set())
        n *= ranks.world_size
        stats.t_data, stats.t_train, stats.tokens = (
            stats.t_data + t_data, stats.t_train + t_step, stats.tokens + n)
        now = n / max(t_step, 1e-9)
        stats.rate = now if stats.rate == 0 else 0.9 * stats.rate + 0.1 * now
        stats.losses.append(lv)
        lr = lr_at(run.step - 1, cfg)
        scheduled = run.step % cfg.eval_interval == 0
        if not (scheduled or run.step == stop_at or stopping):
            emit(StepInfo(run.step, cfg.total_steps, lv, lr, stats.rate, run.last_val,
                          best_step=run.best.step or None))
            continue
        _boundary(run, splits, out, dev, stats, scheduled, lr, emit, ranks)
        if stopping and run.step < stop_at:
            stats.stop_reason = "interrupted"
            break
        if early_stop_due(run) and run.step < stop_at:
            stats.stop_reason = "early_stop"
            break
    else:
        stats.stop_reason = "steps" if run.step >= cfg.total_steps else "until"
    return stats


def train(
    dataset_root: str | Path | Splits,
    cfg: TrainConfig | None = None,
    out: str | Path = "model.pt",
    device: str = "auto",
    resume: bool = False,
    progress: Progress | None = None,
    until: int | None = None,
    ranks: Ranks | None = None,
) -> TrainResult:
    """Train CandleGPT on a token dataset folder and return the scores.

    ``dataset_root`` is a folder written by ``candletok encode`` (or a mapping
    ``{"train": split, "val": split, "test": split}`` of :class:`SplitSource` objects).
    With ``resume`` the run continues from the checkpoint at ``out`` with its own
    configuration (``cfg`` may only change ``steps``, ``eval_every``, ``patience`` and
    ``threads``). ``until`` stops at that step (with a checkpoint) without changing the
    schedule. Ctrl-C also stops at the next step with a checkpoint (``interrupted``).
    Training ends early when val has not improved for ``cfg.patience`` evaluations; the
    returned model and the table are the best-on-val weights.

    ``ranks`` (from :func:`candletok.model.ddp.process_group`) makes this one process of
    a DistributedDataParallel run: ``cfg.batch_size`` stays the global batch (each rank
    steps on ``batch_size / world_size`` windows of it), rank 0 alone writes and scores,
    and the other ranks return a result without a table."""
    ranks = ranks or Ranks()
    dev, out = resolve_device(device), Path(out)
    if ranks.comm is not None and ranks.comm.type == "cuda":
        dev = ranks.comm  # one GPU per rank
    ck = read_checkpoint(out, map_location="cpu") if resume else None
    if ck is not None:
        saved = TrainConfig.from_dict(ck["train_config"])
        cfg = saved if cfg is None else saved.merged_for_resume(
            **{k: getattr(cfg, k) for k in TrainConfig.RESUMABLE})
    cfg = cfg or TrainConfig()
    cfg.check()
    if cfg.batch_size % ranks.world_size:
        raise ModelError(f"The batch size ({cfg.batch_size}) is the global batch and must be "
                         f"a multiple of the number of processes ({ranks.world_size}).")
    splits = open_splits(dataset_root, cfg.context)
    assert splits["train"] is not None
    cfg = cfg.sized_for(count_candles(splits["train"]))
    run = init_run(splits, cfg, out, dev, ck)
    if ranks.comm is not None:
        from torch.nn.parallel import DistributedDataParallel

        run.wrapped = DistributedDataParallel(
            run.model, device_ids=[dev.index] if dev.type == "cuda" else None)

    def emit(info: StepInfo) -> None:
        if progress is not None:
            progress(info)

    stop_at = cfg.total_steps if until is None else min(cfg.total_steps, int(until))
    with torch_threads(cfg.threads, dev) as threads:
        with stop_on_sigint(sigterm=ranks.world_size > 1) as stop:
            stats = run_steps(run, splits, out, dev, stop_at, stop, emit, ranks)
        return _finish(run, splits, out, dev, stats, emit, ranks, threads)


def _finish(run: RunState, splits: Mapping[str, SplitSource | None], out: Path,
            dev: torch.device, stats: LoopStats, emit: Progress, ranks: Ranks,
            threads: int) -> TrainResult:
    """After the steps: (rank 0) score the best weights next to the baselines, write the
    final checkpoint with the table; every rank then meets at a barrier."""
    cfg = run.cfg
    rng_at_stop = rng_state(dev)  # what a resume must restore, whatever scoring does
    last_loss = run.history[-1]["loss"] if run.history else math.nan
    best_step = run.best.step if run.best.state is not None else None
    rows: list[ScoreRow] = []
    final, best_name, beats, summary = None, "", False, ""
    if ranks.is_writer:
        emit(StepInfo(run.step, cfg.total_steps, last_loss, lr_at(run.step, cfg),
                      stats.rate, run.last_val, "baselines"))
        final, rows, best_name, beats, summary = final_scores(run, splits, dev)
        metrics = {"history": run.history, "table": [asdict(r) for r in rows],
                   "summary": summary, "best_ngram": best_name, "beats_best_ngram": beats,
                   "stop_reason": stats.stop_reason, "best_step": run.best.step}
        if run.step > 0:
            save_checkpoint(out, checkpoint_state(run, metrics, rng_at_stop))
        emit(StepInfo(run.step, cfg.total_steps, last_loss, lr_at(run.step, cfg),
                      stats.rate, rows[0].val, "done", best_step=best_step,
                      stop_reason=stats.stop_reason))
    ranks.barrier()
    return TrainResult(
        path=out, step=run.step, steps=cfg.total_steps, device=str(dev),
        n_params=run.model.num_params(),
        tokens_per_s=stats.tokens / stats.t_train if stats.t_train else math.nan,
        data_wait_share=stats.t_data / stats.t_train if stats.t_train else math.nan,
        history=run.history, table=rows, best_ngram=best_name, beats_best_ngram=beats,
        summary=summary, interrupted=stats.stop_reason == "interrupted", model=final,
        stop_reason=stats.stop_reason, best_step=best_step, threads=threads,
        processes=ranks.world_size,
    )
