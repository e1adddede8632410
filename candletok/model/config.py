"""What shapes a training run and what it reports: :class:`TrainConfig` (saved in every
checkpoint), the data-sized defaults, resume rules, :class:`StepInfo` progress events and
:class:`TrainResult`; :mod:`candletok.model.train` runs them."""

from __future__ import annotations

import dataclasses
import math
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from candletok.core.display import is_intraday
from candletok.core.errors import ModelError
from candletok.core.fields import setting
from candletok.model import size
from candletok.tokenize.calendar import CalendarSpec

if TYPE_CHECKING:  # torch-free to import: the CLI reads TrainConfig's fields for --help
    from candletok.model.evaluate import ScoreRow
    from candletok.model.gpt import CandleGPT, GPTConfig
    from candletok.model.lstm import LSTMConfig

# -- configuration ------------------------------------------------------------------------
# Default steps: this many passes over the training candles (measured on val, docs/model.md
# "Training budget"): 25 passes stopped a 29k-candle hourly run at its budget while val was still
# falling fast (7.997 bits; 100 passes reached 7.740). Small daily data stops early anyway.
AUTO_PASSES = 200  # default steps: this many passes over the training candles ...
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


#: The architectures ``TrainConfig.arch`` takes: ``gpt`` (CandleGPT, the default) and
#: ``lstm`` (CandleLSTM, the recurrent baseline of about the same size; docs/model.md).
ARCHS = size.ARCHS

CALENDAR_SETTINGS = ("auto", "on", "off")
#: The default of ``TrainConfig.calendar``.
CALENDAR_DEFAULT = "auto"
#: Whether ``calendar="auto"`` turns calendar inputs on for bars of a day or longer too
#: (intraday bars always get them). On: on the sample's two daily datasets they gave a
#: slightly lower val on average over two seeds (within seed noise; docs/model.md).
CALENDAR_AUTO_DAILY = True
#: The time zone of daily and longer bars' calendar: such bars are stamped with their date
#: at 00:00 UTC (a date without a time is read as UTC), which New York time would move to
#: the evening before.
DAILY_TZ = "UTC"


def calendar_spec(setting: str, interval: str | None,
                  tz: str | None = None) -> CalendarSpec | None:
    """The calendar a run's model reads, or None for none: ``setting`` ``off``; ``on``;
    ``auto``: on for intraday bars (and for daily and longer ones when
    :data:`CALENDAR_AUTO_DAILY`), off when the interval is unknown. The time zone is
    ``tz``, else the exchange's (:class:`CalendarSpec`'s default) for intraday bars and
    :data:`DAILY_TZ` for longer ones."""
    if setting not in CALENDAR_SETTINGS:
        raise ModelError(f"calendar must be one of {', '.join(CALENDAR_SETTINGS)}, not "
                         f"{setting!r}.")
    # unknown interval: no calendar by design (not a guess), so is_intraday is not asked
    intraday = interval is not None and is_intraday(interval)
    if setting == "off" or (setting == "auto" and not (
            intraday or (interval is not None and CALENDAR_AUTO_DAILY))):
        return None
    if tz:
        return CalendarSpec(tz)
    return CalendarSpec() if intraday or interval is None else CalendarSpec(DAILY_TZ)


@dataclass
class TrainConfig:
    """Everything that shapes a training run. Saved in every checkpoint.

    The fields with help text are ``candletok train``'s options (:func:`setting`): the
    command reads its defaults and help from here. The model size here is the one default
    size: :class:`~candletok.model.gpt.GPTConfig` reads it."""

    # Defaults chosen on val by benchmarks/model_study.py (docs/model.md, "Choosing the defaults"):
    # on the sample's 10k training candles no other width, depth, context, dropout, weight
    # decay or lr beat these by more than the seed-to-seed spread; val is best after ~70
    # steps there, the best-on-val weights are kept and early stopping ends the run.
    steps: int | None = setting(  # None: sized to the data (auto_steps), fixed at the start
        None, f"Optimizer steps (default: {AUTO_PASSES} passes over the training candles, at "
        f"least {AUTO_MIN_STEPS} and at most {AUTO_MAX_STEPS:,}; early stopping usually ends "
        "sooner).")
    arch: str = setting(  # the model's body; the checkpoint records it (model/arch.py)
        "gpt", "Model: gpt (CandleGPT, the Transformer) or lstm (CandleLSTM, the recurrent "
        "baseline of about the same size, same tokens and calendar inputs).")
    batch_size: int = setting(32, "Windows per step.", flag="--batch")
    context: int = setting(size.CONTEXT, "Tokens of context per window.")
    n_layer: int = setting(size.N_LAYER, "Transformer blocks (LSTM layers with --arch lstm).",
                           flag="--layers")
    n_head: int = setting(size.N_HEAD, "Attention heads.", flag="--heads")
    n_embd: int = setting(size.N_EMBD, "Embedding width (a multiple of heads).",
                           flag="--width")
    dropout: float = setting(size.DROPOUT, "Dropout probability.")
    bias: bool = size.BIAS
    lr: float = setting(1e-3, "Peak learning rate.")
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 50
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    eval_every: int | None = setting(  # also the checkpoint interval; None: auto_eval_every
        None, f"Steps between val checks and checkpoints (default: steps / {AUTO_EVALS}, "
        f"between {AUTO_EVAL_EVERY[0]} and {AUTO_EVAL_EVERY[1]}).")
    eval_windows: int = 512  # cap on val windows for periodic evals (0: all); final is full
    eval_batch: int = 64
    patience: int = setting(  # stop after this many evaluations without a better val
        5, "Stop after this many val checks without a better val (default {default}; 0 never "
        "stops early).")
    seed: int = setting(0, "Seed for init, dropout and data order.")
    threads: int = setting(  # 0: OMP_NUM_THREADS if set, else torch's (see runtime)
        0, "CPU threads (default: OMP_NUM_THREADS if set, else torch's setting, at most the "
        "available cores).")
    token_features: bool = True  # feature-aware embeddings when the vocab is available
    keep_best: bool = True  # the model you load is the one with the best val score
    calendar: str = setting(  # calendar inputs: auto, on or off (see calendar_spec)
        CALENDAR_DEFAULT, "Calendar inputs (each candle's time of day, weekday and month): "
        "auto (on; daily bars follow CALENDAR_AUTO_DAILY, on by default), on or off.")
    calendar_tz: str | None = setting(  # their time zone; None: by interval (calendar_spec)
        None, "Time zone of the calendar inputs (default: America/New_York for intraday "
        "bars, UTC for daily ones).")
    levels: bool = setting(  # level inputs beside the token (tokenize/levels); off: chosen on val
        False, "Level inputs beside each token (its range over 1, 5 and 22 bars and the "
        "scale against its long-run mean, in scale units; off by default, docs/model.md).")

    MAX_CONTEXT: ClassVar[int] = 8192
    RESUMABLE: ClassVar[tuple[str, ...]] = ("steps", "eval_every", "patience", "threads")

    def check(self) -> None:
        """One :class:`ModelError` for the first setting that cannot train (fail fast)."""
        if self.arch not in ARCHS:
            raise ModelError(f"arch must be one of {', '.join(ARCHS)}, not {self.arch!r}.")
        ints = {"number of steps": 1 if self.steps is None else self.steps,
                "batch size": self.batch_size, "context": self.context,
                "number of layers": self.n_layer, "number of heads": self.n_head,
                "width": self.n_embd,
                "eval interval": 1 if self.eval_every is None else self.eval_every}
        for name, v in ints.items():
            if v < 1:
                raise ModelError(f"The {name} must be at least 1, not {v}.")
        for name, v in {"patience": self.patience, "number of threads": self.threads,
                        "seed": self.seed}.items():
            if v < 0:
                raise ModelError(f"The {name} must be 0 or more, not {v}.")
        if self.arch == "gpt" and self.n_embd % self.n_head:  # an LSTM has no heads
            raise ModelError(f"The width ({self.n_embd}) must be a multiple of the number of "
                             f"heads ({self.n_head}).")
        if self.context > self.MAX_CONTEXT:
            raise ModelError(f"The context must be at most {self.MAX_CONTEXT} tokens, not "
                             f"{self.context}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ModelError(f"Dropout must be in [0, 1), not {self.dropout}.")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ModelError(f"The learning rate must be a positive number, not {self.lr}.")
        calendar_spec(self.calendar, None)  # a bad setting is an error before any data
        if self.calendar_tz:
            try:
                zoneinfo.ZoneInfo(self.calendar_tz)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
                raise ModelError(f"Unknown calendar time zone {self.calendar_tz!r}; use an "
                                 "IANA name such as America/New_York.") from exc

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

    def gpt_config(self, vocab_size: int, n_features: int = 0,
                   calendar: CalendarSpec | None = None) -> GPTConfig:
        from candletok.model.gpt import GPTConfig
        from candletok.tokenize.levels import N_LEVELS
        return GPTConfig(vocab_size=vocab_size, context=self.context, n_layer=self.n_layer,
                         n_head=self.n_head, n_embd=self.n_embd, dropout=self.dropout,
                         bias=self.bias, n_features=n_features,
                         calendar=None if calendar is None else calendar.to_dict(),
                         levels=N_LEVELS if self.levels else 0)

    def model_config(self, vocab_size: int, n_features: int = 0,
                     calendar: CalendarSpec | None = None) -> GPTConfig | LSTMConfig:
        """The shape of this run's model, of its ``arch``: :meth:`gpt_config`, or the
        LSTM of the same width, depth and context (about the same parameter count)."""
        g = self.gpt_config(vocab_size, n_features, calendar)
        if self.arch == "gpt":
            return g
        from candletok.model.lstm import LSTMConfig
        return LSTMConfig(vocab_size=g.vocab_size, context=g.context, n_layer=g.n_layer,
                          n_embd=g.n_embd, dropout=g.dropout, bias=g.bias,
                          n_features=g.n_features, calendar=g.calendar)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def resume_config(out: str | Path, **changes: int | None) -> TrainConfig:
    """The configuration saved in the checkpoint at ``out``, with the changes a resume
    allows (:meth:`TrainConfig.merged_for_resume`)."""
    from candletok.model.checkpoint import read_checkpoint
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
    calendar: str | None = None  # the calendar inputs' time zone, None: no calendar inputs
    stop_signal: int | None = None  # SIGINT or SIGTERM when one stopped the run (interrupted)
    model_name: str = "CandleGPT"  # the architecture's name (CandleLSTM for arch lstm)


Progress = Callable[[StepInfo], None]


# -- data and schedule --------------------------------------------------------------------
