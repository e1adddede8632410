"""Point masses (issue 20, items 1, 7 and 21): a flat open, a doji, a missing wick and a
flat bar are exact zeros of a feature; both schemes must give them back exactly, report
them, and say when a feature carries no information. Token words never repeat."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from candletok.core.errors import TokenizerError
from candletok.core.ids import N_SPECIAL
from candletok.data.synthetic import synthetic_bars
from candletok.dataset.build import BuildConfig, build_dataset
from candletok.tokenize.base import Tokenizer, content_fingerprint
from candletok.tokenize.bins import BinsTokenizer
from candletok.tokenize.features import POINT_MASS_MIN, ZERO_TOL, candle_features
from candletok.tokenize.kmeans import KMeansTokenizer
from candletok.tokenize.quality import entropy_bits
from candletok.tokenize.registry import loads_tokenizer


def with_point_masses(bars: pl.DataFrame, seed: int, shares: dict[str, float]) -> pl.DataFrame:
    """``bars`` with a random share of candles made flat-open (open = previous close),
    dojis (close = open), wickless on top or bottom, and flat (O = H = L = C)."""
    rng = np.random.default_rng(seed)
    o, h, lo, c = (bars[x].to_numpy().copy() for x in ("open", "high", "low", "close"))
    n = o.size
    pick = {k: rng.random(n) < v for k, v in shares.items()}
    for t in range(1, n):  # sequential on purpose: a test, and each bar needs the last close
        if pick["gap"][t]:
            shift = c[t - 1] / o[t]
            o[t], h[t], lo[t], c[t] = c[t - 1], h[t] * shift, lo[t] * shift, c[t] * shift
        if pick["body"][t]:
            c[t] = o[t]
        if pick["upper"][t]:
            h[t] = max(o[t], c[t])
        if pick["lower"][t]:
            lo[t] = min(o[t], c[t])
        if pick["flat"][t]:
            h[t] = lo[t] = c[t] = o[t]
        h[t], lo[t] = max(h[t], o[t], c[t]), min(lo[t], o[t], c[t])
    return bars.with_columns(open=o, high=h, low=lo, close=c)


@pytest.fixture(scope="module")
def base_bars() -> pl.DataFrame:
    return synthetic_bars("AAA", n_bars=400, seed=3)


def make(scheme: str) -> Tokenizer:
    return BinsTokenizer() if scheme == "bins" else KMeansTokenizer(k=48)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), scheme=st.sampled_from(["bins", "kmeans"]),
       gap=st.floats(0.12, 0.95), body=st.floats(0.12, 0.5), upper=st.floats(0.12, 0.5),
       lower=st.floats(0.12, 0.5), flat=st.floats(0.03, 0.3))
def test_decode_reproduces_every_zero_exactly(base_bars: pl.DataFrame, seed: int, scheme: str,
                                              gap: float, body: float, upper: float,
                                              lower: float, flat: float) -> None:
    bars = with_point_masses(base_bars, seed, {"gap": gap, "body": body, "upper": upper,
                                               "lower": lower, "flat": flat})
    tok = make(scheme).fit(bars)
    enc = tok.encode(bars)
    dec = tok.decode(enc)
    feats = candle_features(bars)
    zero = {n: np.abs(feats[n].to_numpy()) < ZERO_TOL for n in tok.feature_names}
    o, h, lo, c = (dec[x].to_numpy() for x in ("open", "high", "low", "close"))
    pc = enc["prev_close"].to_numpy()
    for n in tok.feature_names:  # each is a point mass, not a lone zero
        assert zero[n].mean() >= POINT_MASS_MIN
    assert tok.exact_zero_features() == tok.feature_names
    assert "exact zero tokens for gap, body, upper, lower" in " ".join(tok.notes())
    assert (o[zero["gap"]] == pc[zero["gap"]]).all()  # a flat open comes back flat
    assert (c[zero["body"]] == o[zero["body"]]).all()
    assert (h[zero["upper"]] == np.maximum(o, c)[zero["upper"]]).all()
    assert (lo[zero["lower"]] == np.minimum(o, c)[zero["lower"]]).all()
    is_flat = zero["body"] & zero["upper"] & zero["lower"]
    assert is_flat.any()
    assert ((o == h) & (h == lo) & (lo == c))[is_flat].all()
    # and the tokens of flat opens read "no gap": their representative is exactly 0
    F = tok.decode_features(enc["token"].to_numpy())
    assert (F[zero["gap"], 0] == 0.0).all()
    assert all(tok.describe(t).startswith("no gap")
               for t in np.unique(enc["token"].to_numpy()[zero["gap"]]))


def test_index_like_flat_opens_get_a_zero_bin_and_no_gap_up(base_bars: pl.DataFrame) -> None:
    """The S&P case: the open is the previous close on 95% of days. The bin holding 0 must
    decode to 0 ("no gap"), and predict must not count those tokens as a gap up."""
    torch = pytest.importorskip("torch")
    from candletok.model.gpt import CandleGPT, GPTConfig
    from candletok.predict.predict import predict_next

    bars = with_point_masses(base_bars, 1, {"gap": 0.95, "body": 0.0, "upper": 0.0,
                                            "lower": 0.0, "flat": 0.0})
    for tok in (BinsTokenizer(), KMeansTokenizer(k=48)):
        tok.fit(bars)
        toks = tok.encode(bars)["token"].to_numpy()
        flat_open = np.abs(candle_features(bars)["gap"].to_numpy()) < ZERO_TOL
        zero_tokens = np.unique(toks[flat_open]) - N_SPECIAL
        torch.manual_seed(0)
        m = CandleGPT(GPTConfig(vocab_size=tok.vocab_size, context=32, n_layer=1, n_head=2,
                                n_embd=16, dropout=0.0))
        m.fingerprint = tok.fingerprint
        pr = predict_next(m.eval(), tok, bars)
        assert (tok.decode_features(zero_tokens + N_SPECIAL)[:, 0] == 0.0).all()
        p_zero = float(pr.probs[zero_tokens].sum())
        assert p_zero > 0
        # the flat-open tokens are neither up nor down gaps: they are "no gap"
        assert pr.p_no_gap >= p_zero - 1e-12
        assert pr.p_gap_up + pr.p_gap_down + p_zero <= 1.0 + 1e-9


def test_merged_edges_and_point_masses_are_reported() -> None:
    n = 600
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.choice([-1.0, 0.0, 0.5], n), rng.normal(size=n),
                         np.abs(rng.normal(size=n)), np.abs(rng.normal(size=n))])
    tok = BinsTokenizer(gap_bins=13)
    tok.zero_shares = {"gap": float((X[:, 0] == 0).mean()), "body": 0.0, "upper": 0.0,
                       "lower": 0.0}
    tok._fit_features(X)
    tok._finish()
    notes = " ".join(tok.notes())
    assert f"13 gap bins requested, {tok.radix[0]} distinct" in notes
    assert tok.radix[0] < 13
    assert "open = previous close" in notes
    # a rare zero (2% of the candles) gets no zero bin, and the note says so
    X[:, 0] = np.where(rng.random(n) < 0.02, 0.0, rng.normal(size=n))
    rare = BinsTokenizer()
    rare.zero_shares = {"gap": float((X[:, 0] == 0).mean()), "body": 0.0, "upper": 0.0,
                        "lower": 0.0}
    rare._fit_features(X)
    rare._finish()
    assert "gap" not in rare.exact_zero_features()
    assert "not exact for gap (under 5% of the candles" in " ".join(rare.notes())


def test_words_are_unique(base_bars: pl.DataFrame, tmp_path: Path) -> None:
    bars = with_point_masses(base_bars, 2, {"gap": 0.3, "body": 0.05, "upper": 0.1,
                                            "lower": 0.1, "flat": 0.02})
    for tok in (BinsTokenizer(vol_bins=3), KMeansTokenizer(k=64), BinsTokenizer(9, 13, 3, 3)):
        tok.fit(bars)
        words = tok.token_table()["meaning"].to_list()
        assert len(set(words)) == len(words)
        assert [tok.describe(t) for t in range(tok.vocab_size)] == words
        tok.save(tmp_path / "v.json")
        lines = (tmp_path / "v.txt").read_text().splitlines()[5:]
        meanings = [ln.split("  ")[-1] for ln in lines]
        assert len(set(meanings)) == len(meanings)


def test_constant_volume_is_refused_in_words(base_bars: pl.DataFrame) -> None:
    for v in (0.0, 1234.0):
        bars = base_bars.with_columns(volume=pl.lit(v, dtype=pl.Float64))
        with pytest.raises(TokenizerError, match="carries no information"):
            BinsTokenizer(vol_bins=3).fit(bars)


def test_missing_volume_is_an_exact_zero_not_a_collapse(base_bars: pl.DataFrame) -> None:
    rng = np.random.default_rng(7)
    gone = rng.random(base_bars.height) < 0.3
    bars = base_bars.with_columns(volume=pl.when(pl.Series(gone)).then(None)
                                  .otherwise(pl.col("volume")))
    tok = BinsTokenizer(vol_bins=5).fit(bars)
    assert "vol" in tok.exact_zero_features() and tok.radix[-1] >= 4
    feats = candle_features(bars, tok.features)
    zero = np.abs(feats["vol"].to_numpy()) < ZERO_TOL
    assert zero.mean() >= 0.25
    F = tok.decode_features(tok.encode_features(feats.select(tok.feature_names).to_numpy()))
    assert (F[zero, -1] == 0.0).all() and (F[~zero, -1] != 0.0).all()


def test_flat_bars_say_so(base_bars: pl.DataFrame) -> None:
    flat = base_bars.with_columns(open=pl.lit(100.0), high=pl.lit(100.0), low=pl.lit(100.0),
                                  close=pl.lit(100.0))
    for tok in (BinsTokenizer(), KMeansTokenizer(k=8)):
        tok.fit(flat)
        notes = " ".join(tok.notes())
        for n in ("gap", "body", "upper", "lower"):
            assert f"{n} carries no information" in notes
        assert math.copysign(1.0, entropy_bits(tok.counts)) == 1.0  # 0 bits, never -0


def test_format_1_vocab_still_loads_and_encodes_as_before(base_bars: pl.DataFrame) -> None:
    bars = with_point_masses(base_bars, 4, {"gap": 0.5, "body": 0.0, "upper": 0.2,
                                            "lower": 0.2, "flat": 0.0})
    tok = KMeansTokenizer(k=32).fit(bars)
    assert tok.zero_features  # point masses: the new state
    old = {k: v for k, v in tok._content().items() if k not in ("zero_features", "zero_shares")}
    old["format"] = "candletok-vocab/1"
    old["fingerprint"] = content_fingerprint(old)
    back = loads_tokenizer(json.dumps(old))
    assert back.fingerprint == old["fingerprint"] and back.zero_features == ()
    # a format 1 kmeans file assigns plain nearest centroids, as it always did
    X = tok.feature_matrix(bars)[1]
    d = (((X[:, None, :] - tok.centroids[None]) * tok.weights) ** 2).sum(axis=2)
    assert (back.encode(bars)["token"].to_numpy() == d.argmin(axis=1) + N_SPECIAL).all()
    new = json.loads(json.dumps({**tok._content(), "fingerprint": tok.fingerprint}))
    assert new["format"] == "candletok-vocab/2"
    assert loads_tokenizer(json.dumps(new)).zero_features == tok.zero_features


def test_kmeans_grid_path_keeps_zeros(monkeypatch: pytest.MonkeyPatch,
                                      base_bars: pl.DataFrame) -> None:
    """Large inputs go through the per-pattern grid index: the same tokens as brute force."""
    import candletok.tokenize.kmeans as km

    bars = with_point_masses(base_bars, 5, {"gap": 0.6, "body": 0.05, "upper": 0.2,
                                            "lower": 0.2, "flat": 0.02})
    tok = KMeansTokenizer(k=96).fit(bars)
    brute = tok.encode(bars)["token"].to_numpy()
    monkeypatch.setattr(km, "GRID_MIN_ROWS", 10)
    monkeypatch.setattr(km, "GRID_PATTERN_MIN", 4)
    tok2 = loads_tokenizer(json.dumps({**tok._content(), "fingerprint": tok.fingerprint}))
    assert (tok2.encode(bars)["token"].to_numpy() == brute).all()
    assert tok2._grids  # the grid path ran


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "candletok.cli.main", *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "CANDLETOK_OFFLINE": "1", "COLUMNS": "250",
             "CANDLETOK_CACHE": str(cwd / "cache"), "HOME": str(cwd),
             **({"PYTHONPATH": p} if (p := __import__("os").environ.get("PYTHONPATH")) else {})},
    )


def test_encode_and_inspect_report_point_masses(base_bars: pl.DataFrame, tmp_path: Path) -> None:
    bars = with_point_masses(base_bars, 6, {"gap": 0.9, "body": 0.0, "upper": 0.0,
                                            "lower": 0.0, "flat": 0.0})
    res = build_dataset(BuildConfig.from_options(["AAA"], tmp_path / "ds", source="synthetic"),
                        loader=lambda *a, **k: bars)
    want = float((bars["open"] == bars["close"].shift(1)).sum()) / (bars.height - 1)
    got = sum(s.point_masses["gap"] * s.candles for s in res.stats) / (bars.height - 1)
    assert got == pytest.approx(want)
    assert any("open = previous close" in n for n in res.notes)
    m = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert m["stats"]["train"]["point_masses"]["gap"] > 0.8
    r = cli("inspect", "ds", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "open = prev close" in r.stdout and "note: point masses" in r.stdout


def test_flat_data_prints_no_minus_zero(tmp_path: Path) -> None:
    n = 300
    ts = pl.datetime_range(pl.datetime(2010, 1, 4), pl.datetime(2010, 1, 4) + pl.duration(
        days=n - 1), "1d", eager=True, time_zone="UTC")
    pl.DataFrame({"symbol": ["FLAT"] * n, "ts": ts, "open": [50.0] * n, "high": [50.0] * n,
                  "low": [50.0] * n, "close": [50.0] * n, "volume": [0.0] * n}
                 ).write_csv(tmp_path / "flat.csv")
    r = cli("encode", "FLAT", "--source", str(tmp_path / "flat.csv"), "--out", "ds", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert " -0 " not in r.stdout and "-0.0" not in r.stdout
    assert "carries no information" in r.stdout
    assert "RuntimeWarning" not in r.stderr
    # scores against a reference that never errs are undefined, and say so in words
    r = cli("evaluate", "ds", "--horizon", "1", "--analogues", "none", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "RuntimeWarning" not in r.stderr and "nan" not in r.stdout.lower()
    assert "skill is undefined" in r.stdout and "no variation" in r.stdout
    # no verdict claims a tie or a coverage on data that cannot move
    assert "undefined: no origin has a next candle with a range" in r.stdout
    assert "interval covers" not in r.stdout and "no better than" not in r.stdout
    for args in (("fit", "FLAT", "--source", str(tmp_path / "flat.csv"), "--out", "v.json"),
                 ("inspect", "v.json"), ("inspect", "ds")):
        r = cli(*args, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert "gap carries no information" in r.stdout and "-0.0" not in r.stdout
    r = cli("encode", "FLAT", "--source", str(tmp_path / "flat.csv"), "--bins", "9,13,3,3,3",
            "--out", "ds2", cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "vol feature carries no information" in r.stderr


def test_garch_refuses_returns_that_never_move_without_warnings() -> None:
    """Flat bars give GARCH nothing to fit: no fit, and none of arch's divide-by-zero
    warnings (issue 20 item 21)."""
    import warnings

    from candletok.evaluation.econometric import fit_garch_t

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fit_garch_t(np.zeros(500)) is None
    rng = np.random.default_rng(0)
    assert fit_garch_t(0.01 * rng.standard_normal(500)) is not None
