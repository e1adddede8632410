"""CandleGPT's KV cache: the incremental forward gives the full forward's logits at every
position (calendar inputs, feature embeddings and the context limit included), stays
causal, and cached generation draws the same paths as uncached for a seed."""

from __future__ import annotations

import pytest
import torch
from _helpers import random_calendar_ids
from hypothesis import given, settings
from hypothesis import strategies as st

from candletok.core.errors import ModelError
from candletok.model.gpt import CandleGPT, GPTConfig
from candletok.tokenize.calendar import CalendarSpec

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

SPEC = CalendarSpec()
TOL = 1e-5


def model(vocab: int, context: int, n_layer: int, n_head: int, head: int, calendar: bool,
          n_features: int = 0, seed: int = 0) -> CandleGPT:
    """A random model with a final LayerNorm gain of one (a fresh one predicts only its
    bias, which would make any two forwards agree) and a random output bias."""
    torch.manual_seed(seed)
    m = CandleGPT(GPTConfig(vocab_size=vocab, context=context, n_layer=n_layer,
                            n_head=n_head, n_embd=n_head * head, dropout=0.0,
                            n_features=n_features,
                            calendar=SPEC.to_dict() if calendar else None))
    torch.nn.init.ones_(m.transformer.ln_f.weight)
    torch.nn.init.normal_(m.head_bias)
    if n_features:
        m.set_token_features(torch.randn(vocab, n_features).numpy())
    return m.eval()


random_cal = random_calendar_ids  # the shared recipe (tests/_helpers.py)


def full_logits(m: CandleGPT, idx: torch.Tensor, cal: torch.Tensor | None) -> torch.Tensor:
    """(B, T, V): at each position, the full forward's last logits over the sequence ending
    there cropped to the context (what generate and next_token_probs read)."""
    ctx, T = m.config.context, idx.shape[1]
    head = m(idx[:, :ctx], cal=None if cal is None else cal[:, :ctx])[0]  # causal: all < ctx
    rest = [m(idx[:, j - ctx + 1:j + 1],
              cal=None if cal is None else cal[:, j - ctx + 1:j + 1])[0][:, -1:]
            for j in range(ctx, T)]
    return torch.cat([head, *rest], dim=1)


@settings(max_examples=40, deadline=None)
@given(
    context=st.integers(2, 12), n_layer=st.integers(1, 3), n_head=st.integers(1, 3),
    head=st.sampled_from([4, 8]), calendar=st.booleans(), features=st.booleans(),
    batch=st.integers(1, 3), extra=st.integers(0, 10), seed=st.integers(0, 2**16),
    chunks=st.lists(st.integers(1, 6), min_size=1, max_size=8),
)
@torch.no_grad()
def test_cached_steps_equal_the_full_forward_everywhere(
        context: int, n_layer: int, n_head: int, head: int, calendar: bool, features: bool,
        batch: int, extra: int, seed: int, chunks: list[int]) -> None:
    m = model(20, context, n_layer, n_head, head, calendar, n_features=3 if features else 0,
              seed=seed)
    g = torch.Generator().manual_seed(seed)
    T = context + extra  # up to 10 tokens past the context: the sliding window
    idx = torch.randint(0, 20, (batch, T), generator=g)
    cal = random_cal((batch, T), g) if calendar else None
    want = full_logits(m, idx, cal)
    got, cache, a = [], None, 0
    sizes = (chunks * (T // max(1, sum(chunks)) + 1))
    for size in sizes:  # the sequence fed in random chunks, one token or several
        if a >= T:
            break
        b = min(T, a + size)
        logits, cache = m.forward_step(idx[:, a:b], None if cal is None else cal[:, a:b], cache)
        assert logits.shape == (batch, b - a, 20)
        got.append(logits)
        a = b
    assert cache is not None and cache.length == min(T, context)
    assert torch.allclose(torch.cat(got, dim=1), want, atol=TOL, rtol=0), \
        (torch.cat(got, dim=1) - want).abs().max()


@torch.no_grad()
def test_a_step_reads_no_future_token() -> None:
    """Causality: changing a later token leaves every earlier cached logit unchanged."""
    m = model(16, 10, 2, 2, 8, calendar=True)
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(4, 16, (2, 8), generator=g)
    cal = random_cal((2, 8), g)
    a, _ = m.forward_step(idx, cal)
    other = idx.clone()
    other[:, 5] = (other[:, 5] + 3) % 16
    b, _ = m.forward_step(other, cal)
    assert torch.equal(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


@pytest.mark.parametrize("calendar", [False, True])
@pytest.mark.parametrize("T", [1, 5, 14])  # fits; fits then crosses the context; starts past
def test_same_seed_same_paths_with_and_without_the_cache(calendar: bool, T: int) -> None:
    m = model(24, 12, 2, 2, 8, calendar)
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(4, 24, (64, T), generator=g)
    cal = random_cal((64, T + 15), g) if calendar else None
    for kw in ({}, {"temperature": 0.7, "top_k": 5}):
        a = m.generate(idx, 15, generator=torch.Generator().manual_seed(7), cal=cal, **kw)
        b = m.generate(idx, 15, generator=torch.Generator().manual_seed(7), cal=cal,
                       use_cache=False, **kw)
        assert torch.equal(a, b)
        assert len(set(a[:, T:].ravel().tolist())) > 1  # it really samples


def test_forward_step_refuses_what_the_forward_refuses() -> None:
    m = model(16, 8, 1, 1, 8, calendar=True)
    idx = torch.randint(4, 16, (2, 3))
    with pytest.raises(ModelError, match="calendar"):
        m.forward_step(idx)
    _, cache = m.forward_step(idx, random_cal((2, 3), torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="rows"):
        m.forward_step(idx[:1], random_cal((1, 3), torch.Generator()), cache)
    with pytest.raises(ValueError, match="at least one token"):
        m.forward_step(idx[:, :0], None, cache)


def test_kept_feature_embeddings_follow_the_weights() -> None:
    """forward_step keeps the (V, C) feature projection between steps; changing the
    projection or the table in place (a training step, a load) must be seen at once, so
    the step still equals the full forward."""
    m = model(20, 8, 1, 2, 4, False, n_features=3)
    idx = torch.randint(3, 20, (1, 5), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for change in (lambda: m.feat_proj.weight.mul_(3.0),  # type: ignore[union-attr]
                       lambda: m.token_features.add_(0.5)):
            step, _ = m.forward_step(idx)
            change()
            again, _ = m.forward_step(idx)
            full, _ = m(idx)
            assert not torch.allclose(step, again)
            assert torch.allclose(again, full, atol=TOL)
