"""The point-in-time replay: skill where it was planted, none in a random walk, no look at
the future, calibration fit on val only, and each new statistic against a hand computation."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from candletok.core.errors import CandletokError
from candletok.data.synthetic import synthetic_bars
from candletok.evaluation.analogues import AnalogueAnswer, AnalogueForecaster
from candletok.evaluation.calibrate import (
    CalibrationMap,
    choose_map,
    date_blocks,
    fit_map,
)
from candletok.evaluation.econometric import GARCHt, HARRange
from candletok.evaluation.evaluate import (
    Forecast,
    evaluate_forecasts,
    range_constants,
)
from candletok.evaluation.forecasters import (
    BaseRate,
    EWMAVol,
    HistVol,
    NGram,
    TokenTable,
    hist_vol,
    pick_subsample,
    shrink_to_base,
    token_forecast,
)
from candletok.evaluation.gptcast import GPTForecaster
from candletok.evaluation.history import History, history_from_bars
from candletok.model.gpt import CandleGPT, GPTConfig
from candletok.tokenize.bins import BinsTokenizer

VAL_FROM, TEST_FROM = "2002-06-01", "2003-02-01"


def planted_bars(n: int, symbols: tuple[str, ...], seed: int, flip: float,
                 vol: np.ndarray | None = None) -> pl.DataFrame:
    """Daily bars whose next close moves against the last one with probability ``flip``
    (0.5: a random walk), volatility constant (or times ``vol`` per bar), wicks random."""
    rng = np.random.default_rng(seed)
    frames = []
    t0 = datetime(2000, 1, 3, tzinfo=timezone.utc)
    for s in symbols:
        sign = np.empty(n)
        sign[0] = 1.0
        flips = rng.random(n) < flip
        for i in range(1, n):  # the planted pattern is sequential by definition
            sign[i] = -sign[i - 1] if flips[i] else sign[i - 1]
        r = sign * np.abs(rng.normal(0.0, 0.01, n)) * (1.0 if vol is None else vol)
        close = 100 * np.exp(np.cumsum(r))
        open_ = np.concatenate([[100.0], close[:-1]])
        w = np.abs(rng.normal(0, 0.003, (2, n))) * (1.0 if vol is None else vol)
        high = np.maximum(open_, close) * np.exp(w[0])
        low = np.minimum(open_, close) * np.exp(-w[1])
        frames.append(pl.DataFrame({
            "symbol": [s] * n,
            "ts": [t0 + timedelta(days=i) for i in range(n)],
            "open": open_, "high": high, "low": low, "close": close,
            "volume": np.full(n, 1e6),
        }).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC"))))
    return pl.concat(frames)


def make_history(bars: pl.DataFrame, **bins: int) -> History:
    train = bars.filter(pl.col("ts") < datetime(2002, 6, 1, tzinfo=timezone.utc))
    kw = {"gap_bins": 1, "body_bins": 4, "upper_bins": 2, "lower_bins": 2} | bins
    tok = BinsTokenizer(**kw).fit(train)
    return history_from_bars(bars, tok, VAL_FROM, TEST_FROM)


def tiny_gpt(hist: History, seed: int = 0) -> CandleGPT:
    torch.manual_seed(seed)
    m = CandleGPT(GPTConfig(vocab_size=hist.tok.vocab_size, context=16, n_layer=1, n_head=2,
                            n_embd=16, dropout=0.0))
    torch.nn.init.ones_(m.transformer.ln_f.weight)  # as trained: the input matters
    m.fingerprint = hist.tok.fingerprint
    m.meta = {}
    return m.eval()


@pytest.fixture(scope="module")
def planted() -> History:
    return make_history(planted_bars(1500, ("AAA", "BBB", "CCC"), seed=1, flip=0.8))


@pytest.fixture(scope="module")
def walk() -> History:
    return make_history(planted_bars(1500, ("AAA", "BBB", "CCC"), seed=2, flip=0.5))


# ---- skill where there is some, none where there is none ---------------------------------
def test_a_planted_pattern_gives_skill_with_an_interval_above_zero(planted: History) -> None:
    rep = evaluate_forecasts(planted, horizons=(1, 2), n_boot=300)
    rows = {(r.forecaster, r.horizon): r for r in rep.direction}
    ng = next(r for (name, h), r in rows.items() if h == 1 and name != "base rate")
    assert ng.skill.lo > 0.1 and ng.skill.value > 0.2, ng
    assert ng.verdict == "beats the base rate"
    assert ng.dm.p_value < 0.01 and ng.dm.mean_diff < 0
    base = rows[("base rate", 1)]
    assert base.skill.value == 0.0 and base.verdict.startswith("reference")
    # the h = 2 direction is the product of two flips: the n-gram does not forecast it
    assert all(r.horizon == 1 for r in rep.direction if r.forecaster == ng.forecaster)
    assert rep.dropped[1] == 3 and rep.dropped[2] == 6  # one / two per symbol at the end
    json.dumps(rep.to_dict())  # the whole report is JSON
    # bits per candle: -log2 of the n-gram's probability of the candle that came
    ngram = NGram()
    ngram.fit(planted)
    rows, _ = planted.origins("test", 1)
    ctx = planted.contexts(rows, max(1, ngram.model.order))
    want = -np.log2(ngram.model.prob(ctx, planted.token[rows + 1]))
    assert ngram.bits(planted, rows) == pytest.approx(want)
    b = next(r for r in rep.bits if r.forecaster == ng.forecaster)
    assert b.bits.value == pytest.approx(want.mean())


def test_a_random_walk_gives_an_interval_that_contains_zero(walk: History) -> None:
    rep = evaluate_forecasts(walk, horizons=(1,), n_boot=300)
    for r in rep.direction:
        if r.forecaster != "base rate":
            assert r.skill.lo < 0 < r.skill.hi, r
            assert r.verdict == "no skill: interval includes zero"
    for q in rep.quantiles:
        # a parametric GARCH-t or HAR scale is fit on train, whose volatility is a shade
        # below test's here (0.99% vs 1.01% a day): within three points, not within noise
        if q.forecaster in ("GARCH-t", "HAR-RV"):
            assert abs(q.coverage.value - 0.8) < 0.03, q
        else:
            assert q.coverage.lo < 0.8 < q.coverage.hi, q
        assert abs(q.coverage90.value - 0.9) < 0.03, q


def test_range_scores_rank_a_forecaster_that_knows_the_volatility() -> None:
    """Volatility that switches regime every 60 bars: the EWMA and the 20-bar historical
    volatility both follow it, and each is scored against the other on the same candles."""
    regime = np.where((np.arange(1500) // 60) % 2 == 0, 0.5, 2.0)
    rep = evaluate_forecasts(make_history(planted_bars(1500, ("AAA", "BBB"), seed=3, flip=0.5,
                                                       vol=regime)), horizons=(1,), n_boot=300)
    rows = {r.forecaster: r for r in rep.range}
    refs = {"EWMA", "HistVol20", "GARCH-t", "HAR-RV"}
    assert set(rows) >= refs and set(rep.references["range"]) == refs
    for r in rows.values():
        assert r.qlike.lo <= r.qlike.value <= r.qlike.hi and r.mse.value > 0
        assert r.reference == (r.forecaster in refs)
        assert set(r.skill) == refs - {r.forecaster}  # every declared reference but itself
    e, h = rows["EWMA"].skill["HistVol20"], rows["HistVol20"].skill["EWMA"]
    assert (e.value > 0) == (h.value < 0)  # mirror images: one's gain is the other's loss
    assert rows["EWMA"].dm["HistVol20"].mean_diff == pytest.approx(
        -rows["HistVol20"].dm["EWMA"].mean_diff)
    # a constant range forecast (the n-gram's unigram has no context) loses to both
    ng = [r for name, r in rows.items() if name not in refs]
    assert all(r.skill["EWMA"].hi < 0.05 for r in ng)
    # the GARCH and the HAR both see the regime switch: each beats a constant range
    for name in ("GARCH-t", "HAR-RV"):
        assert all(r.skill[name].value < 0 for r in ng), name


def exact_query(last: int) -> object:
    """A brute-force stand-in for the pattern search: every window of any series whose
    last ``last`` tokens equal the origin's and whose forward window closed by the
    origin's time. It reads only rows up to that time."""
    def query(hist: History, row: int, horizons: tuple[int, ...]) -> dict[int, AnalogueAnswer]:
        ctx = hist.contexts(np.array([row]), last)[0]
        e = np.arange(hist.n)
        out = {}
        for h in horizons:
            ok = (e + h < hist.ends[hist.series]) & (hist.pos() >= last - 1)
            j = np.minimum(e + h, hist.n - 1)
            ok &= hist.ts[j] <= hist.ts[row]  # the outcome was known at the origin
            for k in range(last):  # the same tokens, oldest first
                ok &= hist.token[np.maximum(e - (last - 1 - k), 0)] == ctx[k]
            m = e[ok]
            if m.size:
                ret = np.log(hist.close[m + h] / hist.close[m]) / hist.next_scale[m]
                out[h] = AnalogueAnswer(float((ret > 0).mean()), float(m.size),
                                        tuple(np.quantile(ret, (0.1, 0.5, 0.9))))
        return out

    return query


def test_an_analogue_forecaster_plugs_in(planted: History) -> None:
    exact = AnalogueForecaster("exact-1", exact_query(1), horizons=(1,), subsample=250)
    rep = evaluate_forecasts(planted, horizons=(1,), forecasters=[exact], n_boot=300)
    row = next(r for r in rep.direction if r.forecaster == "exact-1")
    assert row.n == 250 and row.skill.lo > 0.05 and row.verdict == "beats the base rate"
    assert any(q.forecaster == "exact-1" for q in rep.quantiles)
    fc = exact.forecast(planted, planted.origins("test", 1)[0], 1)
    assert fc is not None and (fc.n_eff > 100).all()
    # shrunk toward the base rate: never further from it than the raw match frequency
    base = rep.direction[0].reliability[0][1]
    assert (np.abs(fc.p_up - base) < 0.5).all()


# ---- causality ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def causal_setup() -> tuple[pl.DataFrame, History, list]:
    bars = synthetic_bars(["AAA", "BBB"], n_bars=1600, seed=5)
    hist = make_history(bars, gap_bins=3, body_bins=3)
    fcs = [BaseRate(), EWMAVol(), HistVol(), GARCHt(), HARRange(), NGram(),
           GPTForecaster(tiny_gpt(hist), samples=4, subsample=12, sample_context=8,
                         max_horizon=3, seed=1),
           AnalogueForecaster("exact-2", exact_query(2), horizons=(1, 3), subsample=10)]
    for f in fcs:
        f.fit(hist)
    return bars, hist, fcs


@settings(max_examples=5, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(900, 1580), factor=st.floats(0.5, 2.0), seed=st.integers(0, 99))
def test_changing_bars_after_t_changes_no_forecast_at_t(causal_setup: tuple, cut: int,
                                                        factor: float, seed: int) -> None:
    bars, hist, fcs = causal_setup
    T = bars.filter(pl.col("symbol") == "AAA")["ts"][cut]
    rng = np.random.default_rng(seed)
    later = (bars["ts"] > T).to_numpy()
    k = np.where(later, factor * np.exp(rng.normal(0, 0.05, bars.height)), 1.0)
    wick = np.where(later, np.exp(np.abs(rng.normal(0, 0.02, bars.height))), 1.0)
    changed = bars.with_columns(
        (pl.col("open") * k).alias("open"), (pl.col("close") * k).alias("close"),
        (pl.col("high") * k * wick).alias("high"), (pl.col("low") * k / wick).alias("low"))
    hist2 = history_from_bars(changed, hist.tok, VAL_FROM, TEST_FROM)
    assert hist2.n == hist.n and not np.array_equal(hist2.close, hist.close)
    for h in (1, 3):
        rows, _ = hist.origins("test", h)
        assert np.array_equal(rows, hist2.origins("test", h)[0])
        early = hist.ts[rows] <= T.timestamp() * 1e6
        for f in fcs:
            a, b = f.forecast(hist, rows, h), f.forecast(hist2, rows, h)
            if a is None:
                assert b is None
                continue
            ka, kb = early[np.searchsorted(rows, a.rows)], early[np.searchsorted(rows, b.rows)]
            assert np.array_equal(a.rows[ka], b.rows[kb]), f.name
            for fld in ("p_up", "range_mean", "range_sq", "quantiles", "n_eff", "qgrid"):
                x, y = getattr(a, fld), getattr(b, fld)
                if x is not None:
                    np.testing.assert_array_equal(x[ka], y[kb], err_msg=f"{f.name}.{fld}")


@settings(max_examples=15, deadline=None)
@given(cut=st.integers(min_value=900, max_value=1400), size=st.integers(1, 60),
       seed=st.integers(0, 3))
def test_a_subsample_ignores_bars_elsewhere(cut: int, size: int, seed: int) -> None:
    """Dropping every bar after a time in one symbol does not change which (symbol, time)
    origins of the others a seeded subsample picks (keys come from symbol and time)."""
    bars = planted_bars(1500, ("AAA", "BBB", "CCC"), seed=1, flip=0.8)
    t_cut = bars["ts"][cut]
    short = bars.filter((pl.col("symbol") != "AAA") | (pl.col("ts") < t_cut))
    picked = []
    for b in (bars, short):
        h = make_history(b)
        rows, _ = h.origins("val", 1)
        rows = rows[h.series[rows] > 0]  # BBB and CCC only
        sub = pick_subsample(h, rows, size, seed)
        picked.append({(h.symbols[h.series[r]], int(h.ts[r])) for r in sub})
    assert picked[0] == picked[1]


def test_calibration_is_fit_on_val_only(planted: History) -> None:
    """Scrambling every test outcome leaves the maps as they were; scrambling val moves them."""
    def maps(hist: History) -> dict:
        rep = evaluate_forecasts(hist, horizons=(1,), n_boot=50)
        return rep.calibration["forecasters"]

    def scrambled(split_code: int) -> History:
        h = History(**{k: getattr(planted, k) for k in planted.__dataclass_fields__})
        m = planted.split == split_code
        rng = np.random.default_rng(0)
        k = np.exp(rng.normal(0, 0.02, planted.n))
        h.close = np.where(m, planted.close * k, planted.close)
        h.high = np.maximum(h.high, h.close)
        h.low = np.minimum(h.low, h.close)
        return h

    base = maps(planted)
    assert maps(scrambled(2)) == base
    assert maps(scrambled(1)) != base


# ---- statistics against hand computations ----------------------------------------------
def test_calibration_maps_by_hand() -> None:
    p = np.array([0.2, 0.4, 0.6, 0.8])
    y = np.array([0.0, 1.0, 0.0, 1.0])
    base = 0.5
    # shrink: lam = sum((y - b)(p - b)) / sum((p - b)^2) = (0.15 - 0.05 - 0.05 + 0.15) / 0.2
    m = fit_map("shrink", p, y, base)
    assert m.params["lam"] == pytest.approx(1.0)
    m = fit_map("shrink", p, 1 - y, base)  # anti-correlated: clipped at 0, the base rate
    assert m.params["lam"] == 0.0 and np.allclose(m.apply(p), 0.5)
    # isotonic: pooled adjacent violators on (0, 1, 0, 1) -> (0, .5, .5, 1), level kept
    m = fit_map("isotonic", p, y, base)
    assert m.params["y"] == pytest.approx([0.0, 0.5, 0.5, 1.0])
    assert m.apply(np.array([0.3]))[0] == pytest.approx(0.25)  # interpolated
    m = fit_map("isotonic", p, np.ones(4), 0.5)  # val all up: the level stays at 0.5
    assert np.mean(m.params["y"]) == pytest.approx(0.5)
    # platt about the base rate: the base rate maps to itself; the slope is the MLE
    m = fit_map("platt", p, y, base)
    assert m.apply(np.array([base]))[0] == pytest.approx(base)
    z = np.log(p / (1 - p))
    a = m.params["a"]
    q = 1 / (1 + np.exp(-a * z))
    assert float((q - y) @ z) == pytest.approx(0.0, abs=1e-5)  # score equation at the MLE
    assert CalibrationMap.from_dict(m.to_dict()).apply(p) == pytest.approx(m.apply(p))
    assert fit_map("identity", p, y, base).apply(p) == pytest.approx(p)


def test_map_choice_is_cross_validated_in_time_blocks() -> None:
    dates = np.repeat(np.arange(10), 3)
    assert date_blocks(dates, 5).tolist() == np.repeat([0, 0, 1, 1, 2, 2, 3, 3, 4, 4], 3).tolist()
    rng = np.random.default_rng(0)
    p = rng.random(300)
    y = (rng.random(300) < 0.5).astype(float)  # outcomes unrelated to p: shrink wins
    ch = choose_map(p, y, np.arange(300), 0.5)
    assert ch.cv_brier["identity"] > ch.cv_brier["shrink"]
    # no map beats the base rate by a standard error over the folds: the base rate it is
    assert np.allclose(ch.map.apply(p), 0.5) and np.allclose(ch.oof, 0.5)
    assert ch.oof.shape == p.shape
    y = (rng.random(300) < p).astype(float)  # calibrated already: identity is kept
    ch = choose_map(p, y, np.arange(300), 0.5)
    assert ch.map.kind in ("identity", "platt", "shrink") and not np.allclose(ch.oof, 0.5)


def test_range_constants_by_hand() -> None:
    fc = Forecast(np.arange(3), range_mean=np.array([1.0, 2.0, 4.0]),
                  range_sq=np.array([1.0, 4.0, 16.0]))
    r = np.array([2.0, 2.0, 4.0])
    a, b = range_constants(fc, r)
    assert a == pytest.approx((2 + 4 + 16) / (1 + 4 + 16))  # sum(r m) / sum(m^2)
    assert b == pytest.approx(np.mean([4 / 1, 4 / 4, 16 / 16]))  # mean(r^2 / v)


def test_token_forecast_by_hand() -> None:
    table = TokenTable(up=np.array([0.9, 0.1, 0.5]), rng=np.array([2.0, 1.0, 3.0]),
                       rng_sq=np.array([5.0, 1.0, 9.0]), grid=np.array([-1.0, 0.0, 1.0]),
                       cdf=np.array([[0, 0, 1.0], [1.0, 1, 1], [0, 1.0, 1]]))
    dist = np.array([[0.5, 0.3, 0.2]])
    fc = token_forecast(np.array([7]), dist, table, np.array([0.01]))
    assert fc.p_up[0] == pytest.approx(0.5 * 0.9 + 0.3 * 0.1 + 0.2 * 0.5)
    assert fc.range_mean[0] == pytest.approx(0.01 * (0.5 * 2 + 0.3 * 1 + 0.2 * 3))
    assert fc.range_sq[0] == pytest.approx(1e-4 * (0.5 * 5 + 0.3 * 1 + 0.2 * 9))
    # mixture cdf at (-1, 0, 1): (.3, .5, 1); q10 is below the grid's first step (-1),
    # q50 = 0, q90 = 0 + (.9 - .5) / (1 - .5) = 0.8, times the scale
    # the 5/95% levels follow the old three: q5 below the grid, q95 = (.95 - .5) / .5
    assert fc.quantiles[0].tolist() == pytest.approx([-0.01, 0.0, 0.008, -0.01, 0.009])


def test_token_table_is_learned_on_train(planted: History) -> None:
    t = TokenTable.build(planted)
    tr = planted.split == 0
    k = planted.token[tr] - 4
    r = planted.log_range[tr] / planted.scale[tr]
    z = planted.log_return[tr] / planted.scale[tr]
    j = int(np.bincount(k).argmax())
    F = planted.tok.decode_features(np.array([j + 4]))[0]
    rep = F[2] + F[3] + abs(F[1])
    assert t.rng[j] == pytest.approx((r[k == j].sum() + 2 * rep) / ((k == j).sum() + 2))
    g = t.grid.size // 2
    rep_ret = F[0] + F[1]
    want = ((z[k == j] <= t.grid[g]).sum() + 2 * (rep_ret <= t.grid[g])) / ((k == j).sum() + 2)
    assert t.cdf[j, g] == pytest.approx(want)
    assert np.allclose(t.cdf[:, -1], 1.0) and (np.diff(t.cdf, axis=1) >= 0).all()


def test_hist_vol_and_shrinkage_by_hand(planted: History) -> None:
    v = hist_vol(planted)
    r = planted.log_return
    i = planted.starts[1] + 30
    assert v[i] == pytest.approx(np.std(r[i - 19:i + 1], ddof=1))
    assert math.isnan(v[planted.starts[1] + 2])  # fewer than 5 returns: none
    assert shrink_to_base(np.array([1.0]), np.array([20.0]), 0.5, prior=20)[0] == 0.75


# ---- the whole evaluation with a model -----------------------------------------------------
def test_evaluate_with_a_model_file(tmp_path, planted: History) -> None:
    from candletok.evaluation.calibrate import load_calibration

    m = tiny_gpt(planted)
    path = tmp_path / "m.pt"
    torch.save({"x": 1}, path)  # stands in for the checkpoint the map is bound to
    rep = evaluate_forecasts(planted, m, horizons=(1, 3), n_boot=100, samples=4,
                             subsample=10)
    gpt = [r for r in rep.direction if r.forecaster == "CandleGPT"]
    assert [r.horizon for r in gpt] == [1, 3]
    assert gpt[1].n == 10 and gpt[0].n == rep.origins[1]
    assert any(b.forecaster == "CandleGPT" and b.diff is not None for b in rep.bits)
    assert {r.forecaster for r in rep.range} >= {"EWMA", "HistVol20", "CandleGPT"}
    assert any("sampled paths" in n for n in rep.notes)
    assert rep.calibration_file is None  # a model object, not a file: nothing written
    from candletok.evaluation.calibrate import save_calibration

    save_calibration(path, rep.to_dict()["calibration"])
    cal = load_calibration(path)
    assert cal is not None and "CandleGPT" in cal["forecasters"]
    assert cal["model_forecaster"] == "CandleGPT"  # declared by its role, not its name
    assert rep.calibration is not None
    no_model = evaluate_forecasts(planted, horizons=(1,), n_boot=20)
    assert no_model.calibration["model_forecaster"] is None
    torch.save({"x": 2}, path)  # retrained: the old map no longer applies
    assert load_calibration(path) is None


def test_bad_arguments_are_one_sentence(planted: History) -> None:
    with pytest.raises(CandletokError, match=r"val.*test"):
        evaluate_forecasts(planted, split="train")
    with pytest.raises(CandletokError, match="positive"):
        evaluate_forecasts(planted, horizons=(0,))


def test_predict_applies_the_saved_map_and_reports_the_val_skill() -> None:
    from candletok.evaluation.calibrate import calibrate_probability

    cal = {"forecasters": {"CandleGPT": {"p_up": {"1": {
        "map": {"kind": "shrink", "base": 0.5, "lam": 0.25}, "base_rate": 0.5,
        "val_skill": {"value": 0.004, "lo": -0.01, "hi": 0.02}}}}}}
    cp = calibrate_probability(0.7, cal)
    assert cp.value == pytest.approx(0.5 + 0.25 * 0.2) and cp.raw == 0.7
    assert cp.calibrated and not cp.shows_skill  # the interval includes zero
    assert cp.skill_text() == "val skill +0.004 [-0.010, +0.020]"
    cal["forecasters"]["CandleGPT"]["p_up"]["1"]["val_skill"]["lo"] = 0.001
    assert calibrate_probability(0.7, cal).shows_skill
    none = calibrate_probability(0.7, None)
    # no calibration: no calibrated number (issue 20, item 8), the raw one and a reason
    assert none.value is None and none.raw == 0.7 and none.reason
    assert not none.calibrated and not none.shows_skill
    assert calibrate_probability(0.7, cal, horizon=5).kind == "none"


def test_the_answer_reads_the_forecaster_the_calibration_names() -> None:
    """The calibration file says which entry is the checkpoint's own forecaster; the
    answer's calibrated P(up) and caveat read that entry, whatever it is called."""
    from candletok.evaluation.calibrate import (
        calibrate_probability,
        direction_caveat,
        model_forecaster,
        saved_fit,
    )

    fit = {"map": {"kind": "identity"}, "base_rate": 0.5, "val_skill": None}
    cal = {"model_forecaster": "MyModel", "forecasters": {"MyModel": {"p_up": {"1": fit}}}}
    assert model_forecaster(cal) == "MyModel" and saved_fit(cal) == fit
    assert calibrate_probability(0.61, cal).calibrated
    assert model_forecaster({}) == "CandleGPT"  # files from before the name was recorded
    assert saved_fit({"forecasters": {"MyModel": {"p_up": {"1": fit}}}}) is None
    assert "never measured" in direction_caveat(cal, 20)
