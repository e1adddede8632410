"""Conformal intervals (split CQR and ACI) and the val winner: the finite-sample rule by
hand, ACI's causality (a future outcome never moves an earlier offset), ACI tracking a
drift that split-conformal misses, choices made on val only, and the saved walk read back
at the origin it was scored at."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_evaluate import make_history, planted_bars

from candletok.evaluation.conformal import (
    IntervalFit,
    aci_offsets,
    conformity,
    cqr_offset,
    fit_interval,
    interval_bands,
    saved_offsets,
)
from candletok.evaluation.econometric import GARCHt
from candletok.evaluation.evaluate import evaluate_forecasts
from candletok.evaluation.forecasters import LEVELS, Forecast
from candletok.evaluation.history import History


def test_cqr_offset_is_the_finite_sample_order_statistic() -> None:
    s = np.array([0.5, -1.0, 2.0, 0.1, 3.0, -0.2, 1.0, 0.0, 0.3])  # n = 9
    # ceil(10 * 0.8) = 8th smallest of the sorted scores
    assert cqr_offset(s, 0.8) == np.sort(s)[7]
    assert cqr_offset(s, 0.95) == s.max()  # the rank passes n: the largest
    assert math.isnan(cqr_offset(np.array([]), 0.8))
    assert np.array_equal(conformity(np.array([0.0]), np.array([1.0]), np.array([1.5])), [0.5])


def test_split_conformal_covers_on_exchangeable_data() -> None:
    """An interval half as wide as it should be covers its target once widened."""
    rng = np.random.default_rng(0)
    cal, new = rng.normal(size=4000), rng.normal(size=4000)
    lo, hi = -0.64, 0.64  # the 50% interval of N(0, 1), claimed as 80%
    q = cqr_offset(conformity(lo, hi, cal), 0.8)
    cover = np.mean((new >= lo - q) & (new <= hi + q))
    assert np.mean((new >= lo) & (new <= hi)) < 0.55
    assert 0.78 <= cover <= 0.82


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), cut=st.integers(1, 59), h=st.integers(1, 4),
       gamma=st.sampled_from([0.005, 0.05, 0.3]))
def test_aci_reads_only_past_realized_misses(seed: int, cut: int, h: int, gamma: float) -> None:
    """Changing the outcome of origin ``cut`` and every later one never changes an offset
    at an origin of that series before the outcome closed (rows < rows[cut] + h: the
    offset at ``cut`` itself included), nor any offset of an earlier series."""
    rng = np.random.default_rng(seed)
    rows = np.r_[np.arange(30), 100 + np.arange(30)]
    series = np.r_[np.zeros(30, int), np.ones(30, int)]
    ref = rng.normal(size=50)
    s = rng.normal(size=60)
    s2 = s.copy()
    s2[cut:] = rng.normal(size=60 - cut) * 3
    a, _ = aci_offsets(s, ref, 0.8, gamma, rows, series, h)
    b, _ = aci_offsets(s2, ref, 0.8, gamma, rows, series, h)
    same = series == series[cut]
    known = (same & (rows < rows[cut] + h)) | (series < series[cut])
    assert known[cut] and np.array_equal(a[known], b[known])


def test_aci_follows_a_volatility_drift_that_split_conformal_misses() -> None:
    """Outcomes twice as spread in the second half: split-conformal from the first half
    under-covers there; ACI's walk comes back near 80%."""
    rng = np.random.default_rng(1)
    n = 3000
    y = rng.normal(size=n) * np.r_[np.ones(n // 2), 2 * np.ones(n // 2)]
    cal = conformity(-1.0, 1.0, rng.normal(size=1000))
    s = conformity(-1.0, 1.0, y)
    q = cqr_offset(cal, 0.8)
    late = np.arange(n) >= n // 2 + 500
    split_cover = np.mean(s[late] <= q)
    _, miss = aci_offsets(s, cal, 0.8, 0.02, np.arange(n), np.zeros(n, int), 1)
    aci_cover = 1 - miss[late].mean()
    assert split_cover < 0.6
    assert abs(aci_cover - 0.8) < 0.05


def _fc(n: int, half: float, rng: np.random.Generator) -> tuple[Forecast, dict]:
    q = np.zeros((n, len(LEVELS)))
    q[:, 0], q[:, 2], q[:, 3], q[:, 4] = -half, half, -1.2 * half, 1.2 * half
    fc = Forecast(np.arange(n), quantiles=q, range_mean=np.ones(n))
    y = rng.normal(size=n)
    return fc, {"ret": y, "range": np.exp(rng.normal(size=n))}


def test_fit_interval_round_trips_and_widens_a_narrow_interval() -> None:
    rng = np.random.default_rng(2)
    fc, target = _fc(400, 0.5, rng)
    pos = np.arange(400)
    fit = fit_interval(fc, target, pos, fc.rows, np.zeros(400, int), np.arange(400), 1, 1.0)
    assert fit is not None and fit.method in ("split", "aci")
    assert fit.offsets["80"] > 0.5 and fit.offsets["90"] > fit.offsets["80"] - 0.2
    again = IntervalFit.from_dict(fit.to_dict())
    assert again == fit
    bands = interval_bands(fc, fit, None, 1.0)
    assert np.all(bands["lo80"] < -0.5) and np.all(bands["hi90"] > 0.6)
    lo, hi = fit.range["80"]
    assert lo < 0 < hi and np.allclose(bands["range_lo80"], math.exp(lo))
    assert fit_interval(*_fc(10, 0.5, rng), np.arange(10), np.arange(10), np.zeros(10, int),
                        np.arange(10), 1) is None  # too few val scores: no fit


def test_a_saved_walk_is_read_back_at_its_origin_and_after_it() -> None:
    fit = IntervalFit("aci", {"80": 0.3, "90": 0.5}, 0.02).to_dict()
    walk = {"AAA": {"ts": [10, 20, 30], "80": [0.1, 0.2, 0.4], "90": [0.5, 0.6, 0.7]}}
    f, off, why = saved_offsets(fit, walk, "AAA", 20)
    assert f.method == "aci" and off["80"][0] == 0.2 and why is None
    _, off, why = saved_offsets(fit, walk, "AAA", 99)
    assert off["90"][0] == 0.7 and "walk's last" in why
    f, off, why = saved_offsets(fit, walk, "AAA", 5)
    assert f.method == "split" and off is None and "split-conformal" in why
    f, off, why = saved_offsets(fit, walk, "ZZZ", 20)
    assert f.method == "split" and "no walk for ZZZ" in why


@pytest.fixture(scope="module")
def hist() -> History:
    return make_history(planted_bars(1250, ("AAA", "BBB"), seed=4, flip=0.5))


def _scrambled(hist: History, code: int, seed: int = 0) -> History:
    h = History(**{k: getattr(hist, k) for k in hist.__dataclass_fields__})
    m = hist.split == code
    k = np.exp(np.random.default_rng(seed).normal(0, 0.02, hist.n))
    h.close = np.where(m, hist.close * k, hist.close)
    h.high = np.maximum(h.high, h.close)
    h.low = np.minimum(h.low, h.close)
    return h


def test_intervals_and_winners_are_chosen_on_val_only(hist: History,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Scrambling the test bars changes no conformal fit and no val winner (nor its val
    figures); the evaluated split's coverage rows and the test figures do move. (That
    val moves them is the calibration maps' test, ``test_calibration_is_fit_on_val_only``.)
    GARCH's fit (seconds of arch's optimizer) is left out: it answers nothing then."""
    monkeypatch.setattr(GARCHt, "fit", lambda self, hist: None)
    def run(h: History):  # type: ignore[no-untyped-def]
        rep = evaluate_forecasts(h, horizons=(1,), n_boot=20)
        fits = {n: d.get("intervals") for n, d in rep.calibration["forecasters"].items()}
        wins = {q: {k: {x: v[x] for x in ("forecaster", "value", "val", "n")}
                    for k, v in by.items()} for q, by in rep.winners.items()}
        return rep, fits, wins

    rep, fits, wins = run(hist)
    assert rep.intervals and {r.what for r in rep.intervals} == {"return", "range"}
    assert set(wins) == {"range", "quantiles", "p_up"}
    assert any("chosen on val" in n for n in rep.notes)
    rep2, fits2, wins2 = run(_scrambled(hist, 2))
    assert fits2 == fits and wins2 == wins
    assert [r.after for r in rep2.intervals] != [r.after for r in rep.intervals]
    assert rep2.winners["range"]["1"]["test"] != rep.winners["range"]["1"]["test"]
