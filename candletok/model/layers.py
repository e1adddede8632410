"""The Transformer's layers (nanoGPT style): LayerNorm without bias, causal self-attention
that extends a key-value past, the MLP and the pre-norm block. Kept apart from
:mod:`candletok.model.gpt` so that file stays one readable page of the model itself."""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn as nn
from torch.nn import functional as F  # noqa: N812 (the universal torch idiom)


class GPTConfig(Protocol):
    """What the layers read of :class:`candletok.model.gpt.GPTConfig` (a protocol, so this
    module imports nothing of the model's)."""

    n_embd: int
    n_head: int
    bias: bool
    dropout: float

KV = tuple[torch.Tensor, torch.Tensor]  # one layer's keys and values, each (B, nh, T, hs)


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (torch's own cannot drop only the bias)."""

    def __init__(self, ndim: int, bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        if cfg.n_embd % cfg.n_head:
            raise ValueError(f"n_embd ({cfg.n_embd}) must be a multiple of n_head ({cfg.n_head})")
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)
        self.n_head, self.n_embd, self.dropout = cfg.n_head, cfg.n_embd, cfg.dropout

    def forward(self, x: torch.Tensor, past: KV | None = None) -> tuple[torch.Tensor, KV]:
        """``x`` (B, T, C) -> output (B, T, C) and this layer's keys and values (B, nh,
        T_past + T, hs): ``past``'s with the new positions' appended (see :class:`KVCache`)."""
        B, T, C = x.shape  # (batch, time, channels)
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # 3 x (B, T, C)
        hs = C // self.n_head
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)
        mask, causal = None, True
        if past is not None:  # the new queries see every cached position and, causally,
            k = torch.cat([past[0], k], dim=2)  # each other: (B, nh, T_past + T, hs)
            v = torch.cat([past[1], v], dim=2)
            n_past = past[0].shape[2]
            causal = False  # is_causal aligns the mask top-left, wrong with a past
            if T > 1:  # one new query may see everything: no mask needed
                mask = (torch.arange(n_past + T, device=x.device)[None, :]
                        <= n_past + torch.arange(T, device=x.device)[:, None])  # (T, Tk)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal,
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        y = self.c_proj(y)  # dropout is the identity in eval: skip its call (a live step)
        return (self.resid_dropout(y) if self.training else y), (k, v)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c_proj(F.gelu(self.c_fc(x)))
        return self.dropout(y) if self.training else y


class Block(nn.Module):
    """Pre-norm residual block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(cfg.n_embd, cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = LayerNorm(cfg.n_embd, cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, past: KV | None = None) -> tuple[torch.Tensor, KV]:
        a, kv = self.attn(self.ln_1(x), past)
        x = x + a
        return x + self.mlp(self.ln_2(x)), kv
