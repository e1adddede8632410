"""The bins ratio kernel (float32 lookup tables, exact float64 redo near edges) gives the
tokens of the float64 feature path bit for bit, whatever the scale of the moves."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from candletok.data.sample import load_sample
from candletok.tokenize.bins import BinsTokenizer


def _bars(n_sym: int, n: int, vol: float, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_sym):
        c = 100.0 * np.exp(np.cumsum(rng.normal(0, vol, n)))
        o = np.r_[c[0], c[:-1]] * np.exp(rng.normal(0, vol / 3, n))
        if i % 2:  # exact repeats: zero gaps, bodies and wicks sit on/near the edges
            o[::3] = np.r_[c[0], c[:-1]][::3]
            c[::5] = o[::5]
        h = np.maximum(o, c) * np.exp(np.abs(rng.normal(0, vol / 2, n)) * (rng.random(n) > 0.3))
        lo = np.minimum(o, c) * np.exp(-np.abs(rng.normal(0, vol / 2, n)) * (rng.random(n) > 0.3))
        frames.append(pl.DataFrame({
            "symbol": f"S{i:03d}", "ts": np.arange(n).astype("datetime64[D]"),
            "open": o, "high": h, "low": lo, "close": c, "volume": np.ones(n),
        }))
    return pl.concat(frames).rechunk()


@pytest.fixture(scope="module")
def tok() -> BinsTokenizer:
    return BinsTokenizer().fit(load_sample(["AAPL", "IBM", "MSFT", "GOOG"]))


@pytest.mark.parametrize("vol", [0.02, 1e-3, 1e-5, 1e-8, 0.5])
def test_ratio_kernel_matches_float64_path(tok: BinsTokenizer, vol: float) -> None:
    assert tok._ratio_kernel() is not None
    bars = _bars(40, 3000, vol, seed=int(vol * 1e9) % 1000)
    fast = tok.encode(bars)["token"].to_numpy()
    _, X = tok.feature_matrix(bars)
    assert np.array_equal(fast, tok.encode_features(X))


def test_ratio_kernel_edge_values(tok: BinsTokenizer) -> None:
    """Features placed exactly on, and one ulp either side of, every edge."""
    kernel = tok._ratio_kernel()
    names = tok.feature_names
    rng = np.random.default_rng(1)
    sc = rng.choice([0.02, 3e-3, 4e-4, 2e-5, 1e-6], 200_000)
    X = np.empty((sc.size, 4))
    for j, n in enumerate(names):
        e = tok.edges[n]
        pick = e[rng.integers(0, e.size, sc.size)]
        X[:, j] = pick + rng.choice([-1, 0, 1], sc.size) * np.spacing(pick)
    R = np.exp(X * sc[:, None])
    R[::997, 1] = np.nan
    R[::991, 2] = 0.0
    R[::983, 0] = np.inf
    R[::977, 3] = 1e-300
    out = np.empty(sc.size, dtype=np.uint16)
    kernel(R, sc, out)
    with np.errstate(divide="ignore", invalid="ignore"):
        Xe = np.log(R) / sc[:, None]
    for j, n in enumerate(names):
        if n in ("upper", "lower"):
            Xe[:, j] = np.maximum(Xe[:, j], 0.0)
    assert np.array_equal(out, tok.encode_features(Xe))
