"""Honest baselines for next-candle prediction, in bits per candle.

A Transformer's loss means little on its own: candle tokens are far from uniform and the
next candle depends a little on the last few. So every evaluation puts the model next to

* ``uniform``  — every candle token equally likely: ``log2(n_candle_tokens)`` bits;
* ``unigram``  — add-alpha smoothed token frequencies;
* ``ngram-k``  — order-k Markov chains (k = 1..3) interpolated down to the unigram.

All are fit on the train series and scored on later (val/test) series. Scores are averaged
over *candle-token targets* (ids >= :data:`N_SPECIAL`) with the distribution restricted to
candle tokens, exactly like :func:`candletok.model.train.evaluate` scores the model.

Smoothing of ``ngram-k`` (a Dirichlet prior centred on the order below, i.e. interpolation
whose weight grows with the evidence)::

    P_0(w)     = (c(w) + alpha) / (N + alpha * V)
    P_k(w | h) = (c(h, w) + beta * P_{k-1}(w | h')) / (c(h) + beta)

where ``h`` is the last k tokens, ``h'`` its last k-1, ``V`` the number of candle tokens and
``N`` the number of candle targets. An unseen context falls back to ``P_{k-1}`` exactly, and
every ``P_k`` sums to one over the candle tokens by construction.

Contexts never cross series: the history before a series' first candle is BOS, as the model
sees it. Everything is vectorized — a context of k tokens is a base-``vocab_size`` int64 key,
counts come from ``np.unique``, and look-ups are ``np.searchsorted``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from candletok.core.ids import BOS, N_SPECIAL, series_with_bos

MAX_ORDER = 3
DEFAULT_GRID: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)


def _stack(series: Sequence[np.ndarray], order: int) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate series, each preceded by ``order`` BOS tokens (at least one), and return
    the flat int64 array with a mask of the positions that are real tokens."""
    pad = max(1, order)
    flat, bounds = series_with_bos(list(series), pad)
    real = np.ones(flat.size, bool)
    real[(bounds[:, :1] + np.arange(pad)[None, :]).ravel()] = False
    return flat, real


def _context_keys(flat: np.ndarray, pos: np.ndarray, k: int, base: int) -> np.ndarray:
    """int64 key of the k tokens before each position in ``pos`` (most recent last)."""
    key = np.zeros(pos.size, np.int64)
    for j in range(k, 0, -1):  # k <= 3 iterations over whole arrays, not per token
        key = key * base + flat[pos - j]
    return key


@dataclass
class NGramTable:
    """Counts of one order: sorted unique context keys with their counts, and sorted
    unique ``context_index * V + w`` pair keys with theirs."""

    ctx_keys: np.ndarray
    ctx_counts: np.ndarray
    pair_keys: np.ndarray
    pair_counts: np.ndarray


def _lookup(sorted_keys: np.ndarray, counts: np.ndarray, query: np.ndarray) -> tuple[
    np.ndarray, np.ndarray
]:
    """Counts of ``query`` keys in a sorted key table (0 where absent) and their index."""
    if sorted_keys.size == 0:
        return np.zeros(query.size, np.int64), np.full(query.size, -1, np.int64)
    i = np.searchsorted(sorted_keys, query)
    ic = np.minimum(i, sorted_keys.size - 1)
    found = sorted_keys[ic] == query
    return np.where(found, counts[ic], 0), np.where(found, ic, -1)


@dataclass
class NGramModel:
    """Interpolated order-``order`` Markov chain over candle tokens (order 0 = unigram).

    Fit with :meth:`fit`; score with :meth:`bits_per_candle`; :meth:`prob` gives
    ``P(w | context)`` for any batch of contexts, and :meth:`distribution` full rows."""

    vocab_size: int
    order: int = 1
    alpha: float = 1.0
    beta: float = 1.0
    unigram_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    tables: list[NGramTable] = field(default_factory=list)

    @property
    def n_candles(self) -> int:
        return self.vocab_size - N_SPECIAL

    def fit(self, series: Sequence[np.ndarray]) -> NGramModel:
        """Count candle targets and their contexts in the training series."""
        if not 0 <= self.order <= MAX_ORDER:
            raise ValueError(f"order must be 0..{MAX_ORDER}")
        flat, real = _stack(series, self.order)
        pos = np.flatnonzero(real & (flat >= N_SPECIAL))
        w = flat[pos] - N_SPECIAL
        self.unigram_counts = np.bincount(w, minlength=self.n_candles).astype(np.int64)
        self.tables = []
        for k in range(1, self.order + 1):
            ctx = _context_keys(flat, pos, k, self.vocab_size)
            ckeys, cinv, ccounts = np.unique(ctx, return_inverse=True, return_counts=True)
            pkeys, pcounts = np.unique(cinv.astype(np.int64) * self.n_candles + w,
                                       return_counts=True)
            self.tables.append(NGramTable(ckeys, ccounts, pkeys, pcounts))
        return self

    def _prob_at(self, flat: np.ndarray, pos: np.ndarray, w: np.ndarray) -> np.ndarray:
        """P(candle index ``w`` | the tokens before ``pos`` in ``flat``), vectorized."""
        n = self.unigram_counts.sum()
        p = (self.unigram_counts[w] + self.alpha) / (n + self.alpha * self.n_candles)
        for k, t in enumerate(self.tables, start=1):
            ctx = _context_keys(flat, pos, k, self.vocab_size)
            c_h, ci = _lookup(t.ctx_keys, t.ctx_counts, ctx)
            c_hw, _ = _lookup(t.pair_keys, t.pair_counts, np.maximum(ci, 0) * self.n_candles + w)
            c_hw = np.where(ci >= 0, c_hw, 0)
            p = (c_hw + self.beta * p) / (c_h + self.beta)
        return p

    def prob(self, contexts: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """P(token_i | contexts_i) for token ids (candle tokens) and contexts (n, m) of
        token ids, most recent last; contexts shorter than the order are BOS-padded."""
        contexts = np.atleast_2d(np.asarray(contexts, dtype=np.int64))
        tokens = np.asarray(tokens, dtype=np.int64).ravel()
        n = contexts.shape[0]
        pad = max(1, self.order)
        flat = np.concatenate([np.full((n, pad), BOS, np.int64), contexts,
                               tokens[:, None]], axis=1)
        pos = np.full(n, flat.shape[1] - 1, np.int64)
        rows = np.arange(n, dtype=np.int64) * flat.shape[1]
        return self._prob_at(flat.ravel(), rows + pos, tokens - N_SPECIAL)

    def distribution(self, contexts: np.ndarray) -> np.ndarray:
        """(n, V_candles) next-candle distributions for each context row."""
        contexts = np.atleast_2d(np.asarray(contexts, dtype=np.int64))
        n = contexts.shape[0]
        cand = np.arange(N_SPECIAL, self.vocab_size, dtype=np.int64)
        rep = np.repeat(contexts, cand.size, axis=0)
        return self.prob(rep, np.tile(cand, n)).reshape(n, cand.size)

    def log2_probs(self, series: Sequence[np.ndarray]) -> np.ndarray:
        """log2 P of every candle target in ``series`` (contexts from the same series)."""
        flat, real = _stack(series, self.order)
        pos = np.flatnonzero(real & (flat >= N_SPECIAL))
        return np.log2(self._prob_at(flat, pos, flat[pos] - N_SPECIAL))

    def bits_per_candle(self, series: Sequence[np.ndarray]) -> float:
        """Mean -log2 P over the candle targets of ``series`` (NaN when there are none)."""
        lp = self.log2_probs(series)
        return float(-lp.mean()) if lp.size else float("nan")


def uniform_bits(vocab_size: int) -> float:
    """Bits per candle of the uniform distribution over candle tokens."""
    return float(np.log2(vocab_size - N_SPECIAL))


def count_candles(series: Sequence[np.ndarray]) -> int:
    return int(sum(int((np.asarray(s) >= N_SPECIAL).sum()) for s in series))


@dataclass
class BaselineScore:
    name: str
    params: dict[str, float]
    scores: dict[str, float]  # split name -> bits per candle


def fit_baselines(
    train: Sequence[np.ndarray],
    vocab_size: int,
    tune: Sequence[np.ndarray] | None = None,
    max_order: int = MAX_ORDER,
    grid: Sequence[float] = DEFAULT_GRID,
) -> dict[str, NGramModel | None]:
    """Fit unigram and n-gram baselines on ``train``.

    With ``tune`` (the validation series), alpha and then each order's beta are picked
    from ``grid`` to minimize bits on ``tune`` — which makes the baselines as strong as the
    model's own model selection allows, so beating them means something. ``uniform`` maps
    to None (it has no parameters)."""
    out: dict[str, NGramModel | None] = {"uniform": None}
    alpha = 1.0
    if tune is not None and count_candles(tune):
        uni = NGramModel(vocab_size, 0).fit(train)
        best = min(grid, key=lambda a: _with(uni, alpha=a).bits_per_candle(tune))
        alpha = float(best)
    out["unigram"] = NGramModel(vocab_size, 0, alpha=alpha).fit(train)
    for k in range(1, max_order + 1):
        m = NGramModel(vocab_size, k, alpha=alpha).fit(train)
        if tune is not None and count_candles(tune):
            # One concentration is shared by every level of this model's recursion; it is
            # chosen per model, so ngram-3 may smooth differently from ngram-1.
            m.beta = float(min(grid, key=lambda b: _with(m, beta=b).bits_per_candle(tune)))
        out[f"ngram-{k}"] = m
    return out


def _with(m: NGramModel, **kw: float) -> NGramModel:
    """A shallow copy of a fitted model with other smoothing parameters (counts shared)."""
    c = NGramModel(m.vocab_size, m.order, m.alpha, m.beta, m.unigram_counts, m.tables)
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def score_baselines(
    models: dict[str, NGramModel | None],
    splits: dict[str, Sequence[np.ndarray]],
    vocab_size: int,
) -> list[BaselineScore]:
    """Bits per candle of every baseline on every split (e.g. ``{"val": ..., "test": ...}``)."""
    rows: list[BaselineScore] = []
    for name, m in models.items():
        scores: dict[str, float] = {}
        for split, series in splits.items():
            if m is None:
                scores[split] = uniform_bits(vocab_size) if count_candles(series) else float("nan")
            else:
                scores[split] = m.bits_per_candle(series)
        params = {} if m is None else (
            {"alpha": m.alpha} if m.order == 0 else {"alpha": m.alpha, "beta": m.beta}
        )
        rows.append(BaselineScore(name, params, scores))
    return rows
