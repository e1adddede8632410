"""Every score against a hand computation on a tiny case, and the bootstrap's behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from candletok.core.stats import wilson
from candletok.evaluation.scores import (
    block_bootstrap_indices,
    brier,
    diebold_mariano,
    ece,
    hac_variance,
    mean_estimate,
    per_date,
    pinball,
    qlike,
    reliability,
    skill_estimate,
)


def test_brier_reliability_and_ece_by_hand() -> None:
    p = np.array([0.1, 0.2, 0.8, 0.9])
    y = np.array([0, 1, 1, 1])
    assert brier(p, y).tolist() == pytest.approx([0.01, 0.64, 0.04, 0.01])
    table = reliability(p, y, bins=2)  # bins [0, .5) and [.5, 1]
    assert table == [(0.0, pytest.approx(0.15), 0.5, 2), (0.5, pytest.approx(0.85), 1.0, 2)]
    # ECE = (2 * |0.15 - 0.5| + 2 * |0.85 - 1.0|) / 4
    assert ece(p, y, bins=2) == pytest.approx((2 * 0.35 + 2 * 0.15) / 4)


def test_qlike_and_pinball_by_hand() -> None:
    assert qlike(np.array([1.0]), np.array([1.0]))[0] == pytest.approx(0.0)
    assert qlike(np.array([2.0]), np.array([1.0]))[0] == pytest.approx(0.5 - math.log(0.5) - 1)
    # quantile 0.9: under-prediction by 2 costs 0.9 * 2, over-prediction by 2 costs 0.1 * 2
    assert pinball(np.array([0.0, 4.0]), np.array([2.0, 2.0]), 0.9).tolist() == \
        pytest.approx([1.8, 0.2])


def test_wilson_matches_the_textbook_formula() -> None:
    lo, hi = wilson(7, 10)
    z = 1.959964
    ph, n = 0.7, 10
    mid = (ph + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(ph * (1 - ph) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (lo, hi) == pytest.approx((mid - half, mid + half))
    assert wilson(0, 0) != wilson(0, 0)  # NaNs: no data, no interval


def test_hac_variance_by_hand() -> None:
    d = np.array([1.0, -1.0, 2.0, 0.0])
    e = d - d.mean()
    g0 = (e @ e) / 4
    g1 = (e[1:] @ e[:-1]) / 4
    assert hac_variance(d, 0) == pytest.approx(g0)
    assert hac_variance(d, 1) == pytest.approx(g0 + 2 * 0.5 * g1)


def test_diebold_mariano_by_hand_and_direction() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(1.0, 1.0, 400)
    b = a + 0.5 + rng.normal(0, 0.2, 400)  # b is worse everywhere
    t = diebold_mariano(a, b, horizon=1)
    d = a - b
    dm = d.mean() / math.sqrt(hac_variance(d, 0) / d.size)
    hln = math.sqrt((400 + 1 - 2 + 0) / 400)
    assert t.stat == pytest.approx(dm * hln)
    assert t.p_value == pytest.approx(2 * stats.t.sf(abs(dm * hln), 399))
    assert t.mean_diff < 0 and t.p_value < 1e-6
    same = diebold_mariano(a, a + rng.normal(0, 1, 400), horizon=5)
    assert same.p_value > 0.01


def test_block_bootstrap_keeps_blocks_and_covers_a_known_mean() -> None:
    idx = block_bootstrap_indices(10, n_boot=50, block=3, seed=1)
    assert idx.shape == (50, 10) and idx.min() >= 0 and idx.max() <= 9
    steps = np.diff(idx, axis=1) % 10
    assert (steps[:, :2] == 1).all()  # inside the first block, consecutive (wrapped)
    rng = np.random.default_rng(3)
    est = mean_estimate(rng.normal(0.3, 1.0, 2000), n_boot=400)
    assert est.lo < 0.3 < est.hi and est.excludes_zero


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 60), st.integers(1, 8), st.integers(0, 10_000))
def test_bootstrap_indices_are_valid(n: int, block: int, seed: int) -> None:
    idx = block_bootstrap_indices(n, n_boot=7, block=block, seed=seed)
    assert idx.shape == (7, n) and ((idx >= 0) & (idx < n)).all()


def test_skill_is_positive_only_when_the_loss_is_lower() -> None:
    rng = np.random.default_rng(5)
    ref = rng.uniform(0.2, 0.3, 500)
    better = skill_estimate(ref * 0.9, ref, n_boot=300)
    assert better.value == pytest.approx(0.1) and better.lo > 0
    noise = skill_estimate(ref * rng.uniform(0.8, 1.2, 500), ref, n_boot=300)
    assert noise.lo < 0 < noise.hi


def test_per_date_sums_rows_of_one_date() -> None:
    sums, counts = per_date(np.array([3, 1, 3, 2]), np.array([1.0, 2.0, 3.0, 4.0]))
    assert sums.tolist() == [2.0, 4.0, 4.0] and counts.tolist() == [1, 1, 2]


def test_ratio_and_ece_estimates_by_hand() -> None:
    from candletok.evaluation.scores import ece_estimate, ratio_estimate

    num = np.array([1.0, 2.0, 3.0, 6.0])
    den = np.array([1.0, 1.0, 2.0, 2.0])
    e = ratio_estimate(num, den, n_boot=200, seed=1)
    assert e.value == pytest.approx(12 / 6)  # sum over sum, not a mean of ratios
    assert e.lo <= e.value <= e.hi
    p = np.array([0.1, 0.2, 0.8, 0.9, 0.85])
    y = np.array([0, 1, 1, 1, 0])
    dates = np.array([1, 1, 2, 2, 3])
    est = ece_estimate(p, y, dates, bins=2, n_boot=200)
    assert est.value == pytest.approx(ece(p, y, bins=2))
    # bins [0, .5): mean p .15, freq .5; [.5, 1]: mean p .85, freq 2/3
    assert est.value == pytest.approx((2 * 0.35 + 3 * abs(0.85 - 2 / 3)) / 5)
    assert est.lo <= est.value <= est.hi


# ---- distribution scores ------------------------------------------------------------------
def test_crps_from_quantiles_meets_the_normal_closed_form() -> None:
    import scoringrules as sr

    from candletok.evaluation.forecasters import CRPS_LEVELS
    from candletok.evaluation.scores import crps_from_quantiles

    y = np.array([0.3, -1.2, 2.0, 0.0, 4.0])
    mu, sd = 0.1, 1.5
    q = np.repeat((mu + sd * stats.norm.ppf(CRPS_LEVELS))[None, :], y.size, axis=0)
    z = (y - mu) / sd
    closed = sd * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / math.sqrt(math.pi))
    got = crps_from_quantiles(q, y, CRPS_LEVELS)
    assert got == pytest.approx(closed, rel=2e-3)  # the mid-point rule on 100 levels
    assert closed == pytest.approx(sr.crps_normal(y, mu, sd), rel=1e-9)
    # a point mass at c: the CRPS is the absolute error
    c = np.full((y.size, CRPS_LEVELS.size), 0.5)
    assert crps_from_quantiles(c, y, CRPS_LEVELS) == pytest.approx(np.abs(y - 0.5))
    # a wider normal for an outcome at its median is worse: the score is proper, not MAE
    wide = (mu + 3 * sd * stats.norm.ppf(CRPS_LEVELS))[None, :]
    at_mu = np.array([mu])
    assert (crps_from_quantiles(wide, at_mu, CRPS_LEVELS)[0]
            > crps_from_quantiles(q[:1], at_mu, CRPS_LEVELS)[0])


def test_christoffersen_tests_by_hand() -> None:
    from candletok.evaluation.scores import christoffersen

    miss = np.array([0, 0, 1, 1, 0, 0, 0, 1, 1, 0], dtype=bool)
    t = christoffersen(miss, 0.8)
    ln = math.log
    # unconditional: 4 misses of 10 against the nominal 20%
    lr_uc = -2 * (6 * ln(0.8) + 4 * ln(0.2) - 6 * ln(0.6) - 4 * ln(0.4))
    # transitions 00,01,11,10,00,00,01,11,10: n00 = 3, n01 = 2, n10 = 2, n11 = 2
    p01, p11, p2 = 2 / 5, 2 / 4, 4 / 9
    lr_ind = -2 * (5 * ln(1 - p2) + 4 * ln(p2) - 3 * ln(1 - p01) - 2 * ln(p01)
                   - 2 * ln(1 - p11) - 2 * ln(p11))
    assert (t.n, t.misses) == (10, 4)
    assert t.lr_uc == pytest.approx(lr_uc) and t.lr_ind == pytest.approx(lr_ind)
    assert t.lr_cc == pytest.approx(lr_uc + lr_ind)
    assert t.p_uc == pytest.approx(stats.chi2.sf(lr_uc, 1))
    assert t.p_ind == pytest.approx(stats.chi2.sf(lr_ind, 1))
    assert t.p_cc == pytest.approx(stats.chi2.sf(lr_uc + lr_ind, 2))
    # a second series starting at position 5: the transition 4 -> 5 (0 -> 0) is not counted
    brk = np.zeros(10, dtype=bool)
    brk[5] = True
    t2 = christoffersen(miss, 0.8, brk)
    # left: n00 = n01 = n10 = n11 = 2, every transition rate 1/2: no evidence of clustering
    assert t2.lr_uc == pytest.approx(lr_uc) and t2.lr_ind == pytest.approx(0.0, abs=1e-12)
    # misses in a cluster: independence fails though the miss rate is right
    clustered = np.zeros(400, dtype=bool)
    clustered[100:180] = True
    tc = christoffersen(clustered, 0.8)
    assert tc.p_uc > 0.5 and tc.p_ind < 1e-6 and tc.p_cc < 1e-6
    assert christoffersen(np.zeros(0, dtype=bool), 0.8).n == 0


def test_mcs_drops_the_worse_forecaster_and_treats_twins_alike() -> None:
    from candletok.evaluation.scores import mcs_members

    rng = np.random.default_rng(0)
    good = rng.gamma(2.0, 0.5, 400)
    L = np.column_stack([good, good * rng.uniform(0.95, 1.05, 400), good, good + 0.4])
    inc, pv = mcs_members(L, 0.10, reps=300, seed=1)
    assert inc.tolist() == [True, True, True, False]
    assert pv[3] < 0.10 <= pv[0] and pv[0] == pv[2]  # identical columns: one verdict
    assert mcs_members(np.column_stack([good, good]), 0.1)[0].tolist() == [True, True]
