"""The model architectures a checkpoint can hold, and what every reader of a trained model
relies on.

:class:`TokenModel` is that interface, written down: next-token logits over ``context``
tokens (with calendar ids when the model reads them), the next-token distribution,
sampled continuations and the hidden state at each position. Evaluation, forecasting,
``predict`` and the search's ``model`` mode are written against it, so a new body (the
LSTM baseline, or another) needs no branch on its name anywhere but here, where a
checkpoint's ``arch`` names the class that rebuilds it (:func:`build_model`)."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from candletok.core.errors import ModelError
from candletok.model.gpt import CandleGPT, GPTConfig
from candletok.model.lstm import CandleLSTM, LSTMConfig
from candletok.model.size import ARCHS
from candletok.tokenize.calendar import CalendarSpec


class ModelShape(Protocol):
    """The configuration fields a model's readers use (GPTConfig and LSTMConfig agree)."""

    vocab_size: int
    context: int
    n_embd: int

    def to_dict(self) -> dict[str, Any]: ...


@runtime_checkable
class TokenModel(Protocol):
    """A trained next-candle model, as its readers use it (CandleGPT, CandleLSTM)."""

    name: str  # how tables and forecasters call it
    config: Any  # a ModelShape: vocab_size, context, n_embd
    calendar: CalendarSpec | None  # the calendar inputs it reads, None: none
    fingerprint: str | None  # its vocabulary's
    meta: dict[str, Any]  # the checkpoint's metadata

    @property
    def device(self) -> torch.device: ...

    def __call__(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                 cal: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, V) of ``idx`` (B, T <= context) and, with targets, the loss; the
        logits at a position read only the tokens up to it."""
        ...

    def next_token_probs(self, idx: torch.Tensor,
                         cal: torch.Tensor | None = None) -> torch.Tensor: ...

    def generate(self, idx: torch.Tensor, n: int, temperature: float = 1.0,
                 top_k: int | None = None, generator: torch.Generator | None = None,
                 cal: torch.Tensor | None = None, use_cache: bool = True) -> torch.Tensor: ...

    def hidden(self, idx: torch.Tensor, cal: torch.Tensor | None = None) -> torch.Tensor: ...

    def num_params(self) -> int: ...

    def eval(self) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...


#: arch name -> (model class, config class); its keys are size.ARCHS
CLASSES: dict[str, tuple[type[CandleGPT], type[Any]]] = {
    "gpt": (CandleGPT, GPTConfig), "lstm": (CandleLSTM, LSTMConfig)}
assert tuple(CLASSES) == ARCHS


def checkpoint_arch(ck: dict[str, Any]) -> str:
    """The architecture a checkpoint holds: its ``arch`` (``gpt`` for a checkpoint written
    before the field existed); one that this version does not know is one clear error."""
    arch = ck.get("arch") or "gpt"
    if arch not in CLASSES:
        raise ModelError(f"The checkpoint holds a {arch!r} model, which this candletok does "
                         f"not know (it knows {', '.join(CLASSES)}); upgrade candletok.")
    return str(arch)


def build_model(arch: str, config: dict[str, Any] | Any) -> CandleGPT:
    """A fresh model of architecture ``arch`` from its configuration (a dict as a
    checkpoint's ``gpt_config`` holds it, or the config object)."""
    model_cls, cfg_cls = CLASSES[arch]
    cfg = cfg_cls.from_dict(config) if isinstance(config, dict) else config
    return model_cls(cfg)


__all__ = ["CLASSES", "ModelShape", "TokenModel", "build_model", "checkpoint_arch"]
