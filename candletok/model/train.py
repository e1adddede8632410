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

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from candletok.core.errors import ModelError, OutputError
from candletok.core.ids import SPLITS
from candletok.dataset.manifest import read_manifest
from candletok.dataset.torchdata import TokenDataset
from candletok.model.arch import build_model
from candletok.model.checkpoint import (
    CHECKPOINT_FORMAT,
    load_model,
    read_checkpoint,
    resolve_device,
    save_checkpoint,
)
from candletok.model.config import (  # noqa: F401  (re-exported)
    AUTO_PASSES,
    CALENDAR_DEFAULT,
    Progress,
    StepInfo,
    TrainConfig,
    TrainResult,
    auto_eval_every,
    auto_steps,
    calendar_spec,
    describe_stop,
    resume_config,
)
from candletok.model.evaluate import (
    ScoreRow,
    autocast,
    bits_per_candle,
    compare_to_baselines,
    evaluate,
    evaluate_sums,
)
from candletok.model.gpt import CandleGPT
from candletok.model.run import BestWeights, RunState, init_run
from candletok.model.runtime import stop_on_sigint, torch_threads
from candletok.model.sampler import WindowSampler, count_candles, lr_at
from candletok.model.split import Splits, SplitSource

log = logging.getLogger(__name__)

__all__ = [
    "StepInfo", "TrainConfig", "TrainResult", "WindowSampler", "auto_eval_every",
    "auto_steps", "check_out", "evaluate",
    "load_model", "lr_at", "read_checkpoint", "resolve_device", "resume_config", "train",
]

def open_splits(root: str | Path | Splits, context: int) -> dict[str, SplitSource | None]:
    """The train/val/test splits of a dataset folder (or the mapping given, for tests and
    in-memory data). A split the manifest lists must open: a corrupt shard is an error, not
    an absent split."""
    if isinstance(root, Mapping):
        return {split: root.get(split) for split in SPLITS}
    listed = read_manifest(root)["splits"]
    return {split: TokenDataset(root, split, context=context)
            if split == "train" or split in listed else None for split in SPLITS}


# -- one step, one evaluation, one checkpoint -----------------------------------------------
def train_step(run: RunState, sampler: WindowSampler, dev: torch.device, rank: int = 0,
               world_size: int = 1) -> tuple[float, float, float, int]:
    """One optimizer step at ``run.step`` (then advanced) on this rank's share of the
    global batch, through ``run.wrapped`` (DDP) when set: returns this rank's loss, the
    seconds spent getting the batch to the device, the seconds of the whole step, and the
    tokens read. A non-finite loss is a :class:`ModelError` (the run diverged)."""
    cfg = run.cfg
    t0 = time.perf_counter()
    x, y, *rest = sampler.batch(cfg.seed, run.step, cfg.batch_size, rank, world_size)
    cal = rest[:1] if run.model.calendar is not None else []
    lv = rest[-1:] if run.model.config.levels else []
    xt = torch.from_numpy(x).to(dev, non_blocking=True)
    yt = torch.from_numpy(y).to(dev, non_blocking=True)
    ct = torch.from_numpy(cal[0]).to(dev, non_blocking=True) if cal else None
    vt = torch.from_numpy(lv[0]).to(dev, non_blocking=True) if lv else None
    t1 = time.perf_counter()
    for g in run.opt.param_groups:
        g["lr"] = lr_at(run.step, cfg)
    with autocast(dev):
        _, loss = (run.wrapped or run.model)(xt, yt, cal=ct, lv=vt)
    assert loss is not None
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    run.opt.step()
    lv = float(loss.item())  # also synchronizes the device, so timings are honest
    run.step += 1
    if not math.isfinite(lv):
        raise ModelError(f"Training diverged at step {run.step} (loss {lv}); lower lr= and "
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
        "arch": run.cfg.arch,  # which class load_model rebuilds (model/arch.py)
        "gpt_config": run.gcfg.to_dict(),  # the model's shape (an LSTMConfig for lstm)
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
        **run.facts,  # interval (normalized), dataset_fingerprint, symbols, train_base_rate
    }


def final_scores(run: RunState, splits: Mapping[str, SplitSource | None],
                 dev: torch.device) -> tuple[CandleGPT, list[ScoreRow], str, bool, str]:
    """The model to hand back (the best-on-val weights when kept, else the last) scored
    next to every baseline on val and test: the model, the table rows, the best n-gram,
    whether the model beats it, and the one-line verdict."""
    final = run.model
    if run.best.state is not None:
        final = build_model(run.cfg.arch, run.gcfg).to(dev)
        final.load_state_dict(run.best.state)
        final.fingerprint = run.model.fingerprint
    final.meta["token_up_rate"] = run.up_rate
    final.meta.update(run.facts)
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
    sampler = WindowSampler(run.train_split, cfg.context, run.model.calendar,
                            bool(run.model.config.levels))
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
    schedule. Ctrl-C or SIGTERM also stops at the next step with a checkpoint
    (``interrupted``; ``stop_signal`` says which).
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
        with stop_on_sigint() as stop:  # Ctrl-C and SIGTERM: stop with a checkpoint
            stats = run_steps(run, splits, out, dev, stop_at, stop, emit, ranks)
        res = _finish(run, splits, out, dev, stats, emit, ranks, threads)
        res.stop_signal = stop.signum if res.interrupted else None
        return res


def check_out(out: str | Path, resume: bool = False, overwrite: bool = False) -> None:
    """Refuse to start a new run over a checkpoint that existed before it (a run writes
    its own checkpoint again and again; that file is its own): a finished model needs
    ``overwrite``, an unfinished run (interrupted, stopped at ``until``, or killed before
    its end) is offered ``resume`` first. Nothing to check with ``resume`` or
    ``overwrite``, or when ``out`` is new."""
    out = Path(out)
    if resume or overwrite or not out.exists():
        return
    if out.is_dir():
        raise OutputError(f"Cannot write {out}: it is a folder; give a file path.")
    try:
        ck = read_checkpoint(out)
    except ModelError:
        raise OutputError(f"{out} already exists (it is not a readable checkpoint); pass "
                          "overwrite=True to replace it, or write to another file.") from None
    step = int(ck.get("step", 0))
    steps = (ck.get("train_config") or {}).get("steps")
    reason = (ck.get("metrics") or {}).get("stop_reason")
    if reason in (None, "interrupted", "until"):
        of = f" of {steps}" if steps else ""
        raise OutputError(f"{out} holds an unfinished run (at step {step}{of}); continue it "
                          "with resume=True, or pass overwrite=True to start again from "
                          "scratch.")
    raise OutputError(f"{out} already holds a trained model (step {step}, "
                      f"{describe_stop(reason)}); pass overwrite=True to replace it, or "
                      "write to another file.")


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
        calendar=None if run.model.calendar is None else run.model.calendar.tz,
        model_name=run.model.name,
    )
