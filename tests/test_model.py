"""CandleGPT: shapes, causality, overfitting a repeating sequence, and sampling only
candle tokens."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F  # noqa: N812

from candletok.core.ids import N_SPECIAL
from candletok.model.gpt import CandleGPT, GPTConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


def tiny(vocab: int = 12, context: int = 16, dropout: float = 0.0,
         trained_like: bool = True) -> CandleGPT:
    """A tiny model; ``trained_like`` gives the final LayerNorm a gain of one, as a trained
    model has some, so its logits depend on the input (a fresh one predicts the bias)."""
    torch.manual_seed(0)
    m = CandleGPT(GPTConfig(vocab_size=vocab, context=context, n_layer=2, n_head=2,
                            n_embd=32, dropout=dropout))
    if trained_like:
        torch.nn.init.ones_(m.transformer.ln_f.weight)
    return m


def test_a_fresh_model_predicts_its_output_bias() -> None:
    m = tiny(trained_like=False).eval()
    m.init_output_bias(torch.arange(12, dtype=torch.float64) + 1.0)
    logits, _ = m(torch.randint(0, 12, (2, 9)))
    assert torch.allclose(logits, m.head_bias.expand_as(logits))
    # and the gradient still reaches the body: one step makes the input matter
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    x = torch.randint(4, 12, (4, 9))
    _, loss = m(x, torch.roll(x, -1, dims=1))
    assert loss is not None
    loss.backward()
    opt.step()
    opt.zero_grad()
    _, loss = m(x, torch.roll(x, -1, dims=1))
    assert loss is not None
    loss.backward()
    opt.step()
    a, b = m(x[:1])[0], m(x[1:2])[0]
    assert not torch.allclose(a, b)


def test_forward_shapes_and_ignored_targets() -> None:
    m = tiny()
    idx = torch.randint(0, 12, (3, 10))
    tgt = torch.randint(4, 12, (3, 10))
    tgt[:, -4:] = -1
    logits, loss = m(idx, tgt)
    assert logits.shape == (3, 10, 12)
    want = F.cross_entropy(logits[:, :-4].reshape(-1, 12), tgt[:, :-4].reshape(-1))
    assert loss is not None and torch.allclose(loss, want)
    assert m(idx)[1] is None


def test_attention_is_causal() -> None:
    m = tiny().eval()
    a = torch.randint(4, 12, (1, 12))
    b = a.clone()
    b[0, 8:] = (b[0, 8:] - 4 + 1) % 8 + 4  # change only the future
    la, lb = m(a)[0], m(b)[0]
    assert torch.allclose(la[:, :8], lb[:, :8], atol=1e-6)
    assert not torch.allclose(la[:, 8:], lb[:, 8:])


def test_rejects_too_long_input() -> None:
    with pytest.raises(ValueError, match="context"):
        tiny(context=8)(torch.zeros(1, 9, dtype=torch.long))


def test_weights_are_tied() -> None:
    m = tiny()
    assert m.lm_head.weight.data_ptr() == m.transformer.wte.weight.data_ptr()


def test_overfits_a_repeating_sequence() -> None:
    m = tiny(context=16)
    pattern = torch.tensor([4, 7, 5, 11, 9, 6])
    seq = pattern.repeat(20)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    first = last = float("nan")
    for step in range(150):
        s = torch.randint(0, seq.numel() - 17, (16,), generator=g)
        win = torch.stack([seq[i:i + 17] for i in s.tolist()])
        _, loss = m(win[:, :-1], win[:, 1:])
        assert loss is not None
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = loss.item() if step == 0 else first
        last = loss.item()
    assert first > 2.0  # starts near ln(12)
    assert last < 0.05
    # and the overfit model continues the pattern exactly with greedy-ish sampling
    out = m.generate(seq[:8][None], 12, top_k=1)
    assert out[0, 8:].tolist() == seq[8:20].tolist()


class FavoursSpecials(CandleGPT):
    """A model whose raw logits put almost all mass on the special tokens."""

    def _head(self, x, fe):  # type: ignore[no-untyped-def]
        # the one head of the full and the cached forward, so both paths favour specials
        logits = super()._head(x, fe).clone()
        logits[..., :N_SPECIAL] += 50.0
        return logits


@pytest.mark.parametrize("use_cache", [True, False])
def test_generate_only_samples_candle_tokens(use_cache: bool) -> None:
    torch.manual_seed(1)
    m = FavoursSpecials(GPTConfig(vocab_size=10, context=8, n_layer=1, n_head=1, n_embd=16))
    assert m(torch.tensor([[1, 4]]))[0][0, -1].argmax() < N_SPECIAL  # it does favour them
    start = torch.tensor([[1, 4, 5]])
    g = torch.Generator().manual_seed(0)
    out = m.generate(start.repeat(32, 1), 20, temperature=1.5, generator=g,
                     use_cache=use_cache)  # crosses context
    assert out.shape == (32, 23)
    assert torch.equal(out[:, :3], start.repeat(32, 1))
    assert (out[:, 3:] >= N_SPECIAL).all()
    assert len(set(out[:, 3:].ravel().tolist())) > 1  # it really samples


def test_generate_is_reproducible_with_a_generator() -> None:
    m = tiny()
    start = torch.tensor([[1, 4]])
    a = m.generate(start, 10, generator=torch.Generator().manual_seed(3))
    b = m.generate(start, 10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_next_token_probs_sum_to_one_over_candles() -> None:
    m = FavoursSpecials(GPTConfig(vocab_size=10, context=8, n_layer=1, n_head=1, n_embd=16))
    p = m.next_token_probs(torch.randint(4, 10, (5, 20)))
    assert p.shape == (5, 10)
    assert torch.all(p[:, :N_SPECIAL] == 0)
    assert torch.allclose(p.sum(-1), torch.ones(5))
    assert m.training  # the call leaves the mode as it found it
