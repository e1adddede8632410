"""The analogue forecast (candletok/search/forecast.py): distance weights and their
effective n, weighted quantiles, the query's own scale, and shown = scored (``similar``
prints the numbers the harness scores). Also the learned mode's exact search by slices."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from candletok.data.synthetic import synthetic_bars
from candletok.dataset.build import build_dataset
from candletok.search import forecast as fc
from candletok.search.index import open_index
from candletok.search.similar import similar
from candletok.search.timerule import Cut, TimeRule
from tests._helpers import COARSE

floats = st.floats(0.0, 100.0, allow_nan=False)


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bars = synthetic_bars(["A", "B"], n_bars=400, seed=3)

    def loader(symbols: list[str], **_: Any) -> pl.DataFrame:
        return bars.filter(pl.col("symbol").is_in(symbols))

    out = tmp_path_factory.mktemp("analogue") / "ds"
    build_dataset(["A", "B"], out, loader=loader, tokenizer_params=COARSE)
    return out


def test_equal_distances_give_equal_weights_and_the_count() -> None:
    for d in ([0.0] * 7, [2.5] * 7, [float("nan")] * 3):
        w = fc.kernel_weights(np.array(d))
        assert np.all(w == w[0]) and fc.kish_n(w) == pytest.approx(len(d))
    assert fc.kernel_weights(np.zeros(0)).size == 0


@given(st.lists(floats, min_size=2, max_size=40))
@settings(max_examples=60, deadline=None)
def test_weights_fall_with_distance_and_bound_the_effective_n(d: list[float]) -> None:
    x = np.array(d)
    w = fc.kernel_weights(x)
    o = np.argsort(x, kind="stable")
    assert np.all(np.diff(w[o]) <= 1e-15)  # nearer never weighs less
    assert np.all(w > 0) and np.all(w <= 1)
    if x.max() > x.min():  # the k-th (farthest) weighs exp(-1/2) of a zero distance
        assert w[np.argmax(x)] == pytest.approx(math.exp(-0.5))
    n = fc.kish_n(w)
    assert 1.0 - 1e-9 <= n <= x.size + 1e-9
    assert n >= x.size * math.exp(-1.0) - 1e-9  # weights in [e^-1/2, 1]: never below n/e


def test_one_heavy_weight_is_one_effective_match() -> None:
    assert fc.kish_n(np.array([1.0, 1e-9, 1e-9])) == pytest.approx(1.0, rel=1e-6)


@given(st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=30))
@settings(max_examples=60, deadline=None)
def test_equal_weights_are_numpys_quantiles(x: list[float]) -> None:
    a = np.array(x)
    got = fc.weighted_quantiles(a, np.ones(a.size), fc.QUANTILES)
    assert np.allclose(got, np.quantile(a, fc.QUANTILES), rtol=0, atol=1e-12)


def test_weights_pull_the_quantiles_toward_the_heavy_values() -> None:
    x = np.array([0.0, 1.0, 2.0, 3.0, 10.0])
    light_top = fc.weighted_quantiles(x, np.array([1, 1, 1, 1, 0.01]), (0.9,))[0]
    even = fc.weighted_quantiles(x, np.ones(5), (0.9,))[0]
    assert light_top < even


def _inputs(ds: Path, at_pos: int) -> tuple[Any, Cut, fc.Inputs]:
    idx = open_index(ds)
    res = similar(idx, "A", mode="nearest", at=str(pl.Series([int(idx.ts[at_pos])]).cast(
        pl.Datetime("us", "UTC"))[0]))
    rule = res._rule
    assert rule is not None
    return idx, Cut.of(idx, rule), res.analogue_inputs


def test_twice_the_query_scale_twice_the_quantiles(ds: Path) -> None:
    """The same vol-unit outcomes times a query scale twice as large: twice the log-return
    quantiles and next range (and the percent figures are those in percent); raw
    figures ignore the query's scale."""
    idx, cut, inp = _inputs(ds, 300)
    hs = (1, 5)
    one = fc.forecast_rows(idx, cut, inp, hs, weighted=True, rescaled=True)
    two = fc.forecast_rows(idx, cut, fc.Inputs(inp.e, inp.dist, inp.rho, 2 * inp.scale), hs,
                           weighted=True, rescaled=True)
    for c in ("q10_log", "q50_log", "q90_log"):
        assert np.allclose(two[c].to_numpy(), 2 * one[c].to_numpy(), rtol=1e-12)
        p = c.replace("_log", "_pct")
        assert np.allclose(two[p].to_numpy(), 100 * np.expm1(two[c].to_numpy()))
    assert two["range_mean"][0] == pytest.approx(2 * one["range_mean"][0], rel=1e-12)
    assert two["range_sq"][0] == pytest.approx(4 * one["range_sq"][0], rel=1e-12)
    assert one["p_up"].to_list() == two["p_up"].to_list()  # direction needs no scale
    raw1 = fc.forecast_rows(idx, cut, inp, hs, rescaled=False)
    raw2 = fc.forecast_rows(idx, cut, fc.Inputs(inp.e, inp.dist, inp.rho, 2 * inp.scale), hs,
                            rescaled=False)
    assert raw1["q50_log"].to_list() == raw2["q50_log"].to_list()


def test_weighted_effective_n_is_the_clusters_times_kish(ds: Path) -> None:
    idx, cut, inp = _inputs(ds, 300)
    eq = fc.forecast_rows(idx, cut, inp, (1,), weighted=False)
    wt = fc.forecast_rows(idx, cut, inp, (1,), weighted=True)
    ok = cut.available(inp.e, 1)
    w = fc.kernel_weights(inp.dist[ok])
    assert wt["n_eff"][0] == pytest.approx(eq["n_eff"][0] * fc.kish_n(w) / ok.sum())
    assert wt["n_eff"][0] <= eq["n_eff"][0] + 1e-12
    assert (wt["p_hi"][0] - wt["p_lo"][0]) >= (eq["p_hi"][0] - eq["p_lo"][0]) - 0.02


def test_query_scale_is_the_next_candles_scale(ds: Path) -> None:
    """Asked at a past bar, the query's scale is the one stored with its next candle,
    which the stepped EWMA reproduces (what the harness reads as ``next_scale``)."""
    idx = open_index(ds)
    tok = idx.tokenizer()
    sid = idx.series_of("A")
    e = int(idx.starts[sid]) + 200
    cand = pl.DataFrame({c: np.asarray(getattr(idx, c)[e - 1: e + 1], dtype=np.float64)
                         for c in ("high", "low", "close", "scale")})
    stored = fc.query_scale(idx, tok, e, cand)
    assert stored == float(idx.scale[e + 1])
    assert fc.query_scale(idx, tok, None, cand) == pytest.approx(stored, rel=1e-9)


def test_similar_shows_what_the_harness_scores(ds: Path) -> None:
    """shown = scored: the analogue forecaster's quantiles, range and effective n at an
    origin are the numbers ``similar`` prints there (its ``forecast`` frame); P(up) is
    that frame's, shrunk by the one rule."""
    from candletok.evaluation.analogues import AnalogueForecaster, analogue_p_up, search_query
    from candletok.evaluation.history import load_history

    hist = load_history(ds)
    idx = open_index(ds)
    f = AnalogueForecaster("nearest analogues", search_query(idx, "nearest"), (1, 5),
                           subsample=4, seed=1)
    f.fit(hist)
    rows = np.flatnonzero(hist.split == 2)
    for h in (1, 5):
        got = f.forecast(hist, rows, h)
        assert got is not None and got.rows.size
        for i, r in enumerate(got.rows.tolist()[:2]):
            at = pl.Series([int(hist.ts[r])]).cast(pl.Datetime("us", "UTC"))[0]
            res = similar(idx, str(hist.symbol[r]), mode="nearest", horizons=(1, 5), at=at)
            shown = res.forecast.filter(pl.col("horizon") == h).row(0, named=True)
            assert got.n_eff[i] == shown["n_eff"]
            assert got.quantiles[i][:3].tolist() == [shown["q10_log"], shown["q50_log"],
                                                     shown["q90_log"]]
            if h == 1:
                assert got.range_mean[i] == shown["range_mean"]
                assert got.range_sq[i] == shown["range_sq"]
            base, _ = f.base.rate(hist, h)
            ans = f.answers(hist, np.array([r]))[0][h]
            assert ans.p_up == shown["p_up"]
            assert got.p_up[i] == float(analogue_p_up([ans], base, f.prior)[0])


@given(st.integers(0, 10_000), st.integers(1, 40))
@settings(max_examples=25, deadline=None)
def test_dot_search_by_slices_is_the_brute_force(seed: int, k: int) -> None:
    """Ranges of rows (the time rule as slices), float32 norms and a product in blocks
    smaller than the data: the same ids and distances as the float64 brute force."""
    import candletok.search.vectors as vs

    rng = np.random.default_rng(seed)
    n = 3000
    v = rng.normal(size=(n, 8)).astype(np.float32)
    v[10] = v[20]  # a tie: the lower id first
    sq = np.einsum("ij,ij->i", v, v, dtype=np.float64).astype(np.float32)
    cuts = np.sort(rng.choice(np.arange(1, n), size=6, replace=False))
    a, b = cuts[0::2], cuts[1::2]
    mask = np.zeros(n, bool)
    for x, y in zip(a, b, strict=True):
        mask[x:y] = True
    old = vs.DOT_BLOCK
    vs.DOT_BLOCK = 512
    try:
        q = v[int(rng.integers(n))] + np.float32(1e-3)
        want = vs.NumpyFlatIndex(v).search_masked(q, k, mask)
        got = vs.dot_search(v, sq, q, k, ranges=(a, b))
        also = rng.random(n) < 0.5  # a row mask inside the ranges as well
        want2 = vs.NumpyFlatIndex(v).search_masked(q, k, mask & also)
        got2 = vs.dot_search(v, sq, q, k, also, ranges=(a, b))
        few = vs.dot_search(v, sq, q, k, ranges=(a[:1], a[:1] + 3))  # fewer rows than k
    finally:
        vs.DOT_BLOCK = old
    assert np.array_equal(want.indices, got.indices)
    assert np.allclose(want.scores, got.scores, rtol=1e-9, atol=1e-9)
    assert np.array_equal(want2.indices, got2.indices)
    assert set(few.indices.tolist()) <= set(range(int(a[0]), int(a[0]) + 3))
    assert few.indices.size == min(k, 3)


def test_eligible_ranges_are_the_eligible_mask(ds: Path) -> None:
    from candletok.search.embed import window_ends

    idx = open_index(ds)
    ends = window_ends(idx, 5)
    sid = idx.series_of("A")
    for q_end in (int(idx.starts[sid]) + 150, int(idx.starts[sid + 1]) - 1):
        cut = Cut.of(idx, TimeRule(int(idx.ts[q_end]), 5, (1, 5, 10), sid, q_end))
        a, b = cut.eligible_ranges(ends)
        mask = np.zeros(ends.size, bool)
        for x, y in zip(a.tolist(), b.tolist(), strict=True):
            mask[x:y] = True
        assert np.array_equal(mask, cut.eligible(ends))


def test_the_json_carries_the_forecast_it_prints(ds: Path) -> None:
    res = similar(ds, "B", mode="exact", at="2000-12-01")
    js = res.to_dict()["forecast"]
    assert [r["horizon"] for r in js] == res.forecast["horizon"].to_list()
    assert all(r["weighted"] is fc.WEIGHTED and r["rescaled"] is fc.RESCALED for r in js)
    q = res.forecast["q50_log"].to_list()
    assert [r["q50_log"] for r in js] == [None if not math.isfinite(v) else v for v in q]


def test_the_cli_prints_what_the_harness_scores(ds: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``candletok similar --json``'s analogue forecast at an origin is the harness's
    forecast there (quantiles, range, effective n), and its table shows those numbers."""
    import json

    from candletok.evaluation.analogues import AnalogueForecaster, search_query
    from candletok.evaluation.history import load_history
    from tests._helpers import run_main

    hist = load_history(ds)
    f = AnalogueForecaster("nearest analogues", search_query(open_index(ds), "nearest"),
                           (1,), subsample=2, seed=3)
    f.fit(hist)
    got = f.forecast(hist, np.flatnonzero(hist.split == 2), 1)
    assert got is not None
    r = int(got.rows[0])
    at = str(pl.Series([int(hist.ts[r])]).cast(pl.Datetime("us", "UTC"))[0].date())
    args = ("similar", str(hist.symbol[r]), "--dataset", str(ds), "--mode", "nearest",
            "--at", at, "--horizon", "1", "--no-calibrate")
    code, out, _ = run_main((*args, "--json"), ds.parent, capsys, monkeypatch)
    assert code == 0
    shown = json.loads(out)["forecast"][0]
    assert [shown["q10_log"], shown["q50_log"], shown["q90_log"]] == \
        got.quantiles[0][:3].tolist()
    assert (shown["range_mean"], shown["n_eff"]) == (got.range_mean[0], got.n_eff[0])
    code, out, _ = run_main(args, ds.parent, capsys, monkeypatch)
    assert code == 0 and "analogue forecast, as evaluate scores it" in out
    assert f"{shown['q50_pct']:+.2f}%" in out
