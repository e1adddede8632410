"""Training, evaluation and checkpoints for CandleGPT.

The loop is deliberately plain (nanoGPT style): AdamW, linear warm-up then cosine decay,
gradient clipping, periodic validation in bits per candle, and atomic checkpoints.

Exact resume is a design goal, not a best effort: the batch at step ``s`` is a pure
function of ``(seed, s)`` (:func:`sample_batch`), the learning rate a pure function of
``s`` (:func:`lr_at`), and the checkpoint holds the model, the optimizer, the step and the
torch RNG state (for dropout). So ``N`` steps straight and ``N/2`` steps, then
``--resume`` for the rest, end with the same weights.

Training windows start at random offsets inside a series (many more distinct windows than
the dataset's fixed, non-overlapping ones); evaluation uses the dataset's own windows, in
which every candle is a target exactly once, so bits per candle is an exact figure.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from candletok.core.errors import CandletokError, ModelError
from candletok.core.ids import IGNORE_INDEX, N_SPECIAL, PAD, SPLITS, series_with_bos
from candletok.dataset.manifest import read_manifest
from candletok.dataset.torchdata import TokenDataset
from candletok.model.checkpoint import (  # noqa: F401  (load_model etc. re-exported)
    CHECKPOINT_FORMAT,
    _restore,
    check_fingerprint,
    load_model,
    read_checkpoint,
    resolve_device,
    save_checkpoint,
)
from candletok.model.evaluate import (
    ScoreRow,
    autocast,
    compare_to_baselines,
    evaluate,
)
from candletok.model.gpt import CandleGPT, GPTConfig
from candletok.model.updown import token_up_rates


@dataclass
class TrainConfig:
    """Everything that shapes a training run. Saved in every checkpoint."""

    # Defaults measured on the bundled sample (10k train candles, ~1,000 tokens): larger or
    # longer-trained models only overfit sooner (val is best after ~40 steps there); the
    # best-on-val weights are kept, so extra steps cost time, not quality.
    steps: int = 1000
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
    eval_every: int = 50  # also the checkpoint interval
    eval_windows: int = 512  # cap on val windows for periodic evals (0: all); final is full
    eval_batch: int = 64
    seed: int = 0
    threads: int = 0  # CPU threads; 0 = the cores this process may use
    token_features: bool = True  # feature-aware embeddings when the vocab is available
    keep_best: bool = True  # the model you load is the one with the best val score

    MAX_CONTEXT: ClassVar[int] = 8192

    def check(self) -> None:
        """One :class:`ModelError` for the first setting that cannot train (fail fast)."""
        ints = {"number of steps": self.steps, "batch size": self.batch_size,
                "context": self.context, "number of layers": self.n_layer,
                "number of heads": self.n_head, "width": self.n_embd,
                "eval interval": self.eval_every}
        for name, v in ints.items():
            if v < 1:
                raise ModelError(f"The {name} must be at least 1, not {v}.")
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

    def gpt_config(self, vocab_size: int, n_features: int = 0) -> GPTConfig:
        return GPTConfig(vocab_size=vocab_size, context=self.context, n_layer=self.n_layer,
                         n_head=self.n_head, n_embd=self.n_embd, dropout=self.dropout,
                         bias=self.bias, n_features=n_features)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class StepInfo:
    """What the progress callback receives after every step (and at phase changes)."""

    step: int
    steps: int
    loss: float
    lr: float
    tokens_per_s: float
    val_bpc: float | None
    phase: str = "train"  # "train", "eval", "baselines", "done"


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


Progress = Callable[[StepInfo], None]


# -- data ---------------------------------------------------------------------------------
def _flat(ds: Any) -> tuple[np.ndarray, np.ndarray]:
    """The split's token array (BOS before each series) and each series' [start, end)."""
    if hasattr(ds, "tokens") and hasattr(ds, "bounds"):
        return ds.tokens, np.asarray(ds.bounds, dtype=np.int64)
    return series_with_bos(ds.series())


class WindowSampler:
    """Random training windows of ``context`` inputs, a pure function of ``(seed, step)``.

    A window may start at any token of a series (BOS included) such that its ``context + 1``
    tokens stay inside the series; series shorter than that give one padded window. Series
    are weighted by how many windows they hold, so every start is equally likely."""

    def __init__(self, ds: Any, context: int) -> None:
        self.tokens, bounds = _flat(ds)
        bounds = bounds[(bounds[:, 1] - bounds[:, 0]) >= 2]  # series with >= 1 candle
        self.a, self.b = bounds[:, 0], bounds[:, 1]
        self.context = int(context)
        n_starts = np.maximum(1, (self.b - self.a) - self.context)
        self.cum = np.cumsum(n_starts)
        self.first = self.cum - n_starts  # first global start number of each series
        if self.cum.size == 0:
            raise ModelError("The training split holds no candles; encode more data first.")

    def batch(self, seed: int, step: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` int64 arrays (size, context); padded inputs PAD, padded targets -1."""
        rng = np.random.default_rng((int(seed), int(step)))
        u = rng.integers(0, int(self.cum[-1]), size=size)
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


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``lr`` over ``warmup_steps``, then cosine decay to
    ``lr * min_lr_ratio`` at ``steps``."""
    min_lr = cfg.lr * cfg.min_lr_ratio
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if step >= cfg.steps:
        return min_lr
    ratio = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.lr - min_lr)


# -- checkpoints --------------------------------------------------------------------------
def _vocab_text(ds: Any) -> str | None:
    root = getattr(ds, "root", None)
    p = Path(root) / "vocab.json" if root is not None else None
    return p.read_text(encoding="utf-8") if p is not None and p.is_file() else None


def _token_feature_table(ds: Any) -> np.ndarray | None:
    """(vocab_size, d) representative features of every token from the dataset's vocab,
    or None when the dataset has no tokenizer to ask."""
    get = getattr(ds, "tokenizer", None)
    if get is None:
        return None
    tok = get()
    return np.asarray(tok.decode_features(np.arange(tok.vocab_size)), dtype=np.float64)


# -- the loop -----------------------------------------------------------------------------
def _up_rates(ds: Any) -> list[float] | None:
    """P(real close up | token) from the train split's stored closes, for ``predict``."""
    if not hasattr(ds, "tokenizer"):
        return None

    try:
        rates = token_up_rates(ds, ds.tokenizer())
    except (OSError, CandletokError):
        return None
    return None if rates is None else [float(x) for x in rates]


def _open_splits(root: Any, context: int) -> dict[str, Any]:
    """``{"train": ds, "val": ds, "test": ds}`` from a dataset folder, or the mapping given."""
    if isinstance(root, Mapping):
        return dict(root)
    listed = read_manifest(root)["splits"]
    # a split the manifest lists must open: a corrupt shard is an error, not an absent split
    return {split: TokenDataset(root, split, context=context)
            if split == "train" or split in listed else None for split in SPLITS}


@contextlib.contextmanager
def _stop_on_sigint() -> Iterator[threading.Event]:
    """First Ctrl-C asks the loop to stop at the next step boundary (and checkpoint); a
    second one interrupts at once."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    old = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, old)


@contextlib.contextmanager
def _threads(n: int, dev: torch.device) -> Iterator[None]:
    """Use ``n`` intra-op threads on CPU during training, restoring the old setting after."""
    old = torch.get_num_threads()
    if dev.type == "cpu":
        avail = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
        torch.set_num_threads(max(1, n or avail))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def train(
    dataset_root: str | Path | Mapping[str, Any],
    cfg: TrainConfig | None = None,
    out: str | Path = "model.pt",
    device: str = "auto",
    resume: bool = False,
    progress: Progress | None = None,
    until: int | None = None,
) -> TrainResult:
    """Train CandleGPT on a token dataset folder and return the scores.

    ``dataset_root`` is a folder written by ``candletok encode`` (or, for tests, a mapping
    ``{"train": ds, "val": ds, "test": ds}`` of dataset objects). With ``resume`` the run
    continues from the checkpoint at ``out`` with its own configuration (``cfg`` may only
    change ``steps`` and ``eval_every``). ``until`` stops at that step (with a checkpoint)
    without changing the schedule. Ctrl-C also stops at the next step with a checkpoint.
    """
    dev = resolve_device(device)
    out = Path(out)
    ck: dict[str, Any] | None = None
    if resume:
        ck = read_checkpoint(out, map_location="cpu")
        saved = TrainConfig.from_dict(ck["train_config"])
        if cfg is not None:
            saved.steps, saved.eval_every = cfg.steps, cfg.eval_every
        cfg = saved
    cfg = cfg or TrainConfig()
    cfg.check()
    splits = _open_splits(dataset_root, cfg.context)
    tr = splits["train"]
    fingerprint = getattr(tr, "fingerprint", None)

    torch.manual_seed(cfg.seed)
    table = _token_feature_table(tr) if cfg.token_features and ck is None else None
    if ck is not None:
        check_fingerprint(ck.get("fingerprint"), tr, "this dataset")
        gcfg = GPTConfig.from_dict(ck["gpt_config"])
    else:
        gcfg = cfg.gpt_config(int(tr.vocab_size), 0 if table is None else table.shape[1])
    model = CandleGPT(gcfg)
    model.fingerprint = fingerprint
    if ck is None:
        tokens = _flat(tr)[0]
        counts = np.bincount(np.asarray(tokens, dtype=np.int64), minlength=gcfg.vocab_size)
        counts[:N_SPECIAL] = 0  # BOS starts series; it is never a target
        model.init_output_bias(counts[: gcfg.vocab_size])
        if table is not None:
            model.set_token_features(table)
    opt = model.configure_optimizer(cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2))
    step, history = 0, []
    best: dict[str, Any] = {"val": math.inf, "step": 0, "state": None}
    if ck is not None:
        def load(m: CandleGPT) -> None:
            m.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])

        _restore(out, ck, load, model)
        step, history = int(ck["step"]), list(ck.get("metrics", {}).get("history", []))
        if step > cfg.steps:
            raise ModelError(f"{out} is already at step {step}; give --steps above {step} "
                             "to train further.")
        if ck.get("best_model") is not None:
            best = {"val": float(ck["best_val"]), "step": int(ck["best_step"]),
                    "state": ck["best_model"]}
        torch.set_rng_state(ck["rng"]["torch"])
        if dev.type == "cuda" and ck["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(ck["rng"]["cuda"])
    model.to(dev)
    # Optimizer state moves with the parameters it was loaded for.
    for st in opt.state.values():
        for k, v in st.items():
            if isinstance(v, torch.Tensor) and k != "step":
                st[k] = v.to(dev)

    sampler = WindowSampler(tr, cfg.context)
    vocab_text = _vocab_text(tr)
    up_rate = _up_rates(tr) if ck is None else ck.get("token_up_rate")
    last_val: float | None = history[-1].get("val_bpc") if history else None
    stop_at = cfg.steps if until is None else min(cfg.steps, int(until))

    def rng_now() -> dict[str, Any]:
        return {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state() if dev.type == "cuda" else None}

    def state(metrics: dict[str, Any], rng: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "model": model.state_dict(),
            "gpt_config": gcfg.to_dict(),
            "train_config": asdict(cfg),
            "optimizer": opt.state_dict(),
            "step": step,
            "rng": rng or rng_now(),
            "metrics": metrics,
            "best_model": best["state"],
            "best_step": best["step"],
            "best_val": best["val"],
            "fingerprint": fingerprint,
            "vocab_size": gcfg.vocab_size,
            "vocab_json": vocab_text,
            "dataset": str(getattr(tr, "root", "")),
            "token_up_rate": up_rate,
            "interval": getattr(tr, "interval", None),  # the bars the model reads
        }

    def emit(info: StepInfo) -> None:
        if progress is not None:
            progress(info)

    t_train = t_data = 0.0
    tokens_seen = 0
    rate = 0.0
    losses: list[float] = []
    interrupted = False
    model.train()
    with _threads(cfg.threads, dev), _stop_on_sigint() as stop:
        while step < stop_at:
            t0 = time.perf_counter()
            x, y = sampler.batch(cfg.seed, step, cfg.batch_size)
            xt = torch.from_numpy(x).to(dev, non_blocking=True)
            yt = torch.from_numpy(y).to(dev, non_blocking=True)
            t1 = time.perf_counter()
            lr = lr_at(step, cfg)
            for g in opt.param_groups:
                g["lr"] = lr
            with autocast(dev):
                _, loss = model(xt, yt)
            assert loss is not None
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            lv = float(loss.item())  # also synchronizes the device, so timings are honest
            t2 = time.perf_counter()
            step += 1
            t_data += t1 - t0
            t_train += t2 - t0
            tokens_seen += x.size
            now = x.size / max(t2 - t0, 1e-9)
            rate = now if rate == 0 else 0.9 * rate + 0.1 * now  # smoothed for display
            losses.append(lv)
            if not math.isfinite(lv):
                raise ModelError(
                    f"Training diverged at step {step} (loss {lv}); lower --lr and retry."
                )
            boundary = step % max(1, cfg.eval_every) == 0 or step == stop_at or stop.is_set()
            if boundary:
                if splits.get("val") is not None:
                    emit(StepInfo(step, cfg.steps, lv, lr, rate, last_val, "eval"))
                    last_val = evaluate(model, splits["val"], cfg.eval_batch, cfg.eval_windows)
                    if cfg.keep_best and math.isfinite(last_val) and last_val < best["val"]:
                        best = {"val": last_val, "step": step, "state": {
                            k: v.detach().to("cpu", copy=True)
                            for k, v in model.state_dict().items()}}
                history.append({"step": step, "loss": float(np.mean(losses)), "lr": lr,
                                "val_bpc": last_val if last_val is not None else float("nan"),
                                "tokens_per_s": rate})
                losses = []
                save_checkpoint(out, state({"history": history}))
            emit(StepInfo(step, cfg.steps, lv, lr, rate, last_val))
            if stop.is_set() and step < stop_at:
                interrupted = True
                break

    # -- final scores: the model next to every baseline on val and test --------------------
    rng_at_stop = rng_now()  # what a resume must restore, whatever scoring does below
    emit(StepInfo(step, cfg.steps, history[-1]["loss"] if history else float("nan"),
                  lr_at(step, cfg), rate, last_val, "baselines"))
    final = model
    if best["state"] is not None:  # score (and hand back) the best-val weights
        final = CandleGPT(gcfg).to(dev)
        final.load_state_dict(best["state"])
        final.fingerprint = fingerprint
    final.meta["token_up_rate"] = up_rate
    rows, best_name, beats, summary = compare_to_baselines(final, splits, cfg.eval_batch)
    if best["state"] is not None:
        summary += f" (model weights from step {best['step']}, the best on val)"
    metrics = {"history": history, "table": [asdict(r) for r in rows], "summary": summary,
               "best_ngram": best_name, "beats_best_ngram": beats}
    if step > 0:
        save_checkpoint(out, state(metrics, rng_at_stop))
    emit(StepInfo(step, cfg.steps, history[-1]["loss"] if history else float("nan"),
                  lr_at(step, cfg), rate, last_val, "done"))
    return TrainResult(
        path=out, step=step, steps=cfg.steps, device=str(dev), n_params=model.num_params(),
        tokens_per_s=tokens_seen / t_train if t_train else float("nan"),
        data_wait_share=t_data / t_train if t_train else float("nan"),
        history=history, table=rows, best_ngram=best_name, beats_best_ngram=beats,
        summary=summary, interrupted=interrupted, model=final.eval(),
    )
