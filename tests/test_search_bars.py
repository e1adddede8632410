"""Issue 20, items 2 and 3: `similar` shows the candles that were -- the stored bars, not
candles rebuilt from tokens -- in its tables, JSON and chart; the nearest mode compares
the query candles' own features; intraday bars show their times and prices show the
digits the instrument's tick needs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from candletok.core.display import format_price, is_intraday, price_decimals
from candletok.data.synthetic import synthetic_bars
from candletok.dataset.build import build_dataset
from candletok.search import plot as plot_mod
from candletok.search.index import open_index
from candletok.search.similar import similar

PARAMS = {"gap_bins": 3, "body_bins": 3, "upper_bins": 2, "lower_bins": 2}
SYMS = ["AA", "BB", "CC"]


def _build(root: Path, bars: pl.DataFrame, interval: str = "1d") -> Path:
    def loader(symbols: list[str], **_: Any) -> pl.DataFrame:
        return bars.filter(pl.col("symbol").is_in(symbols))

    build_dataset(SYMS, root, loader=loader, tokenizer_params=PARAMS, interval=interval)
    return root


@pytest.fixture(scope="module")
def daily(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pl.DataFrame]:
    bars = synthetic_bars(SYMS, n_bars=300, seed=21)
    return _build(tmp_path_factory.mktemp("bars") / "ds", bars), bars


def _fx(bars: pl.DataFrame) -> pl.DataFrame:
    """EUR/USD-like prices on a 0.00001 tick (rounding keeps low <= open, close <= high)."""
    return bars.with_columns((pl.col(c) / 250.0).round(5) for c in ("open", "high", "low",
                                                                      "close"))


@pytest.fixture(scope="module")
def hourly(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pl.DataFrame]:
    bars = _fx(synthetic_bars(SYMS, n_bars=400, interval="60m", seed=4))
    return _build(tmp_path_factory.mktemp("hourly") / "ds", bars, "60m"), bars


def _real(bars: pl.DataFrame, symbol: str, ts: pl.Series) -> pl.DataFrame:
    return (pl.DataFrame({"ts": ts}).join(bars.filter(pl.col("symbol") == symbol), on="ts",
                                          how="left").select("open", "high", "low", "close"))


# ---- item 2: stored bars everywhere a bar is shown --------------------------------------
def test_query_and_next_range_are_the_stored_bars(daily: tuple[Path, pl.DataFrame]) -> None:
    root, bars = daily
    res = similar(root, "CC", last=4, mode="nearest", top=5, horizons=(1, 2))
    want = _real(bars, "CC", res.query["ts"])
    assert np.array_equal(res.query.select("open", "high", "low", "close").to_numpy(),
                          want.to_numpy())
    ctx = res.context
    assert ctx is not None
    assert np.array_equal(ctx.select("open", "high", "low", "close").to_numpy(),
                          _real(bars, "CC", ctx["ts"]).to_numpy())
    # the next candle's range after the matches: the real high / low of the bar after each
    idx = open_index(root)
    from candletok.search.timerule import Cut

    e = res._e[Cut.of(idx, res._rule).available(res._e, 1)]  # next candle in series by T
    assert e.size
    e1 = e + 1
    nxt = pl.concat([_real(bars, idx.symbols[int(idx.sid[e])],
                           pl.Series([int(idx.ts[e])]).cast(pl.Datetime("us", "UTC")))
                     for e in e1.tolist()])
    pct = 100.0 * (nxt["high"] / nxt["low"] - 1.0).to_numpy()
    got = res.next_range.filter(pl.col("who") == "matches").row(0, named=True)
    assert got["n"] == pct.size and got["median_pct"] == pytest.approx(np.median(pct))


def test_nearest_from_the_dataset_uses_the_candles_own_features(
        daily: tuple[Path, pl.DataFrame]) -> None:
    """The same query asked from the dataset and from its own bars gives the same
    matches and distances: both compare the candles' own features."""
    root, bars = daily
    at = bars.filter(pl.col("symbol") == "BB")["ts"][250]
    kw: dict[str, Any] = dict(last=5, mode="nearest", top=8, horizons=(1,), at=at)
    from_ds = similar(root, "BB", **kw)
    from_bars = similar(root, bars.filter(pl.col("symbol") == "BB"), **kw)
    assert from_ds._e.tolist() == from_bars._e.tolist()
    assert np.allclose(from_ds.matches["distance"].to_numpy(),
                       from_bars.matches["distance"].to_numpy(), rtol=1e-9, atol=1e-9)


def test_the_chart_draws_the_stored_bars(daily: tuple[Path, pl.DataFrame], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    root, bars = daily
    res = similar(root, "AA", last=3, mode="nearest", top=4, horizons=(1, 3))
    drawn: list[tuple[np.ndarray, ...]] = []
    real_draw = plot_mod.draw_candles

    def spy(ax: Any, x: np.ndarray, *ohlc: np.ndarray, **kw: Any) -> Any:
        drawn.append(tuple(np.asarray(v, dtype=np.float64) for v in ohlc))
        return real_draw(ax, x, *ohlc, **kw)

    monkeypatch.setattr(plot_mod, "draw_candles", spy)
    plot_mod.plot_similar(res, tmp_path / "s.png", n_matches=4)
    assert res.context is not None
    want = _real(bars, "AA", res.context["ts"]).to_numpy().T
    assert np.array_equal(np.stack(drawn[0]), want)  # the query panel
    idx = open_index(root)
    for (o, h, lo, c), e in zip(drawn[1:], res._e.tolist(), strict=True):  # match panels
        sym = idx.symbols[int(idx.sid[e])]
        last, unit = float(idx.close[e]), float(idx.scale[e])
        a = e - 3 + 1 - 2  # the panel starts two bars before the window (inside its series)
        a = max(a, int(idx.starts[idx.sid[e]]))
        ts = pl.Series(np.asarray(idx.ts[a : a + o.size])).cast(pl.Datetime("us", "UTC"))
        real = _real(bars, sym, ts).to_numpy().T
        # in volatility units: the units the match's distance is measured in
        assert np.allclose(np.stack([o, h, lo, c]), np.log(real / last) / unit, rtol=1e-12)


# ---- item 3: intraday times and the instrument's digits --------------------------------
def test_hourly_fx_shows_times_and_five_decimals(hourly: tuple[Path, pl.DataFrame],
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from test_search_cli import run_cli

    root, bars = hourly
    cc = bars.filter(pl.col("symbol") == "CC")
    code, out, err = run_cli(("similar", "CC", "--dataset", "ds", "--last", "3",
                              "--no-calibrate", "--mode", "nearest", "--top", "4"),
                             root.parent, capsys, monkeypatch)
    assert code == 0, err
    q = cc.tail(3)
    for r in q.iter_rows(named=True):  # each query candle: its own hour, its own close
        assert r["ts"].strftime("%Y-%m-%d %H:%M") in out
        assert f"{r['close']:.5f}" in out
    assert "time (UTC)" in out
    code, text, err = run_cli(("similar", "CC", "--dataset", "ds", "--last", "3", "--json",
                               "--no-calibrate", "--mode", "nearest", "--top", "4"),
                              root.parent, capsys, monkeypatch)
    body = json.loads(text)
    assert body["summary"]["price_decimals"] == 5 and body["summary"]["intraday"]
    assert [r["close"] for r in body["query"]] == q["close"].to_list()
    assert len({r["ts"] for r in body["query"]}) == 3
    res = similar(root, "CC", last=3, mode="nearest", top=4, horizons=(1,))
    assert res.when(res.matches["start"][0]) != res.when(res.matches["end"][0])


def test_hourly_chart_labels_carry_the_time(hourly: tuple[Path, pl.DataFrame],
                                            tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    root, _ = hourly
    res = similar(root, "BB", last=3, mode="nearest", top=2, horizons=(1,))
    fig = Figure()
    ax = fig.add_subplot()
    plot_mod._match_panel(ax, None, res, int(res._e[0]), 1, plot_mod.series_limits(
        res._idx, res._rule.T))
    end = res.matches["end"][0]
    assert end.strftime("%Y-%m-%d %H:%M") in ax.get_title()
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert end.strftime("%Y-%m-%d %H:%M") in labels


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 6), st.lists(st.integers(1, 10**8), min_size=1, max_size=40),
       st.booleans())
def test_price_decimals_is_the_finest_tick_of_the_data(d: int, units: list[int],
                                                       float32: bool) -> None:
    """Prices on a 10**-d grid need at most d decimals, and d when one of them needs it;
    float32 storage (common in feeds) does not add digits."""
    p = np.array(units, dtype=np.float64) / 10.0**d
    if float32:
        p = p.astype(np.float32).astype(np.float64)
    got = price_decimals(p)
    sig_cap = 7 - 1 - int(np.floor(np.log10(p.min())))
    assert got <= d or got == max(0, sig_cap)
    exact = [u % 10 != 0 for u in units]
    # float64 prices keep 7 significant digits exactly; float32 holds about 7.2, so a
    # 7-digit price (99999.99 is stored as 99999.9921875) is at its limit: 6 digits there
    digits = 10**6 if float32 else 10**7
    if any(exact) and d <= max(0, sig_cap) and max(units) < digits:
        assert got == d
    if got < max(0, sig_cap):  # on its grid: the written prices read back as the prices
        back = np.array([float(format_price(float(x), got).replace(",", "")) for x in p])
        assert np.allclose(back, p, rtol=2e-7, atol=0)


def test_intraday_is_read_from_the_interval_or_the_times() -> None:
    assert is_intraday("60m") and is_intraday("1h") and not is_intraday("1d")
    day = 86_400_000_000
    assert not is_intraday("1d", np.array([day, 2 * day]))
    assert is_intraday(None, np.array([day + 3_600_000_000]))
    assert price_decimals([]) == 2 and price_decimals([1.5, 2.25]) == 2


def test_own_features_are_the_encoders_features(tmp_path: Path) -> None:
    """The query's features from the stored bars are the ones its tokens were encoded
    from: exactly for the price features, and for ``vol`` once the series has a full
    window of stored volumes (the anchor bar's volume is not stored)."""
    from candletok.search.query import own_features

    bars = synthetic_bars(["AA", "BB"], n_bars=120, seed=2)

    def loader(symbols: list[str], **_: Any) -> pl.DataFrame:
        return bars.filter(pl.col("symbol").is_in(symbols))

    build_dataset(["AA", "BB"], tmp_path / "ds", loader=loader,
                  tokenizer_params={**PARAMS, "vol_bins": 3})
    idx = open_index(tmp_path / "ds")
    tok = idx.tokenizer()
    s = idx.symbols.index("BB")
    X = own_features(idx, tok, int(idx.starts[s]), int(idx.starts[s + 1]))
    F = np.asarray(tok.feature_matrix(bars.filter(pl.col("symbol") == "BB"))[1])
    w = tok.features.vol_window
    assert X.shape == F.shape and np.array_equal(X[:, :4], F[:, :4])
    assert np.allclose(X[w:, 4], F[w:, 4], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("path", ["auto", "cascade"])
@pytest.mark.parametrize("seed", range(4))
def test_nearest_on_own_features_equals_brute_force(daily: tuple[Path, pl.DataFrame],
                                                    seed: int, path: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows compared by their candles' own features (stored bars): the n-gram search
    with per-token lower bounds returns exactly what a scan of every window returns."""
    from candletok.search import nearest as nearest_mod
    from candletok.search.nearest import OwnMetric, brute_force, index_features, nearest
    from candletok.search.timerule import Cut, TimeRule

    if path == "cascade":
        monkeypatch.setattr(nearest_mod, "SMALL", 0)
    root, _ = daily
    idx = open_index(root)
    tok = idx.tokenizer()
    rng = np.random.default_rng(seed)
    n_win = int(rng.integers(1, 7))
    s = int(rng.integers(0, len(idx.symbols)))
    q_end = int(idx.starts[s] + rng.integers(n_win + 50, int(np.diff(idx.starts)[s])))
    cut = Cut.of(idx, TimeRule(int(idx.ts[q_end]), n_win, (1, 3), s, q_end))
    k = int(rng.integers(1, 25))
    F = index_features(idx, tok)[0]
    w = nearest_mod.feature_weights(tok)
    for qfeat in (rng.normal(0.0, 1.0, (n_win, 4)), F[q_end - n_win + 1 : q_end + 1] / w):
        own = OwnMetric.of(idx, tok, qfeat)
        ok = np.isfinite(F).all(axis=1)
        for lag in range(n_win):  # the bound never exceeds any candle's own cost
            cost = np.square(F[ok] - (qfeat * w)[n_win - 1 - lag]).sum(axis=1)
            assert (own.bounds[lag][idx.tokens_intp[ok]] <= cost + 1e-12).all()
        got = nearest(idx, cut, own.bounds, k, own)
        ref = brute_force(idx, tok, qfeat, cut, k, own=True)
        assert got.e.tolist() == ref.e.tolist()
        np.testing.assert_allclose(got.dist, ref.dist, rtol=1e-9, atol=1e-9)
    # a listed distance is the sum over the window of its stored candles' own features
    e = int(got.e[0])
    X = np.stack([F[e - lag] for lag in range(n_win - 1, -1, -1)])
    assert got.dist[0] == pytest.approx(float(np.square(X - qfeat * w).sum()), abs=1e-8)
