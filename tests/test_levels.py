"""Level inputs beside the token (issue 22): causal, stepped live as computed in bulk, read
by every path that runs the model, recorded in the checkpoint, and off is today's model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers import run_main, trained_on_synthetic
from hypothesis import given, settings
from hypothesis import strategies as st

from candletok.core.errors import ModelError
from candletok.model.gpt import CandleGPT, GPTConfig
from candletok.tokenize.levels import N_LEVELS, LevelState, level_inputs

BARS = st.lists(st.tuples(st.floats(0.5, 2.0), st.floats(0.0, 0.05), st.floats(0.0, 0.05),
                          st.floats(0.005, 0.05)), min_size=2, max_size=40)


def _cols(rows: list[tuple[float, float, float, float]]) -> tuple[np.ndarray, ...]:
    """high, low, prev_close, scale of bars around a previous close of 100 * m."""
    m, up, dn, sc = (np.array(c) for c in zip(*rows, strict=True))
    pc = 100.0 * m
    return pc * np.exp(up), pc * np.exp(-dn), pc, sc


@settings(max_examples=40, deadline=None)
@given(rows=BARS, cut=st.integers(1, 39), bump=st.floats(0.2, 5.0))
def test_level_inputs_are_causal_and_stepped_alike(rows, cut, bump) -> None:  # type: ignore[no-untyped-def]
    """Changing a later bar never moves an earlier row; stepping gives the bulk rows."""
    h, lo, pc, sc = _cols(rows)
    n = h.size
    cut = min(cut, n - 1)
    ref = level_inputs(h, lo, pc, sc, np.array([n]))
    h2, sc2 = h.copy(), sc.copy()
    h2[cut:] *= np.exp(bump * 0.01)
    sc2[cut:] *= bump
    got = level_inputs(h2, lo, pc, sc2, np.array([n]))
    assert np.array_equal(got[:cut], ref[:cut])
    st_ = LevelState()
    stepped = np.stack([st_.step(*(float(a[i]) for a in (h, lo, pc, sc))) for i in range(n)])
    np.testing.assert_allclose(stepped, ref, rtol=1e-9, atol=1e-12)
    _, after = LevelState.after(h[:cut], lo[:cut], pc[:cut], sc[:cut])
    nxt = after.step(float(h[cut]), float(lo[cut]), float(pc[cut]), float(sc[cut]))
    np.testing.assert_allclose(nxt, ref[cut], rtol=1e-9, atol=1e-12)


def test_series_restart_and_shape() -> None:
    h, lo, pc, sc = _cols([(1.0, 0.01, 0.01, 0.01)] * 6)
    two = level_inputs(h, lo, pc, sc, np.array([3, 3]))
    assert two.shape == (6, N_LEVELS)
    np.testing.assert_array_equal(two[:3], two[3:])  # each series starts afresh


def _model(levels: int, seed: int = 0) -> CandleGPT:
    torch.manual_seed(seed)
    m = CandleGPT(GPTConfig(vocab_size=12, context=16, n_layer=1, n_head=2, n_embd=16,
                            levels=levels))
    torch.nn.init.normal_(m.transformer.ln_f.weight)  # not the zero start: logits move
    return m.eval()


@settings(max_examples=25, deadline=None)
@given(t=st.integers(1, 15), seed=st.integers(0, 3))
def test_a_later_input_never_changes_an_earlier_logit(t, seed) -> None:  # type: ignore[no-untyped-def]
    m = _model(N_LEVELS)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(4, 12, (1, 16), generator=g)
    lv = torch.randn(1, 16, N_LEVELS, generator=g)
    ref = m(idx, lv=lv)[0]
    lv2, idx2 = lv.clone(), idx.clone()
    lv2[:, t:] += 3.0
    idx2[:, t:] = 4 + (idx2[:, t:] - 3) % 8
    got = m(idx2, lv=lv2)[0]
    assert torch.equal(got[:, :t], ref[:, :t])
    assert not torch.equal(got[:, t:], ref[:, t:])  # the inputs do reach the model


def test_off_is_todays_model_and_on_needs_the_inputs() -> None:
    off, on = _model(0), _model(N_LEVELS)
    assert not any("lv_proj" in k for k in off.state_dict())
    on.load_state_dict(off.state_dict(), strict=False)
    with torch.no_grad():
        on.lv_proj.weight.zero_()  # type: ignore[union-attr]
    idx = torch.randint(4, 12, (2, 10))
    lv = torch.randn(2, 10, N_LEVELS)
    assert torch.equal(on(idx, lv=lv)[0], off(idx)[0])  # exact: the inputs add zeros
    assert torch.equal(off(idx, lv=lv)[0], off(idx)[0])  # off ignores them
    with pytest.raises(ModelError, match="level inputs"):
        on(idx)
    # the cache and generation read them too: incremental equals the full forward
    lg, cache = on.forward_step(idx[:, :4], None, None, lv[:, :4])
    lg2, _ = on.forward_step(idx[:, 4:], None, cache, lv[:, 4:])
    torch.testing.assert_close(torch.cat([lg, lg2], 1), on(idx, lv=lv)[0])
    assert on.generate(idx, 3, lv=lv).shape == (2, 13)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("levels")
    trained_on_synthetic(root, levels=True)
    return root


def test_tiny_train_records_the_flag_and_scores(work: Path) -> None:
    from candletok.dataset.torchdata import TokenDataset
    from candletok.model.checkpoint import load_model
    from candletok.model.evaluate import evaluate_sums

    m = load_model(work / "m.pt")
    assert m.config.levels == N_LEVELS and m.meta["train_config"]["levels"] is True
    ds = TokenDataset(work / "ds", "val", context=16, levels=True)
    x, _y, lv = ds.batch(np.arange(min(4, len(ds))))
    assert lv.shape == (*x.shape, N_LEVELS) and np.all(lv[x == 0] == 0)  # PAD: zeros
    bits, n = evaluate_sums(m, ds)
    assert n > 0 and np.isfinite(bits)


def test_updates_equal_predict_with_levels(work: Path) -> None:
    """Predictor.update's live level state gives predict's answer on the bars so far."""
    from test_live import assert_same, walk

    from candletok.predict.predictor import Predictor

    p = Predictor.from_checkpoint(work / "m.pt", work / "ds")
    bars = walk(30, 3)
    for a, b in zip(p.start(bars.head(6)), p.predict(bars.head(6)), strict=True):
        assert_same(a, b)
    for i in range(6, 30):
        got = p.update(bars.row(i, named=True))
        assert_same(got[0], p.predict(bars.head(i + 1))[0])


def test_generate_passes_them_and_odds_refuse(work: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """`generate` samples from a levels model; `predict --odds` refuses it in one sentence."""
    code, out, err = run_main(("generate", "--model", str(work / "m.pt"), "--dataset",
                               str(work / "ds"), "--symbol", "AAA", "--n", "3", "--samples",
                               "4"), work, capsys, monkeypatch)
    assert code == 0, err
    code, out, err = run_main(("predict", "AAA", "--model", str(work / "m.pt"), "--source",
                               "synthetic", "--odds", "1"), work, capsys, monkeypatch,
                              CANDLETOK_OFFLINE="1", CANDLETOK_CACHE=str(work / "cache"))
    assert code != 0 and "level inputs" in err, (out, err)
