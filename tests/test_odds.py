"""Stop and target odds: the closed form for a driftless Brownian motion against Monte
Carlo, sampled OHLC paths converging to it, and the invariants of both."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import TINY_TRAIN_FLAGS
from hypothesis import given, settings
from hypothesis import strategies as st

from candletok.core.errors import ModelError
from candletok.core.stats import wilson
from candletok.evaluation.odds import (
    RANGE_PER_SIGMA,
    path_odds,
    random_walk_odds,
    sigma_from_scale,
)
from candletok.predict.odds import odds_rows, parse_ks


def _mc_first_passage(a: float, b: float, sigma: float, h: int, S: int, m: int,
                      seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo of the continuous Brownian motion: ``m`` Gaussian steps per bar, and
    between steps the Brownian bridge's exact chance of crossing each barrier
    (``exp(-2 (U - x0)(U - x1) / (sigma^2 dt))``), so a touch between steps is not missed.
    Returns P(up first), P(down first)."""
    rng = np.random.default_rng(seed)
    dt = 1.0 / m
    x = np.zeros(S)
    state = np.zeros(S, dtype=np.int8)  # 0 alive, 1 up, 2 down
    for _ in range(h * m):
        alive = state == 0
        x1 = x + sigma * np.sqrt(dt) * rng.standard_normal(S)
        dist_u0, dist_u1 = np.maximum(a - x, 0), np.maximum(a - x1, 0)
        dist_d0, dist_d1 = np.maximum(x + b, 0), np.maximum(x1 + b, 0)
        pu = np.exp(-2 * dist_u0 * dist_u1 / (sigma ** 2 * dt))
        pd = np.exp(-2 * dist_d0 * dist_d1 / (sigma ** 2 * dt))
        cu, cd = rng.random(S) < pu, rng.random(S) < pd
        both = cu & cd
        first_up = rng.random(S) < 0.5  # both in one tiny step: negligible, either way
        state[alive & cu & ~(both & ~first_up)] = 1
        state[alive & cd & ~(both & first_up) & (state == 0)] = 2
        x = x1
    return (state == 1).mean(), (state == 2).mean()


@pytest.mark.parametrize(("a", "b", "h"), [(1.0, 1.0, 1), (2.0, 1.0, 5), (1.5, 2.5, 10)])
def test_closed_form_matches_monte_carlo_within_its_standard_error(a: float, b: float,
                                                                   h: int) -> None:
    S = 20_000
    up, down = _mc_first_passage(a, b, 1.0, h, S, m=16, seed=int(10 * a + h))
    cf = random_walk_odds(a, b, 1.0, h)
    for mc, p in ((up, float(cf.p_up)), (down, float(cf.p_down))):
        se = np.sqrt(p * (1 - p) / S)
        assert abs(mc - p) < 4 * se + 1e-3, (mc, p, se)


def test_closed_form_limits_and_the_neither_series() -> None:
    # no time limit: the gambler's ruin b / (a + b)
    o = random_walk_odds(np.array([1.0, 2.0, 0.5]), np.array([1.0, 1.0, 3.0]), 1.0, 1e4)
    assert o.p_up == pytest.approx(np.array([0.5, 1 / 3, 3 / 3.5]), abs=1e-9)
    assert o.p_neither == pytest.approx(0.0, abs=1e-9)
    # a short horizon with far barriers: almost surely neither
    assert float(random_walk_odds(8.0, 8.0, 1.0, 1).p_neither) > 1 - 1e-12
    # neither = survival = sum over odd n of 4 / (n pi) sin(n pi x) exp(-lam_n T)
    a, b, T = 1.3, 0.7, 2.0
    L, x = a + b, b / (a + b)
    n = np.arange(1, 4000, 2)
    surv = (4 / (n * np.pi) * np.sin(n * np.pi * x)
            * np.exp(-(n * np.pi / L) ** 2 / 2 * T)).sum()
    assert float(random_walk_odds(a, b, 1.0, T).p_neither) == pytest.approx(surv, abs=1e-9)
    # one barrier far away: the reflection principle 2 (1 - Phi(a / sqrt(T)))
    from scipy.stats import norm

    assert float(random_walk_odds(1.0, 50.0, 1.0, 4.0).p_up) == pytest.approx(
        2 * norm.sf(1.0 / 2.0), abs=1e-9)
    with pytest.raises(ModelError, match="positive"):
        random_walk_odds(0.0, 1.0, 1.0, 5)


@settings(max_examples=60, deadline=None)
@given(st.floats(0.05, 5), st.floats(0.05, 5), st.floats(0.05, 3), st.floats(0.01, 200))
def test_closed_form_is_a_distribution_and_symmetric(a: float, b: float, s: float,
                                                     h: float) -> None:
    o = random_walk_odds(a, b, s, h)
    ps = np.array([o.p_up, o.p_down, o.p_neither], dtype=float)
    assert np.all((ps >= 0) & (ps <= 1)) and ps.sum() == pytest.approx(1.0, abs=1e-9)
    sym = random_walk_odds(a, a, s, h)
    assert float(sym.p_up) == pytest.approx(float(sym.p_down), abs=1e-9)
    # mirrored barriers swap the answers
    mir = random_walk_odds(b, a, s, h)
    assert float(mir.p_up) == pytest.approx(float(o.p_down), abs=1e-9)
    # a longer horizon never lowers either touch probability
    later = random_walk_odds(a, b, s, 2 * h)
    assert float(later.p_up) >= float(o.p_up) - 1e-9
    assert float(later.p_down) >= float(o.p_down) - 1e-9


def _gaussian_ohlc(S: int, n: int, m: int, sigma: float, seed: int) -> dict[str, np.ndarray]:
    """OHLC bars of a driftless Gaussian random walk in log price with ``m`` steps a bar
    (the high and low are the steps' extremes), from price 1."""
    rng = np.random.default_rng(seed)
    steps = sigma / np.sqrt(m) * rng.standard_normal((S, n * m))
    x = np.concatenate([np.zeros((S, 1)), np.cumsum(steps, axis=1)], axis=1)
    op = x[:, :-1:m][:, :n]
    cl = x[:, m::m]
    inner = x[:, 1:].reshape(S, n, m)
    hi = np.maximum(inner.max(-1), op)
    lo = np.minimum(inner.min(-1), op)
    return {k: np.exp(v) for k, v in (("open", op), ("high", hi), ("low", lo), ("close", cl))}


def test_sampled_path_odds_converge_to_the_closed_form() -> None:
    """Many Gaussian random-walk OHLC paths: their counted odds approach the closed form as
    the bars' intrabar steps get finer (the high and low then see the continuous path),
    and match it within the paths' own interval once the discrete-monitoring bias is taken
    out (Broadie-Glasserman-Kou: a barrier checked every dt acts as one 0.5826 sigma
    sqrt(dt) farther away)."""
    S, n, sigma, k = 20_000, 6, 0.01, np.array([1.0, 2.0])
    scale = sigma * RANGE_PER_SIGMA
    exact = random_walk_odds(k * scale, k * scale, sigma, n)
    errs = []
    for m in (4, 64):
        paths = _gaussian_ohlc(S, n, m, sigma, seed=m)
        po = path_odds(paths, 1.0, k * scale, k * scale)
        errs.append(np.abs(po.p_up - exact.p_up).max() + np.abs(po.p_down - exact.p_down).max())
        shift = 0.5826 * sigma * np.sqrt(1.0 / m)
        bgk = random_walk_odds(k * scale + shift, k * scale + shift, sigma, n)
        for name in ("p_up", "p_down", "p_neither"):
            p, q = getattr(po, name), getattr(bgk, name)
            se = np.sqrt(q * (1 - q) / S)
            assert np.all(np.abs(p - q) < 4 * se + 2 * po.ambiguous + 2e-3), (m, name, p, q)
        assert np.all(po.ambiguous < 0.01)
    assert errs[1] < errs[0]  # finer bars: closer to the continuous-time answer


def test_path_odds_decide_touches_by_high_and_low_and_split_ambiguous_bars() -> None:
    e = 100.0
    up, dn = np.log(110 / e), np.log(e / 90)
    # path 0: target in bar 1; path 1: stop in bar 0; path 2: neither;
    # path 3: both in bar 0, closes up (O-L-H-C: stop first); path 4: both, closes down;
    # path 5: opens above the target (a gap): target first
    o = np.array([[100, 101], [100, 95], [100, 100], [100, 100], [100, 100], [111, 100]])
    h = np.array([[105, 112], [101, 96], [105, 105], [115, 100], [115, 100], [111, 100]])
    lo = np.array([[99, 100], [89, 94], [95, 95], [85, 100], [85, 100], [89, 100]])
    c = np.array([[101, 111], [95, 95], [100, 100], [112, 100], [88, 100], [105, 100]])
    paths = {"open": o, "high": h, "low": lo, "close": c}
    po = path_odds(paths, e, up, dn)
    assert float(po.p_up) == pytest.approx(3 / 6) and float(po.p_down) == pytest.approx(2 / 6)
    assert float(po.p_neither) == pytest.approx(1 / 6)
    assert float(po.ambiguous) == pytest.approx(2 / 6)
    half = path_odds(paths, e, up, dn, ambiguous="half")
    assert float(half.p_up) == pytest.approx(3 / 6) and float(half.ambiguous) == 2 / 6
    first = path_odds(paths, e, up, dn, horizon=1)  # path 0's target is in bar 1: not yet
    assert float(first.p_neither) == pytest.approx(2 / 6)
    with pytest.raises(ModelError, match="horizon"):
        path_odds(paths, e, up, dn, horizon=3)
    with pytest.raises(ModelError, match="ambiguous"):
        path_odds(paths, e, up, dn, ambiguous="coin")


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 8), st.floats(0.2, 3), st.integers(0, 10_000))
def test_path_odds_are_a_distribution_with_intervals(S: int, n: int, k: float,
                                                     seed: int) -> None:
    paths = _gaussian_ohlc(S, n, 4, 0.01, seed)
    po = path_odds(paths, 1.0, k * 0.016, k * 0.016)
    ps = np.array([po.p_up, po.p_down, po.p_neither], dtype=float)
    assert np.all((ps >= 0) & (ps <= 1)) and ps.sum() == pytest.approx(1.0)
    for name, (lo, hi) in po.intervals.items():
        assert lo <= getattr(po, name) + 1e-12 and getattr(po, name) <= hi + 1e-12


def test_symmetric_random_walk_paths_give_equal_target_and_stop_odds() -> None:
    paths = _gaussian_ohlc(40_000, 5, 8, 0.01, seed=7)
    po = path_odds(paths, 1.0, 0.016, 0.016)
    se = np.sqrt(0.25 / 40_000) * 2
    assert abs(float(po.p_up) - float(po.p_down)) < 4 * se


def test_odds_rows_and_the_inputs() -> None:
    paths = _gaussian_ohlc(2000, 10, 8, 0.01, seed=3)
    rows = odds_rows(paths, 1.0, 0.01 * RANGE_PER_SIGMA, [1, 2], 10)
    d = rows[0].to_dict()
    assert d["k"] == 1.0 and d["paths"] == 2000 and d["horizon"] == 10
    assert d["target_first"]["lo"] <= d["target_first"]["p"] <= d["target_first"]["hi"]
    tot = sum(d[x]["random_walk"] for x in ("target_first", "stop_first", "neither"))
    assert tot == pytest.approx(1.0)
    assert rows[1].walk.p_neither > rows[0].walk.p_neither  # farther barriers: more neither
    assert float(sigma_from_scale(RANGE_PER_SIGMA)) == pytest.approx(1.0)
    assert parse_ks("1, 2.5") == [1.0, 2.5]
    for bad in ("", "a", "0,1", "-1"):
        with pytest.raises(ModelError, match="--odds"):
            parse_ks(bad)
    lo, hi = wilson(np.array([0.0, 10.0]), 10)
    assert lo[0] == 0.0 and hi[0] > 0 and hi[1] == pytest.approx(1.0) and lo[1] < 1


def test_predict_odds_prints_the_paths_odds_beside_the_random_walk(tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from candletok.cli import cmd_model  # noqa: F401
    from candletok.cli.app import app
    from candletok.dataset.build import build_dataset
    from candletok.predict.odds import NOT_SCORED

    ds = tmp_path / "ds"
    build_dataset(["AAA"], ds, scheme="bins", source="synthetic",
                  tokenizer_kwargs=dict(gap_bins=3, body_bins=3, upper_bins=2, lower_bins=2))
    run = CliRunner().invoke
    m = str(tmp_path / "m.pt")
    r = run(app, ["train", str(ds), *TINY_TRAIN_FLAGS, "--out", m])
    assert r.exit_code == 0, r.output
    base = ["predict", "AAA", "--model", m, "--source", "synthetic"]
    r = run(app, [*base, "--odds", "1,2", "--horizon", "5", "--samples", "64"])
    assert r.exit_code == 0, r.output
    assert "stop and target odds within 5 bars (64 sampled paths)" in r.output
    assert "P(target +k first)" in r.output and "walk" in r.output
    assert "no calibration beside the model scores this k" in " ".join(r.output.split())
    r = run(app, [*base, "--odds", "1,2", "--horizon", "5", "--samples", "64", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["odds_note"].startswith(NOT_SCORED)
    rows = doc["predictions"][0]["odds"]
    assert [x["k"] for x in rows] == [1.0, 2.0] and rows[0]["paths"] == 64
    for x in rows:
        ps = [x[o]["p"] for o in ("target_first", "stop_first", "neither")]
        assert sum(ps) == pytest.approx(1.0)
        walk = [x[o]["random_walk"] for o in ("target_first", "stop_first", "neither")]
        assert sum(walk) == pytest.approx(1.0) and walk[0] == pytest.approx(walk[1])
    r = run(app, [*base, "--odds", "one"])
    assert r.exit_code != 0 and "--odds takes positive" in str(r.exception or r.output)
    r = run(app, [*base, "--odds", "1", "--calendar-exchange", "NOPE"])
    assert r.exit_code != 0 and "Unknown exchange calendar" in str(r.exception or r.output)
    r = run(app, [*base, "--odds", "1", "--horizon", "3", "--samples", "8",
                  "--calendar-exchange", "none", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["predictions"][0]["odds"][0]["paths"] == 8


def test_the_desk_benchmark_runs_and_reports_every_figure() -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import desk_speed

    out = desk_speed.main(["--paths", "200", "--horizon", "3", "--bars", "5"])
    assert {"closed_form_s", "monte_carlo_s", "path_odds_s", "mc_error", "daily_exchange_s",
            "daily_grid_s", "hourly_exchange_s", "hourly_grid_s"} <= set(out)
    assert all(np.isfinite(v) and v >= 0 for v in out.values())


def test_forward_odds_read_each_rows_own_series_and_scale() -> None:
    """The analogues' forward paths: real bars after each row, barriers in the row's own
    volatility unit, never past the end of its series."""
    from types import SimpleNamespace

    from candletok.evaluation.odds import forward_odds

    # series 0: flat then +3% a bar; series 1: -3% a bar; scale 1% everywhere
    c0 = np.array([100, 100, 103, 106.09, 109.27])
    c1 = np.array([100, 97, 94.09, 91.27])
    close = np.concatenate([c0, c1])
    prev = np.concatenate([[100], c0[:-1], [100], c1[:-1]])
    hist = SimpleNamespace(close=close, prev_close=prev, high=np.maximum(close, prev) * 1.001,
                           low=np.minimum(close, prev) * 0.999, next_scale=np.full(9, 0.01),
                           series=np.repeat([0, 1], [5, 4]), ends=np.array([5, 9]))
    o = forward_odds(hist, np.array([1, 5, 3, 7]), [2.0], 2)  # rows 3 and 7: < 2 bars left
    assert o.n_paths == 2
    assert float(o.p_up[0]) == 0.5 and float(o.p_down[0]) == 0.5  # row 1 up, row 5 down
    wide = forward_odds(hist, np.array([1, 5]), [10.0], 2)  # +-10% never reached in 2 bars
    assert float(wide.p_neither[0]) == 1.0
    # the unit scales the barriers: with a 10x scale, 2 units is 20%: neither
    hist.next_scale = np.full(9, 0.1)
    assert float(forward_odds(hist, np.array([1, 5]), [2.0], 2).p_neither[0]) == 1.0
    with pytest.raises(ModelError, match="bars after it"):
        forward_odds(hist, np.array([4, 8]), [1.0], 1)
