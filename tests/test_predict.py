"""Forecasts and calibration with a real (small) bins vocabulary and an untrained model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from candletok.core.errors import ModelError
from candletok.core.ids import N_SPECIAL
from candletok.data.synthetic import synthetic_bars
from candletok.model.gpt import CandleGPT, GPTConfig
from candletok.model.updown import up_mask
from candletok.predict.predict import measured_check, predict_next
from candletok.tokenize.bins import BinsTokenizer


@pytest.fixture(scope="module")
def bars() -> pl.DataFrame:
    return synthetic_bars(["AAA", "BBB"], n_bars=300, seed=1)


@pytest.fixture(scope="module")
def tok(bars: pl.DataFrame) -> BinsTokenizer:
    return BinsTokenizer(gap_bins=3, body_bins=3, upper_bins=2, lower_bins=2).fit(bars)


def make_model(tok: BinsTokenizer, seed: int = 0) -> CandleGPT:
    torch.manual_seed(seed)
    m = CandleGPT(GPTConfig(vocab_size=tok.vocab_size, context=32, n_layer=1, n_head=2,
                            n_embd=16, dropout=0.0))
    m.fingerprint = tok.fingerprint
    return m.eval()


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 1000), n=st.integers(5, 120))
def test_probabilities_are_consistent(bars: pl.DataFrame, tok: BinsTokenizer, seed: int,
                                      n: int) -> None:
    one = bars.filter(pl.col("symbol") == "AAA").head(n)
    pr = predict_next(make_model(tok, seed), tok, one)
    assert pr.probs.sum() == pytest.approx(1.0)
    assert (pr.probs >= 0).all() and pr.probs.size == tok.vocab_size - N_SPECIAL
    assert 0 <= pr.p_close_up <= 1 and pr.p_close_up + pr.p_close_down == pytest.approx(1.0)
    assert pr.p_gap_up + pr.p_gap_down <= 1 + 1e-9
    # Gap probabilities agree with the words: "gap up"/"gap down" tokens, not "no gap" ones.
    words = [tok.describe(t) for t in range(N_SPECIAL, tok.vocab_size)]
    up_words = np.array([w.startswith("gap up") for w in words])
    down_words = np.array([w.startswith("gap down") for w in words])
    assert pr.p_gap_up == pytest.approx(pr.probs[up_words].sum())
    assert pr.p_gap_down == pytest.approx(pr.probs[down_words].sum())
    F = tok.decode_features(np.arange(N_SPECIAL, tok.vocab_size))
    assert pr.p_close_up == pytest.approx(pr.probs[(F[:, 0] + F[:, 1]) > 0].sum())
    assert pr.exp_range_vol >= 0 and pr.exp_range_pct >= 0
    probs = [c.prob for c in pr.top]
    assert len(pr.top) == 5 and probs == sorted(probs, reverse=True)
    assert all(c.token >= N_SPECIAL and c.words for c in pr.top)
    assert pr.context_candles == min(n - 1, 32)


def test_a_model_that_always_predicts_up_candles(bars: pl.DataFrame,
                                                 tok: BinsTokenizer) -> None:
    m = make_model(tok)
    up = torch.from_numpy(up_mask(tok))
    with torch.no_grad():
        m.head_bias.copy_(torch.where(up, 30.0, -30.0))
    pr = predict_next(m, tok, bars.filter(pl.col("symbol") == "BBB"))
    assert pr.p_close_up == pytest.approx(1.0, abs=1e-6)


def test_refuses_another_vocabulary_and_many_symbols(bars: pl.DataFrame,
                                                     tok: BinsTokenizer) -> None:
    m = make_model(tok)
    with pytest.raises(ModelError, match="exactly one"):
        predict_next(m, tok, bars)
    m.fingerprint = "something-else"
    with pytest.raises(ModelError, match="vocabulary"):
        predict_next(m, tok, bars.filter(pl.col("symbol") == "AAA"))


def test_token_up_rates_count_real_closes(tmp_path: Path, tok: BinsTokenizer) -> None:
    from candletok.dataset.build import build_dataset
    from candletok.dataset.manifest import read_split
    from candletok.dataset.torchdata import TokenDataset
    from candletok.model.updown import token_up_rates, up_probability

    root = tmp_path / "ds"
    build_dataset(["AAA", "BBB"], root, vocab=tok, source="synthetic")
    ds = TokenDataset(root, "train", context=16)
    rates = token_up_rates(ds, tok, prior_weight=2.0)
    assert rates is not None and rates.shape == (tok.vocab_size,)
    # By hand: per token, ups and counts over every stored candle.
    rows = read_split(root, "train")
    ups = np.zeros(tok.vocab_size)
    cnt = np.zeros(tok.vocab_size)
    for r in rows.iter_rows(named=True):
        ups[r["token"]] += float(r["close"] > r["prev_close"])
        cnt[r["token"]] += 1.0
    prior = up_mask(tok).astype(float)
    want = (ups + 2 * prior) / (cnt + 2)
    assert np.allclose(rates[N_SPECIAL:], want[N_SPECIAL:])
    assert ((rates >= 0) & (rates <= 1)).all()
    # A model carrying the rates forecasts with them; one without falls back to the signs.
    model = make_model(tok)
    assert np.array_equal(up_probability(model, tok), prior)
    model.meta["token_up_rate"] = rates.tolist()
    one = synthetic_bars(["AAA"], n_bars=60, seed=3)
    pr = predict_next(model, tok, one)
    assert pr.p_close_up == pytest.approx(float(pr.probs @ rates[N_SPECIAL:]))


def test_fan_chart_is_a_png(tmp_path: Path, bars: pl.DataFrame, tok: BinsTokenizer) -> None:
    from candletok.predict.plot import plot_fan

    one = bars.filter(pl.col("symbol") == "AAA")
    ctx = {k: one[k].to_numpy()[-30:] for k in ("open", "high", "low", "close")}
    toks = np.random.default_rng(0).integers(N_SPECIAL, tok.vocab_size, (20, 10))
    paths = tok.rebuild_paths(toks, float(ctx["close"][-1]), 0.01)
    out = plot_fan(ctx, paths, tmp_path / "fan.png", title="t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_train_generate_predict(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from candletok.cli import cmd_model  # noqa: F401
    from candletok.cli.app import app
    from candletok.dataset.build import build_dataset

    ds = tmp_path / "ds"
    build_dataset(["AAA", "BBB"], ds, scheme="bins", source="synthetic",
                  tokenizer_kwargs=dict(gap_bins=3, body_bins=3, upper_bins=2, lower_bins=2))
    run = CliRunner().invoke
    m = str(tmp_path / "m.pt")
    r = run(app, ["train", str(ds), "--steps", "6", "--context", "16", "--layers", "1",
                  "--width", "16", "--heads", "2", "--eval-every", "3", "--device", "cpu",
                  "--out", m])
    assert r.exit_code == 0, r.output
    assert "ngram-3" in r.output and ("does NOT beat" in r.output or "beats" in r.output)
    png = tmp_path / "fan.png"
    r = run(app, ["generate", "--model", m, "--dataset", str(ds), "--symbol", "AAA", "--n",
                  "5", "--samples", "8", "--plot", str(png)])
    assert r.exit_code == 0, r.output
    assert png.exists() and "P(end above last close)" in r.output
    r = run(app, ["predict", "AAA", "--model", m, "--source", "synthetic", "--dataset",
                  str(ds)])
    assert r.exit_code == 0, r.output
    assert "P(next close above this close)" in r.output
    assert f"has not measured this model on {ds}" in " ".join(r.output.split())
    # without --dataset the vocabulary comes from the checkpoint; JSON holds the table's rows
    r = run(app, ["predict", "AAA", "--model", m, "--source", "synthetic", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)["predictions"][0]  # one entry per symbol asked
    assert d["symbol"] == "AAA" and len(d["top"]) == 5
    assert d["p_close_up"] + d["p_close_down"] == pytest.approx(1.0)
    assert d["p_gap_up"] + d["p_gap_down"] + d["p_no_gap"] == pytest.approx(1.0)
    assert {"last_ts", "last_close", "scale", "exp_body_pct", "exp_range_pct",
            "context_candles"} <= set(d)
    r = run(app, ["generate", "--model", m, "--dataset", str(ds), "--symbol", "ZZZ"])
    assert r.exit_code != 0
    # the checkpoint knows the dataset's bar interval; other bars are refused
    from candletok.model.train import read_checkpoint

    assert read_checkpoint(m)["interval"] == "1d"
    r = run(app, ["predict", "AAA", "--model", m, "--source", "synthetic", "--interval", "5m"])
    assert r.exit_code != 0 and "trained on 1d bars" in str(r.exception)
    r = run(app, ["generate", "--model", m, "--dataset", str(ds), "--symbol", "aaa", "--n",
                  "2", "--samples", "2"])  # symbols are matched as every source writes them
    assert r.exit_code == 0, r.output


def test_the_ewma_scale_step_is_the_encoders_scale(bars: pl.DataFrame,
                                                  tok: BinsTokenizer) -> None:
    """The one EWMA step that generation and ``continue_series`` use reproduces the causal
    scale the encoder stores, bar after bar (up to float rounding)."""
    from candletok.tokenize.features import ewma_scale_step, floor_scale

    one = bars.filter(pl.col("symbol") == "AAA")
    h, lo, c = (one[k].to_numpy() for k in ("high", "low", "close"))
    enc = tok.encode(one)
    ew = np.log(h[0] / lo[0])  # a series' first bar seeds the EWMA with its own range
    got = []
    for t in range(1, one.height):
        got.append(float(floor_scale(ew, tok.features)))
        ew = ewma_scale_step(ew, h[t], lo[t], c[t - 1], tok.features)
    np.testing.assert_allclose(got, enc["scale"].to_numpy(), rtol=1e-12)
    last_close, next_scale = tok.continuation_state(one)["AAA"]
    assert last_close == c[-1]
    assert float(floor_scale(ew, tok.features)) == pytest.approx(next_scale, rel=1e-12)


def test_predict_shows_intraday_times_and_the_ticks_digits(tok: BinsTokenizer) -> None:
    """Hourly FX-like bars on a 0.00001 tick: the answer shows the bar's hour and five
    decimals (a date and four decimals would hide both)."""
    fx = synthetic_bars(["EURUSD"], n_bars=120, seed=3, interval="1h")
    fx = fx.with_columns(pl.col(c).mul(1e-3 * 1.1).round(5) for c in
                         ("open", "high", "low", "close"))
    fx = fx.with_columns(pl.max_horizontal("open", "high", "close").alias("high"),
                         pl.min_horizontal("open", "low", "close").alias("low"))
    pr = predict_next(make_model(tok), tok, fx)
    assert pr.decimals == 5 and pr.to_dict()["price_decimals"] == 5
    rows = dict(pr.rows())
    last = fx["ts"][-1]
    assert rows["last bar"] == f"{last:%Y-%m-%d %H:%M}" and rows["last close"].count(".") == 1
    assert rows["last close"] == f"{fx['close'][-1]:,.5f}"
    daily = predict_next(make_model(tok), tok, synthetic_bars(["AAA"], n_bars=120, seed=3))
    assert ":" not in dict(daily.rows())["last bar"]


def test_measured_check_reads_what_evaluate_recorded() -> None:
    """The test check is evaluate's record, read back field for field; a file without
    the record (or an older one without its scores) gives None, never a made-up check."""
    rec = {"n": 40, "skill": {"value": -0.02, "lo": -0.05, "hi": 0.01}, "verdict": "x",
           "brier": 0.255, "brier_base": 0.25, "base_rate": 0.53, "calibration": "platt",
           "reliability": [[0.4, 0.45, 0.5, 15], [0.5, 0.55, 0.6, 25]]}
    saved = {"model_forecaster": "CandleGPT",
             "evaluated": {"split": "test", "p_up": {"CandleGPT": {"1": rec}}}}
    cal = measured_check(saved)
    assert cal is not None
    assert (cal.split, cal.n, cal.brier, cal.brier_base, cal.base_rate) == (
        "test", 40, 0.255, 0.25, 0.53)
    assert cal.skill == pytest.approx(1 - 0.255 / 0.25)
    assert cal.skill_interval == (-0.05, 0.01) and cal.probability == "calibrated (platt)"
    assert [t[3] for t in cal.table] == [15, 25]
    assert measured_check(saved, horizon=5) is None
    assert measured_check(None) is None
    old = {"evaluated": {"split": "test", "p_up": {"CandleGPT": {"1": {"n": 3}}}}}
    assert measured_check(old) is None
