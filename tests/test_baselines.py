"""Baselines: hand-computed values on a tiny corpus, a naive reference implementation,
and normalization for any small corpus."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from candletok.core.ids import BOS, MISSING, N_SPECIAL
from candletok.model.baselines import NGramModel, fit_baselines, score_baselines, uniform_bits

V = 6  # 4 specials + candle tokens 4 and 5
TRAIN = [np.array([4, 5, 4]), np.array([5, 5])]
TEST = [np.array([5, 4])]


def test_uniform_is_log2_of_candle_tokens() -> None:
    assert uniform_bits(V) == 1.0
    assert uniform_bits(4 + 10) == pytest.approx(math.log2(10))


def test_unigram_matches_hand_computation() -> None:
    m = NGramModel(V, order=0, alpha=1.0).fit(TRAIN)
    # c(4) = 2, c(5) = 3, N = 5: P(4) = 3/7, P(5) = 4/7
    assert m.prob(np.zeros((2, 0)), np.array([4, 5])) == pytest.approx([3 / 7, 4 / 7])
    want = -(math.log2(4 / 7) + math.log2(3 / 7)) / 2
    assert m.bits_per_candle(TEST) == pytest.approx(want)


def test_bigram_matches_hand_computation() -> None:
    m = NGramModel(V, order=1, alpha=1.0, beta=1.0).fit(TRAIN)
    # contexts: BOS->4, 4->5, 5->4 | BOS->5, 5->5
    # P(4|BOS) = (1 + 3/7) / (2 + 1); P(5|4) = (1 + 4/7) / 2; P(4|4) = (0 + 3/7) / 2
    got = m.prob(np.array([[BOS], [4], [4]]), np.array([4, 5, 4]))
    assert got == pytest.approx([10 / 21, 11 / 14, 3 / 14])
    # test series 5, 4: P(5|BOS) = 11/21, P(4|5) = (1 + 3/7) / 3 = 10/21
    want = -(math.log2(11 / 21) + math.log2(10 / 21)) / 2
    assert m.bits_per_candle(TEST) == pytest.approx(want)


def test_trigram_matches_hand_computation() -> None:
    m = NGramModel(V, order=2, alpha=1.0, beta=1.0).fit(TRAIN)
    # (BOS,BOS) seen twice, once followed by 5: P(5|BOS,BOS) = (1 + 11/21) / 3 = 32/63
    # (BOS,5) seen once, followed by 5 only:   P(4|BOS,5) = (0 + P1(4|5)) / 2 = 5/21
    want = -(math.log2(32 / 63) + math.log2(5 / 21)) / 2
    assert m.bits_per_candle(TEST) == pytest.approx(want)


def test_contexts_never_cross_series() -> None:
    m = NGramModel(V, order=1, alpha=1.0, beta=1.0).fit([np.array([4]), np.array([5])])
    # Had the series been joined, 4 -> 5 would have been counted and P(5|4) = 3/4.
    assert m.prob(np.array([[4]]), np.array([5]))[0] == pytest.approx(0.5)


def test_missing_is_context_but_never_a_target() -> None:
    m = NGramModel(V, order=1).fit([np.array([4, MISSING, 5])])
    assert m.unigram_counts.tolist() == [1, 1]
    d = m.distribution(np.array([[MISSING]]))
    assert d[0, 1] > d[0, 0]  # MISSING was followed by 5


def _reference_prob(train: list[list[int]], order: int, alpha: float, beta: float,
                    ctx: list[int], w: int) -> float:
    """Plain-Python version of the smoothing formula, written independently."""
    n_c = V_REF - N_SPECIAL
    uni: Counter[int] = Counter()
    cnt: list[Counter[tuple[int, ...]]] = [Counter() for _ in range(order + 1)]
    for s in train:
        hist = [BOS] * max(1, order) + list(s)
        for i in range(max(1, order), len(hist)):
            t = hist[i]
            if t < N_SPECIAL:
                continue
            uni[t] += 1
            for k in range(1, order + 1):
                h = tuple(hist[i - k:i])
                cnt[k][h] += 1
                cnt[k][(*h, t)] += 1
    n = sum(uni.values())
    p = (uni[w] + alpha) / (n + alpha * n_c)
    full = [BOS] * max(1, order) + list(ctx)
    for k in range(1, order + 1):
        h = tuple(full[len(full) - k:])
        p = (cnt[k][(*h, w)] + beta * p) / (cnt[k][h] + beta)
    return p


V_REF = 9
tokens = st.integers(min_value=N_SPECIAL, max_value=V_REF - 1) | st.just(MISSING)
corpora = st.lists(st.lists(tokens, min_size=1, max_size=12), min_size=1, max_size=4)


@settings(max_examples=40, deadline=None)
@given(
    train=corpora,
    ctx=st.lists(tokens, min_size=0, max_size=4),
    order=st.integers(0, 3),
    alpha=st.sampled_from([0.1, 1.0, 5.0]),
    beta=st.sampled_from([0.3, 1.0, 10.0]),
)
def test_distribution_normalizes_and_matches_reference(
    train: list[list[int]], ctx: list[int], order: int, alpha: float, beta: float
) -> None:
    m = NGramModel(V_REF, order, alpha, beta).fit([np.array(s) for s in train])
    d = m.distribution(np.array([ctx], dtype=np.int64).reshape(1, -1))
    assert d.shape == (1, V_REF - N_SPECIAL)
    assert d.sum() == pytest.approx(1.0)
    assert (d > 0).all()
    ref = [_reference_prob(train, order, alpha, beta, ctx, w) for w in range(N_SPECIAL, V_REF)]
    assert d[0] == pytest.approx(ref)


@settings(max_examples=25, deadline=None)
@given(train=corpora, test=corpora, order=st.integers(0, 3))
def test_bits_per_candle_is_mean_of_per_target_probs(
    train: list[list[int]], test: list[list[int]], order: int
) -> None:
    m = NGramModel(V_REF, order, 0.5, 2.0).fit([np.array(s) for s in train])
    logs = []
    for s in test:
        for i, t in enumerate(s):
            if t >= N_SPECIAL:
                logs.append(math.log2(_reference_prob(train, order, 0.5, 2.0, s[:i], t)))
    got = m.bits_per_candle([np.array(s) for s in test])
    if logs:
        assert got == pytest.approx(-sum(logs) / len(logs))
    else:
        assert math.isnan(got)


def test_tuning_never_does_worse_on_the_tuning_split() -> None:
    rng = np.random.default_rng(0)
    # A sticky chain: the next token repeats the last one 70% of the time.
    def chain(n: int) -> np.ndarray:
        x = np.empty(n, np.int64)
        x[0] = 4
        stay = rng.random(n) < 0.7
        new = rng.integers(4, 12, n)
        for i in range(1, n):
            x[i] = x[i - 1] if stay[i] else new[i]
        return x

    train, val = [chain(2000), chain(500)], [chain(800)]
    models = fit_baselines(train, 12, tune=val)
    rows = {r.name: r for r in score_baselines(models, {"val": val}, 12)}
    assert set(rows) == {"uniform", "unigram", "ngram-1", "ngram-2", "ngram-3"}
    plain = NGramModel(12, 1, alpha=1.0, beta=1.0).fit(train).bits_per_candle(val)
    assert rows["ngram-1"].scores["val"] <= plain + 1e-12
    # The chain is order-1 Markov, so ngram-1 must beat the unigram by a wide margin.
    assert rows["ngram-1"].scores["val"] < rows["unigram"].scores["val"] - 0.5
    assert rows["uniform"].scores["val"] == pytest.approx(3.0)
