"""Pattern search: the index, the exact and nearest searches against brute force, the
forward statistics against hand computations, motifs against a brute-force count."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from datetime import datetime, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from candletok.core.ids import MISSING
from candletok.data.synthetic import synthetic_bars
from candletok.search import nearest as nearest_mod
from candletok.search import stats
from candletok.search.index import SearchIndex, gram_order
from candletok.search.motifs import motifs
from candletok.search.nearest import brute_force, nearest, query_costs
from candletok.search.similar import similar
from candletok.search.timerule import (
    Cut,
    TimeRule,
    chain_from_first,
    cross_correlation,
    effective_n,
    thin_chronological,
)
from candletok.tokenize.bins import BinsTokenizer

DAY = 86_400_000_000
T0 = int(datetime(2001, 1, 1, tzinfo=timezone.utc).timestamp() * 1_000_000)


@pytest.fixture(scope="module")
def tok() -> BinsTokenizer:
    """A small vocabulary (3 x 3 x 2 x 2 = 36 candle tokens) fit on synthetic bars."""
    bars = synthetic_bars(["FIT"], n_bars=800, seed=3)
    return BinsTokenizer(gap_bins=3, body_bins=3, upper_bins=2, lower_bins=2).fit(bars)


def make_index(tok: BinsTokenizer, lens: list[int], seed: int = 0, tokens: np.ndarray | None = None,
               offsets: list[int] | None = None, pool: np.ndarray | None = None,
               close: np.ndarray | None = None, scale: np.ndarray | None = None) -> SearchIndex:
    """An index of random series: series s starts ``offsets[s]`` days after T0 (default 0,
    so the calendars line up), tokens drawn from ``pool`` (default every candle token);
    ``close`` and ``scale`` replace the random ones (each series' anchor close: 99% of
    its first close)."""
    rng = np.random.default_rng(seed)
    n = int(sum(lens))
    if tokens is None:
        pool = np.arange(4, tok.vocab_size) if pool is None else pool
        tokens = rng.choice(pool, size=n)
    starts = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    offsets = offsets or [0] * len(lens)
    ts = np.concatenate([T0 + (off + np.arange(m)) * DAY for m, off in zip(lens, offsets,
                                                                             strict=True)])
    r = rng.normal(0.0, 0.01, n)
    close_r = np.concatenate([100 * np.exp(np.cumsum(r[a:b]))
                              for a, b in itertools.pairwise(starts.tolist())])
    prev = close_r * np.exp(-r)
    scale_r = 0.01 + 0.005 * rng.random(n)
    if close is not None:
        close = np.asarray(close, dtype=np.float64)
        prev = np.concatenate([[0.0], close[:-1]])
        prev[starts[:-1]] = 0.99 * close[starts[:-1]]
    else:
        close = close_r
    scale = scale_r if scale is None else np.asarray(scale, dtype=np.float64)
    return SearchIndex.from_arrays([f"S{i}" for i in range(len(lens))], starts,
                                   np.asarray(tokens, dtype=np.uint16), ts, close, prev, scale,
                                   radix=tok.vocab_size, tokenizer=tok)


# ---- the index ---------------------------------------------------------------------------
def test_suffix_lookup_equals_a_scan(tok: BinsTokenizer) -> None:
    idx = make_index(tok, [300, 7, 250, 1, 180], seed=1, pool=np.arange(4, 8))
    assert idx.order == gram_order(tok.vocab_size) and tok.vocab_size ** idx.order <= 2**32
    t = np.asarray(idx.tokens).astype(np.int64)
    rng = np.random.default_rng(0)
    for m in list(range(1, idx.order + 4)) * 3:
        e0 = int(rng.integers(0, idx.n))
        q = t[max(0, e0 - m + 1) : e0 + 1]
        if q.size < m:
            q = rng.integers(4, 8, m)
        want = [e for e in range(idx.n)
                if e - idx.starts[idx.sid[e]] >= m - 1 and np.array_equal(t[e - m + 1 : e + 1], q)]
        assert idx.suffix_positions(q).tolist() == want


def test_index_arrays_keep_series_apart(tok: BinsTokenizer) -> None:
    idx = make_index(tok, [5, 5], seed=2, tokens=np.array([4, 5, 6, 7, 8] * 2))
    # the 3-gram 7 8 | 4 would cross from series 0 into series 1: it must not exist
    assert idx.suffix_positions(np.array([8, 4])).tolist() == []
    assert idx.suffix_positions(np.array([4, 5, 6])).tolist() == [2, 7]


# ---- the time rule ------------------------------------------------------------------------
def greedy_chronological(e: list[int], sid: list[int], zone: int) -> list[int]:
    kept: list[int] = []
    for p, s in zip(e, sid, strict=True):
        if kept and sid[e.index(kept[-1])] == s and p - kept[-1] < zone:
            continue
        kept.append(p)
    return kept


def test_chronological_thinning_is_the_greedy(tok: BinsTokenizer) -> None:
    idx = make_index(tok, [200, 150, 90], seed=3)
    rng = np.random.default_rng(5)
    for zone in (1, 2, 7, 30):
        e = np.sort(rng.choice(idx.n, size=120, replace=False))
        want = greedy_chronological(e.tolist(), idx.sid[e].tolist(), zone)
        assert thin_chronological(idx, e, zone).tolist() == want
    assert chain_from_first(np.array([2, 3, 4, 4])).tolist() == [0, 2]


def test_rho_and_effective_n(tok: BinsTokenizer) -> None:
    one = make_index(tok, [100], seed=4)
    # the second series moves exactly like the first: same scaled returns, same times
    idx = make_index(tok, [100, 100], seed=4, close=np.tile(np.asarray(one.close), 2),
                     scale=np.tile(np.asarray(one.scale), 2))
    rho, mbar = cross_correlation(idx, int(idx.ts[-1]))
    assert rho == pytest.approx(1.0) and mbar == pytest.approx(2.0)
    # two matches on the same dates in two series: one independent observation
    assert effective_n(idx, np.array([10, 110]), 3, rho)[0] == pytest.approx(1.0)
    # far apart in time: two clusters, two observations whatever rho
    assert effective_n(idx, np.array([10, 150]), 3, rho) == (pytest.approx(2.0), 2)
    indep = make_index(tok, [2000, 2000], seed=5)
    assert cross_correlation(indep, int(indep.ts[-1]))[0] < 0.1


# ---- exact and nearest --------------------------------------------------------------------
def test_planted_pattern_is_found_exactly_where_planted(tok: BinsTokenizer) -> None:
    """Tokens 4..19 are noise; the pattern uses tokens 20..39, which occur nowhere else."""
    lens = [400, 400, 500, 400]  # S2 runs 100 bars past the query's time
    rng = np.random.default_rng(6)
    tokens = rng.integers(4, 20, sum(lens))
    pattern = np.array([20, 25, 31, 22, 38])
    starts = np.cumsum([0, *lens])
    planted = [starts[0] + 50, starts[0] + 200, starts[1] + 120, starts[2] + 300]
    after_T = starts[2] + 450  # S2's bar 450 lies after T (S3's last bar, day 399)
    for end in [*planted, after_T]:
        tokens[end - 4 : end + 1] = pattern
    q_end = starts[3] + 399
    tokens[q_end - 4 : q_end + 1] = pattern
    idx = make_index(tok, lens, seed=6, tokens=tokens)
    res = similar(idx, "S3", last=5, mode="exact", horizons=(1, 5), min_matches=0, top=50)
    assert sorted(res._e.tolist()) == sorted(planted)
    assert res.summary["window"] == 5 and res.summary["matches"] == len(planted)
    near = similar(idx, "S3", last=5, mode="nearest", horizons=(1, 5), top=len(planted))
    assert sorted(near._e.tolist()) == sorted(planted)
    assert near.matches["distance"].to_list() == [0.0] * len(planted)


def test_exact_backs_off_and_says_so(tok: BinsTokenizer) -> None:
    idx = make_index(tok, [600, 600], seed=7)
    res = similar(idx, "S1", last=6, min_matches=5, horizons=(1,))
    assert res.summary["backed_off"] and res.summary["window"] < 6
    assert res.summary["matches"] >= 5
    assert any("answered with the last" in w for w in res.words)
    none = similar(idx, "S1", last=6, min_matches=0, horizons=(1,))
    assert none.summary["window"] == 6 and not none.summary["backed_off"]


@pytest.mark.parametrize("path", ["auto", "cascade"])
@pytest.mark.parametrize("seed", range(6))
def test_nearest_equals_brute_force(tok: BinsTokenizer, seed: int, path: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    if path == "cascade":  # small data normally takes the full scan: force the filter
        monkeypatch.setattr(nearest_mod, "SMALL", 0)
    rng = np.random.default_rng(100 + seed)
    lens = rng.integers(50, 700, size=4).tolist()
    idx = make_index(tok, lens, seed=seed, pool=np.arange(4, 4 + int(rng.integers(6, 36))),
                     offsets=rng.integers(0, 30, size=4).tolist())
    n_win = int(rng.integers(1, 10))
    horizons = (1, int(rng.integers(2, 12)))
    q_sid = int(rng.integers(0, 4))
    q_end = int(idx.starts[q_sid] + rng.integers(n_win, lens[q_sid]))
    rule = TimeRule(int(idx.ts[q_end]), n_win, horizons, q_sid, q_end)
    cut = Cut.of(idx, rule)
    k = int(rng.integers(1, 40))
    for qfeat in (rng.normal(0.0, 1.0, (n_win, 4)),  # continuous: no exact ties
                  tok.decode_features(idx.tokens[q_end - n_win + 1 : q_end + 1])):
        C = query_costs(tok, qfeat)
        got = nearest(idx, cut, C, k)
        ref = brute_force(idx, tok, qfeat, cut, k)
        assert got.e.tolist() == ref.e.tolist()
        np.testing.assert_allclose(got.dist, ref.dist, rtol=1e-12, atol=1e-12)
        assert cut.eligible(got.e).all()


@pytest.mark.parametrize("n_win", [1, 2, 5, 12])
def test_nearest_uses_the_filter_on_larger_data(tok: BinsTokenizer, n_win: int,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nearest_mod, "SMALL", 100_000)  # these 120k windows count as large
    idx = make_index(tok, [60_000, 60_000], seed=9)
    q_end = int(idx.starts[1]) + 59_999
    rule = TimeRule(int(idx.ts[q_end]), n_win, (1, 5), 1, q_end)
    cut = Cut.of(idx, rule)
    qfeat = tok.decode_features(idx.tokens[q_end - n_win + 1 : q_end + 1])
    got = nearest(idx, cut, query_costs(tok, qfeat), 10)
    ref = brute_force(idx, tok, qfeat, cut, 10)
    if n_win <= 5:  # longer random windows are all far apart: scanning is then right
        assert not got.full_scan and got.scanned < idx.n // 3
    assert got.e.tolist() == ref.e.tolist()


# ---- statistics ---------------------------------------------------------------------------
def test_wilson_matches_published_values() -> None:
    # Newcombe (1998), Statistics in Medicine 17:857, Table I, method 3 (Wilson score)
    for k, n, lo, hi in ((81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605),
                         (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)):
        got = stats.wilson(k, n)
        assert got[0] == pytest.approx(lo, abs=6e-5) and got[1] == pytest.approx(hi, abs=6e-5)
        ci = binomtest(k, n).proportion_ci(method="wilson")
        assert got == pytest.approx((ci.low, ci.high), abs=1e-12)
    assert all(math.isnan(x) for x in stats.wilson(0, 0))


def test_forward_statistics_by_hand(tok: BinsTokenizer) -> None:
    close = np.array([100.0, 101, 99, 102, 103, 101, 104, 106])
    idx = make_index(tok, [8], seed=10, close=close, scale=np.full(8, 0.02))
    rule = TimeRule(int(idx.ts[-1]), 1, (1, 2))
    cut = Cut.of(idx, rule)
    base2 = stats.base_outcome(cut, 2, 0.0, 1.0)
    # base at h=2: every e with e + 2 <= 7: returns ln(c[e+2]/c[e]) for e = 0..5
    r = [math.log(close[e + 2] / close[e]) for e in range(6)]
    assert base2.n == 6 and base2.truncated == 1  # e = 6 has a 1-bar but no 2-bar forward
    assert base2.p_up == pytest.approx(sum(x > 0 for x in r) / 6)
    assert base2.n_eff == pytest.approx(6 / 2)  # overlapping 2-bar windows of one series
    assert base2.mean_log == pytest.approx(sum(r) / 6)
    m = stats.match_outcome(cut, np.array([0, 2, 6]), 2, 0.0, base2)
    a, b = math.log(99 / 100), math.log(103 / 99)  # e = 0 and e = 2; e = 6 is truncated
    assert (m.n, m.truncated) == (2, 1)
    assert m.p_up == 0.5 and m.mean_log == pytest.approx((a + b) / 2)
    assert m.median_log == pytest.approx((a + b) / 2)
    lo, hi = sorted([a, b])
    assert m.q_pct[0] == pytest.approx(100 * math.expm1(lo + 0.1 * (hi - lo)))
    assert m.q_pct[2] == pytest.approx(100 * math.expm1(lo + 0.9 * (hi - lo)))
    assert m.q_vol[1] == pytest.approx((a + b) / 2 / 0.02)
    assert m.n_eff == pytest.approx(2.0)  # forward windows [1, 2] and [3, 4] do not overlap
    assert (m.p_lo, m.p_hi) == pytest.approx(stats.wilson(1, 2))
    assert m.p_value == pytest.approx(binomtest(1, 2, base2.p_up).pvalue)


def test_verdicts_say_when_nothing_is_significant() -> None:
    base = stats.summarize(np.array([0.01, -0.01] * 500), np.zeros(1000), 1, "base", 0, 1000.0)
    same = stats.summarize(np.array([0.01, -0.01] * 10), np.zeros(20), 1, "matches", 0, 20.0)
    same.p_value = stats.binom_pvalue(10, 20, base.p_up)
    assert same.p_value == pytest.approx(1.0)
    assert "no raw difference" in stats.verdict(same, base)
    up = stats.summarize(np.full(30, 0.01), np.zeros(30), 1, "matches", 0, 30.0)
    up.p_value = stats.binom_pvalue(30, 30, base.p_up)
    assert up.p_value < 1e-6 and "raw difference (raw binomial p" in stats.verdict(up, base)
    assert "more often" in stats.verdict(up, base)


# ---- motifs -------------------------------------------------------------------------------
def test_motif_counts_match_a_brute_force_count(tok: BinsTokenizer) -> None:
    idx = make_index(tok, [400, 300, 3, 250], seed=11, pool=np.arange(4, 9))
    idx.tokens[[17, 301, 555]] = MISSING  # windows with a special token are not motifs
    t = np.asarray(idx.tokens).tolist()
    n = 3
    counts: Counter[tuple[int, ...]] = Counter()
    occ: dict[tuple[int, ...], list[int]] = {}
    for e in range(idx.n):
        if e - idx.starts[idx.sid[e]] >= n - 1:
            w = tuple(t[e - n + 1 : e + 1])
            if min(w) >= 4:
                counts[w] += 1
                occ.setdefault(w, []).append(e)
    want = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    res = motifs(idx, n=n, top=10, horizons=(1, 3), alphabet="tokens")
    assert [tuple(x) for x in res.motifs["tokens"].to_list()] == [w for w, _ in want]
    assert res.motifs["count"].to_list() == [c for _, c in want]
    cut = Cut.of(idx, TimeRule(int(np.asarray(idx.ts).max()), n, (1, 3)))
    for (w, _), used in zip(want, res.motifs["matches"].to_list(), strict=True):
        e = np.array(occ[w])
        e = e[cut.eligible(e)]
        assert used == len(greedy_chronological(e.tolist(), idx.sid[e].tolist(), n + 3))
    q = res.outcomes["q_value"].to_numpy()
    p = res.outcomes["p_value"].to_numpy()
    assert np.all(q[np.isfinite(p)] >= p[np.isfinite(p)] - 1e-12)  # BH never lowers a p


def test_the_looks_note_names_the_horizons_and_the_bonferroni_bar() -> None:
    assert stats.looks_note(1) is None
    note = stats.looks_note(3)
    assert note is not None and "3 horizons" in note and "0.0167" in note
    assert "--mode" in note


@settings(max_examples=40, deadline=None)
@given(lens=st.lists(st.integers(1, 9), min_size=1, max_size=8), order=st.integers(1, 5),
       seed=st.integers(0, 1000))
def test_gram_keys_match_the_per_position_definition(lens: list[int], order: int,
                                                     seed: int) -> None:
    """The in-place key build equals the definition: the ``order`` tokens ending at each
    position, newest most significant, PAD (0) before its series' start."""
    from candletok.search.index import gram_keys

    radix = 11
    tokens = np.random.default_rng(seed).integers(4, radix, sum(lens)).astype(np.uint16)
    starts = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    want = []
    for a, b in itertools.pairwise(starts.tolist()):
        for p in range(a, b):
            k = 0
            for lag in range(order):  # newest (lag 0) most significant
                k = k * radix + (int(tokens[p - lag]) if p - lag >= a else 0)
            want.append(k)
    assert gram_keys(tokens, starts, radix, order).tolist() == want
