"""Calendar inputs through CandleGPT: the model, the data that feeds it, causality, the
commands that train and use it on hourly synthetic data, and checkpoints from before
calendar inputs existed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from candletok.core.errors import ModelError
from candletok.core.ids import BOS, PAD
from candletok.dataset.manifest import read_split
from candletok.dataset.torchdata import TokenDataset, TokenStream
from candletok.model.checkpoint import load_model, read_checkpoint, save_checkpoint
from candletok.model.config import CALENDAR_AUTO_DAILY, calendar_spec
from candletok.model.gpt import CandleGPT, GPTConfig
from candletok.model.sampler import WindowSampler
from candletok.tokenize.calendar import CalendarSpec, calendar_ids, calendar_layout

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

SPEC = CalendarSpec()
SMALL = ["--steps", "6", "--context", "16", "--layers", "1", "--width", "16", "--heads", "2",
         "--eval-every", "3", "--batch", "8", "--device", "cpu"]


def tiny(calendar: bool = True, context: int = 16, seed: int = 0) -> CandleGPT:
    torch.manual_seed(seed)
    m = CandleGPT(GPTConfig(vocab_size=12, context=context, n_layer=2, n_head=2, n_embd=16,
                            dropout=0.0, calendar=SPEC.to_dict() if calendar else None))
    torch.nn.init.ones_(m.transformer.ln_f.weight)  # as trained: logits depend on the input
    return m.eval()


def random_cal(shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    """Ids drawn from every table, unknown ids included."""
    cols = [torch.randint(0, n + 1, (*shape, 1), generator=g) for n in SPEC.sizes]
    return torch.cat(cols, dim=-1)


def test_forward_with_and_without_calendar_inputs() -> None:
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(4, 12, (3, 10), generator=g)
    cal = random_cal((3, 10), g)
    m = tiny()
    logits, _ = m(idx, cal=cal)
    assert logits.shape == (3, 10, 12)
    other = cal.clone()
    other[:, :, 0] = (other[:, :, 0] + 7) % SPEC.sizes[0]
    assert not torch.allclose(m(idx, cal=other)[0], logits)  # the ids are read
    assert m.hidden(idx, cal).shape == (3, 10, 16)
    with pytest.raises(ModelError, match="calendar"):
        m(idx)
    with pytest.raises(ValueError, match="shape"):
        m(idx, cal=cal[..., :2])
    plain = tiny(calendar=False)
    assert torch.equal(plain(idx)[0], plain(idx, cal=cal)[0])  # no calendar: cal ignored
    assert plain.calendar is None and m.calendar == SPEC
    assert plain.num_params() < m.num_params()
    # the config round-trips; one written before the field existed is calendar off
    d = m.config.to_dict()
    assert GPTConfig.from_dict(d).calendar == SPEC.to_dict()
    d.pop("calendar")
    assert GPTConfig.from_dict(d).calendar is None


def test_generate_reads_the_ids_of_the_bars_to_come() -> None:
    g = torch.Generator().manual_seed(1)
    m = tiny(context=8)
    idx = torch.randint(4, 12, (4, 5), generator=g)
    cal = random_cal((4, 5 + 9), g)
    out = m.generate(idx, 9, cal=cal, generator=torch.Generator().manual_seed(0))  # past context
    assert out.shape == (4, 14) and torch.equal(out[:, :5], idx)
    again = m.generate(idx, 9, cal=cal, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    with pytest.raises(ModelError, match="generated bars"):
        m.generate(idx, 9, cal=cal[:, :10])
    p = m.next_token_probs(idx, cal[:, :5])
    assert torch.allclose(p.sum(-1), torch.ones(4))


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(0, 400), min_size=12, max_size=12),
       st.lists(st.integers(4, 11), min_size=12, max_size=12),
       st.integers(1, 10), st.integers(1, 100_000))
def test_changing_later_bars_never_changes_earlier_ids_or_logits(
        gaps: list[int], toks: list[int], t: int, shift: int) -> None:
    """Calendar ids come from each candle's own time, and attention is causal: a
    different future (later tokens and later times) leaves every id and every logit at
    or before t as it was."""
    m = tiny()
    us = (1_700_000_000 + np.cumsum(np.array(gaps) * 3600 + 1)) * 1_000_000
    ts = pl.Series("ts", us).cast(pl.Datetime("us", "UTC"))
    later = us.copy()
    later[t:] += shift * 60_000_000  # the bars after t move (and stay in order)
    ts2 = pl.Series("ts", later).cast(pl.Datetime("us", "UTC"))
    a = calendar_layout(ts, np.array([12]), SPEC)
    b = calendar_layout(ts2, np.array([12]), SPEC)
    assert np.array_equal(a[: t + 1], b[: t + 1])  # BOS + candles 0..t-1
    x = torch.tensor([[BOS, *toks]])[:, :12]
    x2 = x.clone()
    x2[0, t + 1:] = (x2[0, t + 1:] - 4 + 3) % 8 + 4
    la = m(x, cal=torch.from_numpy(a[:12].astype(np.int64))[None])[0]
    lb = m(x2, cal=torch.from_numpy(b[:12].astype(np.int64))[None])[0]
    assert torch.allclose(la[:, : t + 1], lb[:, : t + 1], atol=1e-6)


def test_auto_turns_calendar_inputs_on_for_intraday_bars() -> None:
    assert calendar_spec("auto", "1h") == CalendarSpec()
    assert calendar_spec("auto", "5m", "Europe/London") == CalendarSpec("Europe/London")
    assert calendar_spec("auto", "1d") == (CalendarSpec("UTC") if CALENDAR_AUTO_DAILY else None)
    assert calendar_spec("on", "1d") == CalendarSpec("UTC")  # daily bars are stamped 00:00 UTC
    assert calendar_spec("auto", None) is None and calendar_spec("off", "1h") is None
    with pytest.raises(ModelError, match="auto, on, off"):
        calendar_spec("yes", "1h")


# ---- hourly synthetic data, from the command line ----------------------------------------
def invoke(*args: str) -> str:
    from candletok.cli import commands  # noqa: F401  (registers every command)
    from candletok.cli.app import app

    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == 0, (args, r.output, r.exception)
    return r.output


@pytest.fixture(scope="module")
def hourly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An hourly synthetic dataset (U-shaped intraday volatility), a model trained on it
    with calendar inputs and one without."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("hourly")
    invoke("encode", "AAA", "BBB", "--source", "synthetic", "--interval", "1h",
           "--bins", "3,3,2,2", "--out", str(root / "ds"))
    out = invoke("train", str(root / "ds"), *SMALL, "--calendar", "on", "--out",
                 str(root / "cal.pt"))
    assert "calendar inputs (America/New_York)" in out
    out = invoke("train", str(root / "ds"), *SMALL, "--calendar", "off", "--out",
                 str(root / "plain.pt"))
    assert "no calendar inputs" in out
    return root


def test_the_checkpoint_records_the_calendar(hourly: Path) -> None:
    ck = read_checkpoint(hourly / "cal.pt")
    assert ck["gpt_config"]["calendar"] == SPEC.to_dict()
    assert ck["train_config"]["calendar"] == "on"
    assert read_checkpoint(hourly / "plain.pt")["gpt_config"]["calendar"] is None
    m = load_model(hourly / "cal.pt")
    assert m.calendar == SPEC and m.cal_emb is not None
    # a resumed run keeps its calendar inputs (the saved configuration wins)
    shutil.copy(hourly / "cal.pt", hourly / "resumed.pt")
    invoke("train", str(hourly / "ds"), "--out", str(hourly / "resumed.pt"), "--resume",
           "--steps", "8", "--patience", "0", "--calendar", "off")
    ck = read_checkpoint(hourly / "resumed.pt")
    assert ck["step"] == 8 and ck["gpt_config"]["calendar"] == SPEC.to_dict()


def test_datasets_give_each_input_its_own_candles_ids(hourly: Path) -> None:
    ds = TokenDataset(hourly / "ds", "train", context=16, calendar=SPEC)
    rows = read_split(hourly / "ds", "train")
    own = calendar_ids(rows["ts"], SPEC)  # ids of every row, by hand
    lens = ds.bounds[:, 1] - ds.bounds[:, 0] - 1
    row_of = np.full(ds.tokens.shape[0], -1)  # flat position -> row (BOS: -1)
    series = np.repeat(np.arange(lens.size), lens)
    row_of[np.arange(series.size) + series + 1] = np.arange(series.size)
    ids = np.array([0, 5, len(ds) - 1])
    x, _, cal = ds.batch(ids)
    assert cal.shape == (3, 16, 3) and cal.dtype == np.int64
    pos = ds.starts[ids][:, None] + np.arange(16)[None, :]
    r = row_of[pos]
    real = (x != PAD) & (r >= 0)
    assert np.array_equal(cal[real], own[r[real]])
    assert (cal[x == BOS] == SPEC.unknown).all()
    assert np.array_equal(TokenDataset(hourly / "ds", "train", context=16).batch(ids)[0], x)
    item = ds[5]
    assert len(item) == 3 and torch.equal(item[2], torch.from_numpy(cal[1]))
    loader = torch.utils.data.DataLoader(ds, batch_size=4)
    assert [t.shape for t in next(iter(loader))] == [(4, 16), (4, 16), (4, 16, 3)]
    stream = TokenStream(hourly / "ds", "train", context=16, calendar=SPEC)
    assert len(next(iter(stream))) == 3
    assert len(next(iter(TokenStream(hourly / "ds", "train", context=16)))) == 2
    # training windows: random starts, the same rule, and ranks share the batch
    sampler = WindowSampler(ds, 16, SPEC)
    sx, _, sc = sampler.batch(0, 3, 8)
    one = [sampler.batch(0, 3, 8, rank, 2) for rank in range(2)]
    assert np.array_equal(np.concatenate([b[2] for b in one]), sc)
    assert ((sc == SPEC.unknown).all(-1) == ((sx == BOS) | (sx == PAD))).all()


def test_evaluate_predict_generate_and_similar_read_the_calendar(hourly: Path) -> None:
    ds, m = str(hourly / "ds"), str(hourly / "cal.pt")
    out = invoke("evaluate", ds, "--model", m, "--horizon", "1,3", "--samples", "4",
                 "--subsample", "8", "--analogues", "model", "--analogue-subsample", "8",
                 "--json")
    rep = json.loads(out)
    gpt = [r for r in rep["direction"] if r["forecaster"] == "CandleGPT"]
    assert {r["horizon"] for r in gpt} == {1, 3} and all(r["n"] > 0 for r in gpt)
    bits = {r["forecaster"]: r["bits"]["value"] for r in rep["bits"]}
    assert np.isfinite(bits["CandleGPT"])
    assert any(r["forecaster"] == "model analogues" and r["n"] > 0 for r in rep["direction"])
    out = invoke("predict", "AAA", "--model", m, "--source", "synthetic", "--dataset", ds,
                 "--json")  # --dataset: the test split's calibration, through the windows
    rep = json.loads(out)
    p = rep["predictions"][0]
    assert p["p_close_up"] + p["p_close_down"] == pytest.approx(1.0)
    assert rep["calibration"]["n"] > 0
    out = invoke("generate", "--model", m, "--dataset", ds, "--symbol", "AAA", "--n", "9",
                 "--samples", "4")
    assert "P(end above last close)" in out
    out = invoke("similar", "AAA", "--dataset", ds, "--mode", "model", "--model", m,
                 "--last", "4", "--top", "3")
    assert "mode model" in out


def test_the_time_of_day_moves_the_forecast(hourly: Path) -> None:
    """predict reads the bars' own times: the same candles stamped at other hours of the
    session give another next-candle distribution (and the model without calendar inputs
    gives the same one)."""
    from candletok.data.sources import load_bars
    from candletok.predict.predict import predict_next

    bars = load_bars(["AAA"], source="synthetic", interval="1h").tail(40)
    moved = bars.with_columns(pl.col("ts") + pl.duration(hours=2))
    for name, differs in (("cal.pt", True), ("plain.pt", False)):
        m = load_model(hourly / name)
        tok = TokenDataset(hourly / "ds", "train", context=16).tokenizer()
        a, b = predict_next(m, tok, bars).probs, predict_next(m, tok, moved).probs
        assert (not np.allclose(a, b)) == differs, name


def test_bad_calendar_flags_are_one_sentence(hourly: Path) -> None:
    from candletok.cli import commands  # noqa: F401
    from candletok.cli.app import app

    for args, words in ((["--calendar", "maybe"], "--calendar"),
                        (["--calendar-tz", "Mars/Olympus"], "time zone")):
        r = CliRunner().invoke(app, ["train", str(hourly / "ds"), *SMALL, *args, "--out",
                                     str(hourly / "x.pt")])
        assert r.exit_code != 0
        assert words in r.output + str(r.exception)


def test_a_checkpoint_from_before_calendar_inputs_loads_and_predicts(hourly: Path) -> None:
    """Strip every calendar field from a saved checkpoint (the shape older versions
    wrote): it loads as a model without calendar inputs and still predicts."""
    ck = torch.load(hourly / "plain.pt", weights_only=True)
    del ck["gpt_config"]["calendar"]
    for k in ("calendar", "calendar_tz"):
        del ck["train_config"][k]
    old = hourly / "old.pt"
    save_checkpoint(old, ck)
    m = load_model(old)
    assert m.calendar is None and m.cal_emb is None
    out = invoke("predict", "AAA", "--model", str(old), "--source", "synthetic", "--json")
    assert json.loads(out)["predictions"][0]["symbol"] == "AAA"
    invoke("generate", "--model", str(old), "--dataset", str(hourly / "ds"), "--symbol",
           "AAA", "--n", "3", "--samples", "2")


def test_the_predictor_at_t_equals_the_forecasts_row_with_calendar_inputs(
        hourly: Path) -> None:
    """Shown = scored holds for a model that reads calendar ids (hourly bars): the
    Predictor's raw numbers at T are the evaluation's row at T, bit for bit."""
    from candletok.evaluation.evaluate import evaluate_forecasts
    from candletok.predict.predictor import Predictor

    rep = evaluate_forecasts(hourly / "ds", hourly / "cal.pt", horizons=(1,), analogues=(),
                             n_boot=20, save_calibration_map=False, keep_forecasts=True)
    rows = rep.forecasts.filter(pl.col("forecaster") == "CandleGPT")
    pred = Predictor.from_checkpoint(hourly / "cal.pt", hourly / "ds")
    assert pred.model.calendar == SPEC
    for k in (0, rows.height // 3, rows.height - 1):
        row = rows.row(k, named=True)
        a = pred.predict(row["symbol"], at=row["origin"], winners=False)[0]  # the model own
        assert a.origin == row["origin"]
        assert (a.p_up_raw, a.range_raw, a.quantiles["q10"], a.quantiles["q90"]) == (
            row["p_up_raw"], row["range_raw"], row["q10"], row["q90"])
