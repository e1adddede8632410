"""CandleLSTM, the recurrent baseline: its shapes and size against CandleGPT's, causality
(a later token never moves an earlier logit), the incremental forward exact to the full
one, a tiny training run through the same loop with its checkpoint round trip (the arch is
recorded and rebuilt), and the evaluation harness scoring it beside CandleGPT."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _helpers import COARSE, TINY_TRAIN_FLAGS, random_calendar_ids, run_main
from hypothesis import given, settings
from hypothesis import strategies as st

from candletok.core.errors import ModelError
from candletok.model.arch import TokenModel, build_model, checkpoint_arch
from candletok.model.gpt import CandleGPT, GPTConfig
from candletok.model.lstm import CandleLSTM, LSTMConfig, lstm_hidden
from candletok.tokenize.calendar import CalendarSpec

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

SPEC = CalendarSpec()
TINY = dict(steps=4, batch_size=4, context=16, n_layer=1, n_head=2, n_embd=16, eval_every=4,
            warmup_steps=1)


def random_lstm(vocab: int, context: int, n_layer: int, width: int, calendar: bool,
                n_features: int = 0, seed: int = 0) -> CandleLSTM:
    """A random LSTM whose final LayerNorm gain is one (a fresh one predicts only its bias,
    which would make any two forwards agree)."""
    torch.manual_seed(seed)
    m = CandleLSTM(LSTMConfig(vocab_size=vocab, context=context, n_layer=n_layer,
                              n_embd=width, dropout=0.0, n_features=n_features,
                              calendar=SPEC.to_dict() if calendar else None))
    torch.nn.init.ones_(m.ln_f.weight)
    torch.nn.init.normal_(m.head_bias)
    if n_features:
        m.set_token_features(torch.randn(vocab, n_features).numpy())
    return m.eval()


random_cal = random_calendar_ids  # the shared recipe (tests/_helpers.py)


def test_shapes_and_about_the_transformers_size() -> None:
    m = random_lstm(60, 12, 2, 16, calendar=True, n_features=4)
    assert isinstance(m, TokenModel)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(4, 60, (3, 12), generator=g)
    cal = random_cal((3, 12), g)
    logits, loss = m(x, x, cal=cal)
    assert logits.shape == (3, 12, 60) and loss is not None and loss.ndim == 0
    assert m.hidden(x, cal).shape == (3, 12, 16)
    p = m.next_token_probs(x, cal)
    assert p.shape == (3, 60) and torch.allclose(p.sum(-1), torch.ones(3, dtype=p.dtype))
    assert float(p[:, :4].abs().max()) == 0.0  # specials are never predicted
    with pytest.raises(ModelError, match="calendar"):
        m(x)  # a model with calendar inputs refuses to run without them
    with pytest.raises(ValueError, match="context"):
        m(torch.randint(4, 60, (1, 13)), cal=random_cal((1, 13), g))
    # the default width and depth: within 1% of CandleGPT's parameters on a real vocabulary
    for vocab in (300, 1000):
        kw = dict(vocab_size=vocab, n_features=5, calendar=SPEC.to_dict())
        gpt, lstm = CandleGPT(GPTConfig(**kw)), CandleLSTM(LSTMConfig(**kw))
        assert abs(lstm.num_params() / gpt.num_params() - 1) < 0.01
    assert lstm_hidden(64) == 84 and all(lstm_hidden(e) > e for e in range(1, 200))


def test_a_fresh_lstm_predicts_the_unigram() -> None:
    torch.manual_seed(0)
    m = CandleLSTM(LSTMConfig(vocab_size=20, context=8, n_embd=8)).eval()
    counts = torch.arange(20).float()
    m.init_output_bias(counts.numpy())
    logits = m(torch.randint(4, 20, (2, 8)))[0]
    assert torch.allclose(logits, m.head_bias.expand_as(logits))


@settings(max_examples=30, deadline=None)
@given(context=st.integers(2, 12), n_layer=st.integers(1, 3), calendar=st.booleans(),
       features=st.booleans(), seed=st.integers(0, 2**16), data=st.data())
def test_a_later_token_never_moves_an_earlier_logit(context: int, n_layer: int,
                                                    calendar: bool, features: bool,
                                                    seed: int, data: st.DataObject) -> None:
    m = random_lstm(30, context, n_layer, 8, calendar, 3 if features else 0, seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(4, 30, (2, context), generator=g)
    cal = random_cal((2, context), g) if calendar else None
    k = data.draw(st.integers(0, context - 1))
    y = x.clone()
    y[:, k] = 4 + (x[:, k] - 4 + data.draw(st.integers(1, 25))) % 26  # another candle
    cy = None
    if cal is not None:
        cy = cal.clone()
        cy[:, k:] = random_cal((2, context - k), g)  # and later calendar ids
    with torch.no_grad():
        a, b = m(x, cal=cal)[0], m(y, cal=cy if calendar else None)[0]
    assert torch.equal(a[:, :k], b[:, :k])
    assert not torch.allclose(a[:, k], b[:, k])  # the changed position itself does move


@settings(max_examples=20, deadline=None)
@given(context=st.integers(2, 10), calendar=st.booleans(), extra=st.integers(0, 8),
       seed=st.integers(0, 2**16), chunks=st.lists(st.integers(1, 5), min_size=1, max_size=6))
def test_the_incremental_forward_is_the_full_forward(context: int, calendar: bool, extra: int,
                                                     seed: int, chunks: list[int]) -> None:
    """forward_step carries the LSTM state within the context and reads the window again
    from a zero state once it slides, exactly what the cropped full forward reads."""
    m = random_lstm(25, context, 2, 8, calendar, seed=seed)
    g = torch.Generator().manual_seed(seed)
    T = context + extra
    x = torch.randint(4, 25, (2, T), generator=g)
    cal = random_cal((2, T), g) if calendar else None
    with torch.no_grad():
        want = [m(x[:, max(0, j - context + 1):j + 1],
                  cal=None if cal is None else cal[:, max(0, j - context + 1):j + 1])[0][:, -1]
                for j in range(T)]
        got, cache, a = [], None, 0
        for n in [*chunks, T]:
            b = min(T, a + n)
            if a == b:
                break
            lg, cache = m.forward_step(x[:, a:b], None if cal is None else cal[:, a:b], cache)
            got.extend(lg.unbind(1))
            a = b
    assert len(got) == T
    for w, h in zip(want, got, strict=True):
        assert torch.allclose(w, h, atol=1e-5)
    gcal = random_cal((2, context + 4), g) if calendar else None
    gen = [m.generate(x[:, :1], context + 3, generator=torch.Generator().manual_seed(1),
                      cal=gcal, use_cache=c) for c in (True, False)]
    assert torch.equal(gen[0], gen[1])  # past the context too: the same draws either way


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ds``, ``m.pt`` (CandleGPT) and ``lstm.pt`` (CandleLSTM), 4 steps each."""
    from candletok.data.synthetic import synthetic_bars
    from candletok.dataset.build import build_dataset
    from candletok.model.train import TrainConfig, train

    root = tmp_path_factory.mktemp("lstm")
    bars = root / "bars.parquet"  # hourly: the calendar inputs are on, as by default
    synthetic_bars(["AAA", "BBB"], n_bars=700, interval="1h", seed=3).write_parquet(bars)
    build_dataset(["AAA", "BBB"], root / "ds", source=str(bars), interval="1h",
                  tokenizer_params=COARSE)
    for arch, name in (("gpt", "m.pt"), ("lstm", "lstm.pt")):
        train(root / "ds", TrainConfig(arch=arch, **TINY), out=root / name, device="cpu")
    return root


def test_trains_by_the_same_loop_and_the_checkpoint_rebuilds_it(trained: Path) -> None:
    from candletok.model.checkpoint import load_model, read_checkpoint
    from candletok.model.train import TrainConfig, train

    ck = read_checkpoint(trained / "lstm.pt")
    assert ck["arch"] == "lstm" and ck["train_config"]["arch"] == "lstm"
    assert checkpoint_arch(read_checkpoint(trained / "m.pt")) == "gpt"
    m = load_model(trained / "lstm.pt")
    assert type(m) is CandleLSTM and m.calendar is not None  # synthetic hourly: calendar on
    assert ck["metrics"]["table"][0]["name"] == "CandleLSTM"
    again = build_model("lstm", ck["gpt_config"])
    again.load_state_dict(ck.get("best_model") or ck["model"])
    x = torch.randint(4, m.config.vocab_size, (2, 16))
    cal = torch.zeros(2, 16, 3, dtype=torch.long)
    with torch.no_grad():
        assert torch.equal(m(x, cal=cal)[0], again.eval()(x, cal=cal)[0])
    # a resume continues the LSTM run (its saved arch, not the default's)
    res = train(trained / "ds", TrainConfig(arch="lstm", **{**TINY, "steps": 6}),
                out=trained / "lstm.pt", device="cpu", resume=True)
    assert res.step == 6 and res.model_name == "CandleLSTM"
    assert type(load_model(trained / "lstm.pt")) is CandleLSTM


def test_an_unknown_arch_is_one_sentence(tmp_path: Path) -> None:
    from candletok.model.config import TrainConfig

    with pytest.raises(ModelError, match="arch must be one of gpt, lstm"):
        TrainConfig(arch="rnn").check()
    TrainConfig(arch="lstm", n_embd=30).check()  # an LSTM has no heads to divide its width
    with pytest.raises(ModelError, match="multiple"):
        TrainConfig(n_embd=30).check()
    with pytest.raises(ModelError, match="does not know"):
        checkpoint_arch({"arch": "mamba"})


def test_evaluate_scores_the_lstm_beside_candlegpt(trained: Path) -> None:
    from candletok.evaluation.evaluate import evaluate_forecasts

    rep = evaluate_forecasts(trained / "ds", str(trained / "m.pt"), horizons=(1, 2),
                             compare=[str(trained / "lstm.pt")], analogues=(), n_boot=20,
                             samples=4, subsample=8, save_calibration_map=False)
    for rows in (rep.direction, rep.range, rep.quantiles, rep.bits):
        names = {r.forecaster for r in rows}
        assert {"CandleGPT", "CandleLSTM"} <= names
    assert {(r.forecaster, r.horizon) for r in rep.quantiles} >= {("CandleLSTM", 2)}
    assert rep.calibration["model_forecaster"] == "CandleGPT"  # the answer stays --model
    # the same checkpoint compared with itself is told apart by its file's name, and the
    # answer is the --model one whatever its kind
    from candletok.evaluation.evaluate import Costly, _forecasters
    from candletok.model.checkpoint import load_model

    fcs = _forecasters(trained / "ds", str(trained / "lstm.pt"), (), (1,),
                       Costly(analogues=()), [str(trained / "lstm.pt"),
                                              load_model(trained / "m.pt")])
    roles = {f.name: getattr(f, "roles", frozenset()) for f in fcs}
    assert roles["CandleLSTM"] == {"answer"} and roles["CandleLSTM (lstm)"] == frozenset()
    assert roles["CandleGPT"] == frozenset()


def test_the_cli_trains_and_compares_it(trained: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    ds = str(trained / "ds")
    code, out, err = run_main(("train", ds, "--arch", "lstm", *TINY_TRAIN_FLAGS, "--out",
                               "l.pt"), tmp_path, capsys, monkeypatch)
    assert code == 0, err
    assert "CandleLSTM" in out and "parameters" in out
    code, out, err = run_main(("evaluate", ds, "--model", str(trained / "m.pt"), "--compare",
                               "l.pt", "--horizon", "1", "--analogues", "none"),
                              tmp_path, capsys, monkeypatch)
    assert code == 0, err
    assert "CandleLSTM" in out and "CandleGPT" in out
    code, out, err = run_main(("train", ds, "--arch", "rnn", "--out", "x.pt"), tmp_path,
                              capsys, monkeypatch)
    assert code != 0 and "--arch" in err and "gpt or lstm" in err
    assert not (tmp_path / "x.pt").exists()
