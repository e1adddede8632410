"""The econometric references of the evaluate harness: GARCH(1,1)-t against arch's own
filter, HAR against a process with known coefficients, and references found by declared
role rather than by name."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest

from candletok.data.synthetic import synthetic_bars
from candletok.evaluation.econometric import (
    HAR_LAGS,
    PCT,
    GARCHt,
    HARRange,
    fit_har,
    har_design,
    parkinson_log_var,
)
from candletok.evaluation.evaluate import evaluate_forecasts
from candletok.evaluation.forecasters import EWMAVol, HistVol, roles_of
from candletok.evaluation.history import History, history_from_bars
from candletok.tokenize.bins import BinsTokenizer

VAL_FROM, TEST_FROM = "2002-06-01", "2003-02-01"


def history(bars: pl.DataFrame) -> History:
    train = bars.filter(pl.col("ts") < datetime(2002, 6, 1, tzinfo=timezone.utc))
    tok = BinsTokenizer(gap_bins=1, body_bins=3, upper_bins=2, lower_bins=2).fit(train)
    return history_from_bars(bars, tok, VAL_FROM, TEST_FROM)


@pytest.fixture(scope="module")
def hist() -> History:
    return history(synthetic_bars(["AAA", "BBB"], n_bars=1600, seed=5))


def test_garch_variance_is_archs_own_on_the_same_parameters(hist: History) -> None:
    from arch import arch_model

    g = GARCHt()
    g.fit(hist)
    assert set(g.fits) == {"AAA", "BBB"}
    v = g.variance(hist)
    for k, sym in enumerate(hist.symbols):
        f = g.fits[sym]
        a, b = int(hist.starts[k]), int(hist.ends[k])
        r = PCT * hist.log_return[a:b]
        ntr = int((hist.split[a:b] == 0).sum())
        params = [f.mu, f.omega, f.alpha, f.beta, f.nu]
        # on the train rows: arch's conditional variance of r[t + 1] is our forecast at t
        tr = arch_model(r[:ntr], mean="Constant", vol="GARCH", p=1, q=1, dist="t",
                        rescale=False).fix(params)
        np.testing.assert_allclose(v[a:a + ntr - 1] * PCT ** 2,
                                   tr.conditional_volatility[1:] ** 2, rtol=1e-10)
        one = tr.forecast(horizon=1, reindex=False).variance.to_numpy()[0, 0]
        assert v[a + ntr - 1] * PCT ** 2 == pytest.approx(one, rel=1e-10)
        # at a test origin, arch's 1- and 3-step forecasts over the whole series (its start
        # differs only in a backcast that has long decayed)
        full = arch_model(r, mean="Constant", vol="GARCH", p=1, q=1, dist="t",
                          rescale=False).fix(params)
        t = b - a - 30
        fc = full.forecast(horizon=3, start=t, reindex=False).variance.to_numpy()[0]
        assert v[a + t] * PCT ** 2 == pytest.approx(fc[0], rel=1e-8)
        assert g.horizon_variance(hist, 3)[a + t] * PCT ** 2 == pytest.approx(fc.sum(), rel=1e-8)
    rows, _ = hist.origins("test", 1)
    out = g.forecast(hist, rows, 1)
    assert out is not None and out.range_sq == pytest.approx(v[out.rows])
    # the t quantiles: the median is the mean, the 10/90% symmetric about it
    q = out.quantiles
    assert q[:, 1] == pytest.approx(g.params(hist, "mu")[out.rows] / PCT)
    assert q[:, 0] + q[:, 2] == pytest.approx(2 * q[:, 1])
    assert (q[:, 3] < q[:, 0]).all() and (q[:, 4] > q[:, 2]).all()  # 5/95% outside 10/90%


def simulate_har(beta: np.ndarray, sd: float, n: int, seed: int) -> np.ndarray:
    """A HAR process x[t + 1] = b0 + b1 x[t] + b5 mean5(x)[t] + b22 mean22(x)[t] + e."""
    rng = np.random.default_rng(seed)
    x = np.full(n, beta[0] / (1 - beta[1:].sum()))
    for t in range(22, n - 1):  # a recursion by definition: the simulation, not the fit
        m = [x[t], x[t - 4:t + 1].mean(), x[t - 21:t + 1].mean()]
        x[t + 1] = beta[0] + beta[1:] @ m + sd * rng.normal()
    return x


def test_har_recovers_known_coefficients() -> None:
    beta = np.array([-0.9, 0.35, 0.3, 0.2])  # persistence 0.85: a long-memory volatility
    xs = [simulate_har(beta, 0.5, 6000, seed) for seed in (1, 2)]
    x = np.concatenate(xs)
    series = np.repeat([0, 1], 6000)
    train = np.ones(x.size, dtype=bool)
    train[5000:6000] = train[11000:] = False  # the last 1000 of each are not train
    coef, s2 = fit_har(x, series, train)
    assert coef == pytest.approx(beta, abs=0.06)
    assert s2 == pytest.approx(0.25, rel=0.05)
    # the fit never reads a non-train target: changing them leaves it unchanged
    y = x.copy()
    y[~train] += 5.0
    assert fit_har(y, series, train)[0] == pytest.approx(coef)
    # the regressors are the causal 1/5/22-row means, per series
    X = har_design(x, series)
    t = 6000 + 100
    assert X[t].tolist() == pytest.approx([1.0, x[t], x[t - 4:t + 1].mean(),
                                           x[t - 21:t + 1].mean()])
    assert np.isnan(X[6000 + 20, 3]) and np.isfinite(X[6000 + 21, 3])  # no window across


def test_har_forecaster_by_hand(hist: History) -> None:
    h = HARRange()
    h.fit(hist)
    rows, _ = hist.origins("test", 1)
    fc = h.forecast(hist, rows, 1)
    assert fc is not None and fc.rows.size == rows.size
    x = parkinson_log_var(hist)
    t = int(rows[50])
    m = [x[t - w + 1:t + 1].mean() for w in HAR_LAGS]
    f = h.coef @ np.r_[1.0, m]
    assert fc.range_sq[50] == pytest.approx(np.exp(f + h.resid_var / 2))
    assert fc.range_mean[50] == pytest.approx(np.exp(f / 2 + h.resid_var / 8))
    assert h.forecast(hist, rows, 5) is None  # one-step only


def test_references_are_declared_not_named(hist: History) -> None:
    """HistVol10 is a range reference because HistVol declares the role, whatever its
    window; a renamed EWMA whose class declares nothing is scored, not a reference."""
    class Plain(EWMAVol):
        name = "plain EWMA"
        roles = frozenset()

    assert roles_of(HistVol(10)) == {"range"} and roles_of(Plain()) == frozenset()
    rep = evaluate_forecasts(hist, horizons=(1,), forecasters=[HistVol(10), Plain()],
                             n_boot=100, analogues=())
    assert rep.references["range"] == ["EWMA", "HistVol20", "GARCH-t", "HAR-RV",
                                       "HistVol10"]
    rows = {r.forecaster: r for r in rep.range}
    assert rows["HistVol10"].reference and not rows["plain EWMA"].reference
    assert "HistVol10" in rows["EWMA"].skill and "plain EWMA" not in rows["EWMA"].skill
    # the plain EWMA is the EWMA under another name: a tie with it, and the MCS keeps both
    assert rows["plain EWMA"].skill["EWMA"].value == pytest.approx(0.0, abs=1e-12)
    assert rows["plain EWMA"].mcs == rows["EWMA"].mcs
    assert rep.references["direction"] == ["base rate"]


def test_garch_sees_a_volatility_regime() -> None:
    """Volatility that doubles every other 100 bars, in train as later: the GARCH fit on
    train learns to react, and its variance at later origins settled into a high regime
    is well above that in a low one."""
    rng = np.random.default_rng(7)
    n = 1500
    i = np.arange(n)
    vol = np.where((i // 100) % 2 == 1, 0.02, 0.01)
    r = rng.normal(0, 1, n) * vol
    close = 100 * np.exp(np.cumsum(r))
    open_ = np.r_[100.0, close[:-1]]
    t0 = datetime(2000, 1, 3, tzinfo=timezone.utc)
    bars = pl.DataFrame({
        "symbol": ["AAA"] * n, "ts": [t0 + timedelta(days=int(k)) for k in i],
        "open": open_, "high": np.maximum(open_, close) * (1 + vol / 4),
        "low": np.minimum(open_, close) * (1 - vol / 4), "close": close,
        "volume": np.full(n, 1e6)}).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))
    h = history(bars)
    g = GARCHt()
    g.fit(h)
    assert g.fits["AAA"].alpha > 0.02 and g.fits["AAA"].beta > 0.5
    v = g.variance(h)
    target = np.minimum(np.arange(h.n) + 2, n - 1)  # row k is bar k + 1 (bar 0 has no
    settled = (target % 100 >= 30) & (h.split > 0)  # previous close); it forecasts k + 2
    high, low = settled & (vol[target] > 0.015), settled & (vol[target] < 0.015)
    assert np.median(v[high]) > 2.0 * np.median(v[low])
