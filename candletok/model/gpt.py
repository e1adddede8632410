"""CandleGPT: a small decoder-only Transformer over candle tokens (nanoGPT style).

One readable file on purpose: the model is small (a few hundred thousand parameters by
default) so that it trains in minutes on a laptop CPU, and everything a reader needs to
audit it — attention, the MLP, the loss, sampling, the KV cache — is on this page.

Token ids (see docs/architecture.md): ``PAD=0, BOS=1, EOS=2, MISSING=3`` and candle tokens from
:data:`N_SPECIAL` up. The model sees BOS at the start of each series and may see MISSING as
context, but it never *emits* a special token: :meth:`CandleGPT.generate` and
:meth:`CandleGPT.next_token_probs` mask them, so every sampled id decodes to a candle.

Calendar inputs (optional, ``GPTConfig.calendar``): each position also reads the
calendar ids of its own candle (:mod:`candletok.tokenize.calendar`: time of day, weekday,
month), one learned embedding per field added to the token embedding. The ids come in as
``cal`` (B, T, n_fields) beside ``idx``; BOS and PAD positions carry each field's unknown
id. A model built with them refuses to run without ``cal`` (a silent fallback would hide a
caller that forgot them); a model without them ignores ``cal``.

Level inputs (optional, ``GPTConfig.levels``): each position also reads a few continuous
numbers of its candle (:mod:`candletok.tokenize.levels`: its range and its 5- and 22-bar
means against the scale, the scale against its long-run mean), ``lv`` (B, T, levels)
projected by one linear layer and added to the embedding; BOS and PAD carry zeros. Same
rule: required when on, ignored when off (off is today's model, parameter for parameter).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.nn import functional as F  # noqa: N812 (the universal torch idiom)

from candletok.core.errors import CandletokError, ModelError
from candletok.core.ids import IGNORE_INDEX, N_SPECIAL
from candletok.model import size
from candletok.model.layers import KV, Block, LayerNorm
from candletok.tokenize.calendar import CalendarSpec


@dataclass
class GPTConfig:
    """Shape of a CandleGPT. The size defaults are :mod:`candletok.model.size`, the one size
    chosen on val (docs/model.md, "Choosing the defaults": 2 layers, width 64, context 128,
    dropout 0.2), so a model built here by hand is the model ``train`` gives."""

    vocab_size: int = 256
    context: int = size.CONTEXT
    n_layer: int = size.N_LAYER
    n_head: int = size.N_HEAD
    n_embd: int = size.N_EMBD
    dropout: float = size.DROPOUT
    bias: bool = size.BIAS
    n_features: int = 0  # columns of the per-token feature table fed to the embedding; 0: off
    calendar: dict[str, Any] | None = None  # CalendarSpec.to_dict() of the inputs; None: off
    levels: int = 0  # continuous level inputs per position (tokenize/levels); 0: off

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GPTConfig:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})




@dataclass
class KVCache:
    """What :meth:`CandleGPT.forward_step` keeps between calls: every layer's keys and
    values of the positions seen so far, and those positions' tokens (and calendar ids).

    The keys of a position depend only on it and the positions before it, so a new token
    needs only its own row computed against the cached ones. That holds while the sequence
    fits the context: the position embedding is learned and absolute, so once a sequence
    outgrows ``context`` the window the full forward reads slides, every kept token changes
    position and no key can be reused. The tokens are kept for that case, to recompute the
    last ``context`` positions exactly as :meth:`CandleGPT.forward` does."""

    kv: list[KV]  # per layer
    idx: torch.Tensor  # (B, T) the cached positions' tokens, T <= context
    cal: torch.Tensor | None  # (B, T, n_fields) their calendar ids; None without calendar
    lv: torch.Tensor | None = None  # (B, T, levels) their level inputs; None without

    @property
    def length(self) -> int:
        """Positions held (at most the model's context)."""
        return int(self.idx.shape[1])


class CandleGPT(nn.Module):
    """Decoder-only Transformer: token + learned position embeddings, ``n_layer`` pre-norm
    blocks, a final LayerNorm and an LM head tied to the token embedding."""

    name = "CandleGPT"  # how tables and forecasters name this architecture

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        if cfg.vocab_size <= N_SPECIAL:
            raise ValueError(f"vocab_size must exceed the {N_SPECIAL} special tokens")
        self.config = cfg
        self.fingerprint: str | None = None  # vocab fingerprint, set when trained or loaded
        self.meta: dict[str, Any] = {}  # checkpoint metadata (configs, metrics), set on load
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
                wpe=nn.Embedding(cfg.context, cfg.n_embd),
                drop=nn.Dropout(cfg.dropout),
                h=nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)]),
                ln_f=LayerNorm(cfg.n_embd, cfg.bias),
            )
        )
        self._init_io(cfg, self.transformer.wte)
        self.apply(self._init_weights)
        # GPT-2 scaling of residual projections keeps the residual stream's variance flat
        # with depth.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))
        # The final LayerNorm's gain starts at zero, so step 0 predicts exactly the output
        # bias (the unigram, see init_output_bias) and the model departs from it only as far
        # as the gradient finds signal (as ReZero starts residual branches at zero). With
        # the usual gain of one, random hidden states add noise to every logit and a small
        # run spends its first steps undoing it: on the sample's kmeans dataset the model
        # then lost to the unigram on val and test; started here it beat it on both.
        nn.init.zeros_(self.transformer.ln_f.weight)

    def _init_io(self, cfg: GPTConfig, wte: nn.Embedding) -> None:
        """The parts every body shares (:class:`~candletok.model.lstm.CandleLSTM` too): the
        LM head tied to ``wte``, the output bias, the feature-aware embeddings and the
        calendar inputs, set up in this order (the init draws follow it)."""
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        # Weight tying: the output layer scores a token by its input embedding, which halves
        # the embedding parameters and helps small data (Press & Wolf, 2017).
        wte.weight = self.lm_head.weight
        # An output bias that starts at the log unigram (see init_output_bias): with a
        # thousand tokens and a few thousand candles, learning the frequencies alone eats
        # most of a small run, and they are known before the first step.
        self.head_bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        # Feature-aware embeddings: each candle token also gets a learned projection of its
        # representative (gap, body, upper, lower[, vol]) features, shared by the input and
        # the (tied) output side. Tokens for similar candles then start with similar
        # vectors, so a rare token borrows strength from its neighbours instead of being
        # learned from its own few occurrences.
        if cfg.n_features > 0:
            self.register_buffer("token_features", torch.zeros(cfg.vocab_size, cfg.n_features))
            self.feat_proj: nn.Linear | None = nn.Linear(cfg.n_features, cfg.n_embd, bias=False)
        else:
            self.feat_proj = None
        # Calendar inputs: one table per field, its last row the unknown id (BOS, PAD).
        self.calendar: CalendarSpec | None = None
        self.cal_emb: nn.ModuleList | None = None
        if cfg.calendar is not None:
            try:
                self.calendar = CalendarSpec.from_dict(cfg.calendar)
            except CandletokError as exc:
                raise ModelError(str(exc)) from exc
            self.cal_emb = nn.ModuleList(
                [nn.Embedding(n + 1, cfg.n_embd) for n in self.calendar.sizes])
        # Level inputs (tokenize/levels): a few causal numbers per candle, projected
        # beside the token; none unless the config asks (today's model, bit for bit)
        n_lv = int(getattr(cfg, "levels", 0) or 0)
        self.lv_proj = nn.Linear(n_lv, cfg.n_embd, bias=False) if n_lv > 0 else None

    def refuse_levels(self, what: str, instead: str = "") -> None:
        """One clear sentence where a path that does not compute level inputs yet meets a
        model that reads them (rather than a wrong answer from missing inputs)."""
        if self.lv_proj is not None:
            raise ModelError(f"This model reads level inputs, which {what} does not pass "
                             f"yet; {instead or 'use'} a model trained with --no-levels.")

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        """Parameters, counting the tied embedding once and leaving out positions."""
        return sum(p.numel() for p in self.parameters()) - self.transformer.wpe.weight.numel()

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    @torch.no_grad()
    def init_output_bias(self, counts: np.ndarray | torch.Tensor, alpha: float = 0.5) -> None:
        """Start the output bias at log P(token) from ``counts`` (length vocab_size,
        add-``alpha`` smoothed over candle tokens), so step 0 already predicts the unigram."""
        c = torch.as_tensor(np.asarray(counts, dtype=np.float64)).float()
        if c.numel() != self.config.vocab_size:
            raise ValueError("counts must have vocab_size entries")
        c = c.clone()
        c[N_SPECIAL:] += alpha
        logp = torch.log(c / c.sum())
        floor = float(logp[N_SPECIAL:].min()) - 5.0  # specials: rare, never -inf (stable)
        self.head_bias.copy_(torch.where(torch.isfinite(logp), logp, torch.tensor(floor)))

    @torch.no_grad()
    def set_token_features(self, table: np.ndarray) -> None:
        """Install the (vocab_size, n_features) table of representative token features
        (NaN rows for specials, as ``Tokenizer.decode_features`` returns them). Columns are
        standardized over candle tokens and clipped to +-5 so open-ended tail bins cannot
        dominate; the result is a buffer, saved with the weights."""
        if self.feat_proj is None:
            raise ValueError("this model was built with n_features=0")
        F_ = np.asarray(table, dtype=np.float64)
        if F_.shape != (self.config.vocab_size, self.config.n_features):
            want = (self.config.vocab_size, self.config.n_features)
            raise ValueError(f"feature table must have shape {want}")
        cand = F_[N_SPECIAL:]
        mu, sd = np.nanmean(cand, axis=0), np.nanstd(cand, axis=0)
        Z = np.clip((F_ - mu) / np.where(sd > 0, sd, 1.0), -5.0, 5.0)
        self.token_features.copy_(torch.from_numpy(np.nan_to_num(Z, nan=0.0)).float())

    def _feature_embeddings(self) -> torch.Tensor | None:
        """(V, C) feature part of every token's embedding, or None when off."""
        if self.feat_proj is None:
            return None
        return self.feat_proj(self.token_features)

    def _step_features(self) -> torch.Tensor | None:
        """:meth:`_feature_embeddings` for :meth:`forward_step`: under ``no_grad`` the same
        tensor is kept while the weights and the table are unchanged (an in-place update
        bumps a tensor's ``_version``, a move changes its storage), so a live update or a
        sampling step does not recompute the (V, C) projection each token."""
        if self.feat_proj is None or torch.is_grad_enabled():
            return self._feature_embeddings()
        w, t = self.feat_proj.weight, self.token_features
        key = (w.data_ptr(), w._version, t.data_ptr(), t._version)
        if getattr(self, "_fe_key", None) != key:
            self._fe_cache = self._feature_embeddings()
            self._fe_key = key
        return self._fe_cache

    def _calendar_embeddings(self, idx: torch.Tensor, cal: torch.Tensor | None
                             ) -> torch.Tensor | None:
        """(B, T, C) sum of the calendar fields' embeddings of ``cal`` (B, T, n_fields), or
        None when the model has no calendar inputs (``cal`` is then ignored)."""
        if self.cal_emb is None:
            return None
        if cal is None:
            raise ModelError("This model reads calendar inputs (each candle's time of day, "
                             "weekday and month); pass cal= beside the tokens.")
        want = (*idx.shape, len(self.cal_emb))
        if tuple(cal.shape) != want:
            raise ValueError(f"cal must have shape {want} (tokens' shape, then one id per "
                             f"calendar field), not {tuple(cal.shape)}")
        out = self.cal_emb[0](cal[..., 0])
        for i in range(1, len(self.cal_emb)):
            out = out + self.cal_emb[i](cal[..., i])
        return out

    def _level_embeddings(self, idx: torch.Tensor, lv: torch.Tensor | None
                          ) -> torch.Tensor | None:
        """(B, T, C) projection of the level inputs ``lv`` (B, T, levels), or None off."""
        if self.lv_proj is None:
            return None
        if lv is None:
            raise ModelError("This model reads level inputs (each candle's range and scale "
                             "against their own past); pass lv= beside the tokens.")
        want = (*idx.shape, self.config.levels)
        if tuple(lv.shape) != want:
            raise ValueError(f"lv must have shape {want}, not {tuple(lv.shape)}")
        return self.lv_proj(lv.to(self.lv_proj.weight.dtype))

    def hidden(self, idx: torch.Tensor, cal: torch.Tensor | None = None,
               lv: torch.Tensor | None = None) -> torch.Tensor:
        """Final-layer-norm hidden states (B, T, C) of ``idx`` (B, T) (and its calendar ids
        ``cal`` (B, T, n_fields) when the model reads them): what the LM head reads at each
        position, so what the model "thinks" after each candle (pattern search compares
        windows by the state at their last candle)."""
        return self._hidden(idx, self._feature_embeddings(), cal, lv)

    def _hidden(self, idx: torch.Tensor, fe: torch.Tensor | None,
                cal: torch.Tensor | None = None, lv: torch.Tensor | None = None
                ) -> torch.Tensor:
        T = idx.shape[1]  # idx: (B, T)
        ctx = self.config.context
        if ctx < T:
            raise ValueError(f"sequence of {T} tokens exceeds the context ({ctx})")
        return self._run(idx, fe, cal, None, lv)[0]

    def _run(self, idx: torch.Tensor, fe: torch.Tensor | None, cal: torch.Tensor | None,
             cache: KVCache | None, lv: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, KVCache]:
        """Hidden states (B, T, C) of ``idx`` (B, T) placed after ``cache``'s positions
        (none: from position 0), and the cache extended by them. The one body of the full
        and the incremental forward, so the two cannot drift apart."""
        T = idx.shape[1]
        past = 0 if cache is None else cache.length
        pos = torch.arange(past, past + T, dtype=torch.long, device=idx.device)  # (T,)
        tok = self.transformer.wte(idx)  # (B, T, C)
        if fe is not None:
            tok = tok + fe[idx]
        ce = self._calendar_embeddings(idx, cal)  # (B, T, C) or None
        if ce is not None:
            tok = tok + ce
        le = self._level_embeddings(idx, lv)
        if le is not None:
            tok = tok + le
        x = tok + self.transformer.wpe(pos)  # (B, T, C)
        if self.training:
            x = self.transformer.drop(x)
        kvs = []
        for i, block in enumerate(self.transformer.h):
            x, kv = block(x, None if cache is None else cache.kv[i])
            kvs.append(kv)
        cal_kept = None if self.cal_emb is None else cal
        lv_kept = None if self.lv_proj is None else lv
        if cache is not None:
            idx = torch.cat([cache.idx, idx], dim=1)
            if cal_kept is not None and cache.cal is not None:
                cal_kept = torch.cat([cache.cal, cal_kept], dim=1)
            if lv_kept is not None and cache.lv is not None:
                lv_kept = torch.cat([cache.lv, lv_kept], dim=1)
        return self.transformer.ln_f(x), KVCache(kvs, idx, cal_kept, lv_kept)

    def _head(self, x: torch.Tensor, fe: torch.Tensor | None) -> torch.Tensor:
        """Logits (B, T, V) of hidden states ``x`` (B, T, C)."""
        logits = self.lm_head(x) + self.head_bias  # (B, T, V)
        if fe is not None:
            logits = logits + x @ fe.t()  # tied: the output sees the same feature part
        return logits

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None,
        cal: torch.Tensor | None = None, lv: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``idx`` (B, T) int64 with T <= context -> logits (B, T, V) and, with ``targets``
        (B, T) int64 (-1 = ignore), the mean cross-entropy in nats over non-ignored targets.
        ``cal`` (B, T, n_fields) int64: each position's calendar ids (models with calendar
        inputs only); ``lv`` (B, T, levels) float: level inputs (models with them only)."""
        fe = self._feature_embeddings()  # (V, C) or None
        x = self._hidden(idx, fe, cal, lv)  # (B, T, C)
        logits = self._head(x, fe)  # (B, T, V)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(
            logits.reshape(-1, logits.size(-1)).float(),
            targets.reshape(-1),
            ignore_index=IGNORE_INDEX,
        )
        return logits, loss

    def forward_step(
        self, idx_new: torch.Tensor, cal_new: torch.Tensor | None = None,
        cache: KVCache | None = None, lv_new: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, KVCache]:
        """Incremental forward: logits (B, T_new, V) of ``idx_new`` (B, T_new) appended to
        the positions in ``cache`` (None: a new sequence), and the extended cache.

        The logits at each new position are those :meth:`forward` gives the last token of
        the sequence ending there, cropped to the last ``context`` tokens (as
        :meth:`generate` and :meth:`next_token_probs` crop), within float rounding. While
        the sequence fits the context each call costs only the new rows; past it, each
        further token is a full forward of its window (see :class:`KVCache` for why). Models
        with calendar inputs need ``cal_new`` (B, T_new, n_fields). Call it under
        ``torch.no_grad()`` and ``eval()`` for inference; it does neither itself."""
        ctx = self.config.context
        B, T = idx_new.shape
        if T < 1:
            raise ValueError("idx_new must hold at least one token per row")
        if cache is not None and cache.idx.shape[0] != B:
            raise ValueError(f"the cache holds {cache.idx.shape[0]} rows, not {B}")
        if self.cal_emb is None:
            cal_new = None
        elif cal_new is None:
            self._calendar_embeddings(idx_new, None)  # raises the one clear sentence
        if self.lv_proj is None:
            lv_new = None
        elif lv_new is None:
            self._level_embeddings(idx_new, None)
        fe = self._step_features()
        room = ctx - (0 if cache is None else cache.length)
        out = []
        if room > 0:  # the part that fits the context: only the new rows are computed
            fit = min(T, room)
            x, cache = self._run(idx_new[:, :fit], fe,
                                 None if cal_new is None else cal_new[:, :fit], cache,
                                 None if lv_new is None else lv_new[:, :fit])
            out.append(self._head(x, fe))
        for j in range(max(room, 0), T):  # past the context: the window slides, recompute
            assert cache is not None
            win = torch.cat([cache.idx, idx_new[:, j:j + 1]], dim=1)[:, -ctx:]
            wcal = None
            if cal_new is not None and cache.cal is not None:
                wcal = torch.cat([cache.cal, cal_new[:, j:j + 1]], dim=1)[:, -ctx:]
            wlv = None
            if lv_new is not None and cache.lv is not None:
                wlv = torch.cat([cache.lv, lv_new[:, j:j + 1]], dim=1)[:, -ctx:]
            x, cache = self._run(win, fe, wcal, None, wlv)
            out.append(self._head(x[:, -1:], fe))
        assert cache is not None
        return torch.cat(out, dim=1), cache

    def _last_logits(self, idx: torch.Tensor, cal: torch.Tensor | None = None,
                     lv: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, V) for the token after ``idx`` (cropped to the context, and ``cal``
        and ``lv`` with it), specials masked to -inf."""
        ctx = self.config.context
        logits, _ = self(idx[:, -ctx:], cal=None if cal is None else cal[:, -ctx:],
                         lv=None if lv is None else lv[:, -ctx:])
        return self._masked(logits[:, -1, :])

    @staticmethod
    def _masked(logits: torch.Tensor) -> torch.Tensor:
        """Float copy of last-position ``logits`` (B, V) with the specials at -inf: the
        model never emits them."""
        logits = logits.float().clone()
        logits[:, :N_SPECIAL] = float("-inf")
        return logits

    @torch.no_grad()
    def next_token_probs(self, idx: torch.Tensor, cal: torch.Tensor | None = None,
                         lv: torch.Tensor | None = None) -> torch.Tensor:
        """Distribution (B, V) of the next token after each row of ``idx`` (B, T) (with its
        calendar ids ``cal`` (B, T, n_fields) when the model reads them): zero on the
        special ids, renormalized over candle tokens, so each row sums to 1."""
        was_training = self.training
        self.eval()
        try:
            return F.softmax(self._last_logits(idx, cal, lv), dim=-1)
        finally:
            self.train(was_training)

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        n: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        cal: torch.Tensor | None = None,
        use_cache: bool = True,
        lv: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Append ``n`` sampled candle tokens to each row of ``idx`` (B, T) -> (B, T + n).

        Special tokens are never sampled. ``temperature`` < 1 sharpens the distribution,
        ``top_k`` keeps only the k most likely candles; ``generator`` makes it reproducible.
        A model with calendar inputs needs ``cal`` (B, T + n, n_fields): the ids of the
        given tokens and of the ``n`` bars to come (their times are known in advance:
        :func:`candletok.tokenize.calendar.next_times`); a sampled token at position i is
        read with ``cal[:, i]``. A model with level inputs needs ``lv`` (B, <=T, levels) of
        the given tokens; every later position reads the last given row (the level held at
        the last real bar: sampled bars are not rebuilt inside this loop, docs/model.md).

        ``use_cache`` (the default) reads each step through :meth:`forward_step`, which
        computes only the new token's row while the sequence fits the context; False
        recomputes the whole window every step. Both draw the same random numbers in the
        same order, so a seed gives the same paths either way (up to a draw that float
        rounding of the logits tips, which the tests have never seen).
        """
        if not (math.isfinite(temperature) and temperature > 0):
            raise ModelError(f"The temperature must be a positive number, not {temperature}.")
        T = idx.shape[1]
        if self.cal_emb is not None and (cal is None or cal.shape[1] < T + int(n)):
            raise ModelError(f"This model reads calendar inputs; pass cal= with the ids of "
                             f"the {T} given and the {int(n)} generated bars.")
        if self.cal_emb is None:
            cal = None
        if self.lv_proj is None:
            lv = None
        elif lv is None:
            self._level_embeddings(idx, None)
        else:  # positions past the given rows hold the last given row
            k = min(lv.shape[1], T)
            lv = torch.cat([lv[:, :k], lv[:, k - 1:k].expand(-1, T + int(n) - k, -1)], dim=1)
        was_training = self.training
        self.eval()
        try:
            if not use_cache or int(n) < 1:
                for i in range(int(n)):
                    c = None if cal is None else cal[:, : T + i]
                    v = None if lv is None else lv[:, : T + i]
                    nxt = self._sample(self._last_logits(idx, c, v), temperature, top_k,
                                       generator)
                    idx = torch.cat([idx, nxt], dim=1)
                return idx
            ctx = self.config.context
            lo = max(0, T - ctx)  # the prompt as the full forward crops it
            logits, cache = self.forward_step(idx[:, lo:], None if cal is None else cal[:, lo:T],
                                              None, None if lv is None else lv[:, lo:T])
            for i in range(int(n)):
                nxt = self._sample(self._masked(logits[:, -1, :]), temperature, top_k,
                                   generator)
                idx = torch.cat([idx, nxt], dim=1)
                if i + 1 < int(n):
                    c = None if cal is None else cal[:, T + i : T + i + 1]
                    v = None if lv is None else lv[:, T + i : T + i + 1]
                    logits, cache = self.forward_step(nxt, c, cache, v)
        finally:
            self.train(was_training)
        return idx

    def _sample(self, logits: torch.Tensor, temperature: float, top_k: int | None,
                generator: torch.Generator | None) -> torch.Tensor:
        """One draw (B, 1) from masked last-position ``logits`` (B, V): the single place
        random numbers are taken, so cached and uncached generation draw alike."""
        logits = logits / temperature
        if top_k is not None:
            k = max(1, min(int(top_k), self.config.vocab_size - N_SPECIAL))
            kth = torch.topk(logits, k, dim=-1).values[:, -1:]  # (B, 1)
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = F.softmax(logits, dim=-1)
        return torch.multinomial(probs, 1, generator=generator)  # (B, 1)

    def configure_optimizer(
        self, lr: float, weight_decay: float, betas: tuple[float, float]
    ) -> torch.optim.AdamW:
        """AdamW with weight decay on matrices only (not on norms, biases or positions'
        1-d parameters), the usual GPT recipe."""
        params = [p for p in self.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(groups, lr=lr, betas=betas)
