"""CandleLSTM: the recurrent baseline, a stacked LSTM over the same candle tokens.

"Is a Transformer better than an LSTM here?" is the first question a reader of this field
asks, so the LSTM is built to differ from :class:`~candletok.model.gpt.CandleGPT` in its
body alone. Everything around the body is CandleGPT's own code, inherited: the tied token
embedding and LM head, the output bias started at the train unigram, the feature-aware
embeddings, the calendar inputs (one embedding per field added to the token's, as in
CandleGPT), the final LayerNorm with its gain started at zero (so step 0 predicts exactly
the unigram), masking of the special tokens, sampling, :meth:`generate` and
:meth:`forward_step`. It is trained by the same loop (``TrainConfig(arch="lstm")``,
``candletok train --arch lstm``) and scored by the same tables.

Size. The LSTM matches the Transformer's parameter count at the same ``n_embd`` and
``n_layer``: a Transformer block has 12·E² + 2·E weights (attention 4·E², MLP 8·E², two
gains); an LSTM layer with a projection (``proj_size``, Sak et al. 2014) of its cell of
width H down to E has 4·H·E input, 4·H·E recurrent and H·E projection weights and 8·H
biases, so H = (12·E² + 2·E) / (9·E + 8) (84 for the default width 64). The projection
keeps the hidden state, the embedding and the search vectors at width E, so the tied head
and the ``model`` search mode work unchanged. It has no position embedding: order is in the
recurrence.

Windows. The LSTM reads the same ``context``-token windows as CandleGPT, from a zero state
at each window's start (a BOS starts each series), so its logits at a position depend on
the same tokens CandleGPT's do, and :meth:`forward_step` is exact to :meth:`forward`: within
the context it carries the cell state (:class:`LSTMCache`), past it the window slides and
the last ``context`` tokens are read again from a zero state, as the full forward reads
them. Causality is the recurrence's own: no state flows backwards in time.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn

from candletok.core.errors import ModelError
from candletok.core.ids import N_SPECIAL
from candletok.model import size
from candletok.model.gpt import CandleGPT
from candletok.model.layers import LayerNorm

# torch says once that oneDNN has no projected LSTM and it uses its own kernel: true, and
# nothing a user can act on (measured: a training step no slower than CandleGPT's)
warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")


def lstm_hidden(n_embd: int) -> int:
    """The LSTM cell width whose layer (projected to ``n_embd``) has about as many weights
    as a Transformer block of width ``n_embd`` (see the module doc): 84 for 64, and always
    wider than ``n_embd`` (torch's projection must narrow the cell)."""
    e = int(n_embd)
    return max(e + 1, round((12 * e * e + 2 * e) / (9 * e + 8)))


@dataclass
class LSTMConfig:
    """Shape of a CandleLSTM: the fields CandleGPT's readers use (``vocab_size``,
    ``context``, ``n_embd``, ``n_features``, ``calendar``) mean the same here; ``hidden`` is
    the cell width (0: :func:`lstm_hidden`, the Transformer's size)."""

    vocab_size: int = 256
    context: int = size.CONTEXT
    n_layer: int = size.N_LAYER
    n_embd: int = size.N_EMBD
    hidden: int = 0
    dropout: float = size.DROPOUT
    bias: bool = size.BIAS  # of the final LayerNorm (the LSTM's gates always have biases)
    n_features: int = 0
    calendar: dict[str, Any] | None = None
    levels: int = 0  # level inputs: CandleGPT's only; the LSTM baseline reads none

    def __post_init__(self) -> None:
        if self.levels:
            raise ModelError("The LSTM baseline reads no level inputs; train it with "
                             "levels off (--no-levels).")
        if self.hidden <= 0:
            self.hidden = lstm_hidden(self.n_embd)
        self.hidden = max(int(self.hidden), self.n_embd + 1)  # torch: proj_size < hidden

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LSTMConfig:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class LSTMCache:
    """What :meth:`CandleLSTM.forward_step` keeps between calls: the LSTM's ``(h, c)``
    state after the positions seen so far, and those positions' tokens (and calendar ids),
    kept to read the window again once it slides past the context."""

    state: tuple[torch.Tensor, torch.Tensor]  # each (n_layer, B, E) and (n_layer, B, H)
    idx: torch.Tensor  # (B, T) the positions' tokens, T <= context
    cal: torch.Tensor | None  # (B, T, n_fields); None without calendar inputs

    @property
    def length(self) -> int:
        return int(self.idx.shape[1])


class CandleLSTM(CandleGPT):
    """Token (+ features, + calendar) embedding, dropout, an ``n_layer`` LSTM projected to
    ``n_embd``, dropout, the final LayerNorm and the tied LM head. A CandleGPT whose body is
    recurrent: only ``__init__``, :meth:`_run` and :meth:`num_params` are its own."""

    name = "CandleLSTM"

    def __init__(self, cfg: LSTMConfig) -> None:
        nn.Module.__init__(self)  # CandleGPT's body is not built; its methods are reused
        if cfg.vocab_size <= N_SPECIAL:
            raise ValueError(f"vocab_size must exceed the {N_SPECIAL} special tokens")
        self.config = cfg  # type: ignore[assignment]  (the fields its readers use agree)
        self.fingerprint = None
        self.meta = {}
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.rnn = nn.LSTM(cfg.n_embd, cfg.hidden, num_layers=cfg.n_layer, batch_first=True,
                           dropout=cfg.dropout if cfg.n_layer > 1 else 0.0,
                           proj_size=cfg.n_embd)
        self.ln_f = LayerNorm(cfg.n_embd, cfg.bias)
        self._init_io(cfg, self.wte)  # type: ignore[arg-type]
        self.apply(self._init_weights)  # embeddings and linear layers as CandleGPT's
        with torch.no_grad():  # forget gates start open (bias 1: Jozefowicz et al. 2015)
            h = cfg.hidden
            for name, p in self.rnn.named_parameters():
                if name.startswith("bias_ih"):
                    p[h:2 * h].fill_(1.0)  # torch's gate order: input, forget, cell, output
                elif name.startswith("bias_hh"):
                    p[h:2 * h].zero_()
        nn.init.zeros_(self.ln_f.weight)  # step 0 predicts the output bias: the unigram

    def num_params(self) -> int:
        """Parameters, counting the tied embedding once (there are no positions)."""
        return sum(p.numel() for p in self.parameters())

    def _run(self, idx: torch.Tensor, fe: torch.Tensor | None, cal: torch.Tensor | None,
             cache: LSTMCache | None, lv: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, LSTMCache]:  # type: ignore[override]
        """Hidden states (B, T, E) of ``idx`` (B, T) continued from ``cache``'s state (none:
        a zero state), and the cache extended by them: the one body of the full and the
        incremental forward (CandleGPT's :meth:`forward` and :meth:`forward_step` call it).
        The LSTM reads no level inputs (``lv`` stays None: its config has none)."""
        tok = self.wte(idx)  # (B, T, E)
        if fe is not None:
            tok = tok + fe[idx]
        ce = self._calendar_embeddings(idx, cal)
        if ce is not None:
            tok = tok + ce
        y, state = self.rnn(self.drop(tok), None if cache is None else cache.state)
        cal_kept = None if self.cal_emb is None else cal
        if cache is not None:
            idx = torch.cat([cache.idx, idx], dim=1)
            if cal_kept is not None and cache.cal is not None:
                cal_kept = torch.cat([cache.cal, cal_kept], dim=1)
        return self.ln_f(self.drop(y)), LSTMCache(state, idx, cal_kept)


__all__ = ["CandleLSTM", "LSTMCache", "LSTMConfig", "lstm_hidden"]
