"""`candletok similar` and `candletok motifs` as a user runs them, the model mode against
a brute-force search over hidden states, and queries from bars."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch
from _helpers import cli_subprocess, run_main

from candletok.core.errors import CandletokError, ModelError
from candletok.data.synthetic import synthetic_bars
from candletok.dataset.build import build_dataset
from candletok.model.checkpoint import CHECKPOINT_FORMAT, save_checkpoint
from candletok.model.gpt import CandleGPT, GPTConfig
from candletok.search.index import index_dir, open_index
from candletok.search.similar import similar
from candletok.search.timerule import Cut, TimeRule

PARAMS = {"gap_bins": 3, "body_bins": 3, "upper_bins": 2, "lower_bins": 2}


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The command in a fresh interpreter running this checkout (not an installed copy)."""
    return cli_subprocess(*args, cwd=cwd)


def run_cli(args: tuple[str, ...], cwd: Path, capsys: pytest.CaptureFixture[str],
            monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    """The console script's entry point in this process (exit code, stdout, stderr)."""
    return run_main(args, cwd, capsys, monkeypatch)


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("search-cli")
    bars = synthetic_bars(["AA", "BB", "CC"], n_bars=400, seed=11)

    def loader(symbols: list[str], **_: Any) -> pl.DataFrame:
        return bars.filter(pl.col("symbol").is_in(symbols))

    build_dataset(["AA", "BB", "CC"], work / "ds", loader=loader, tokenizer_params=PARAMS)
    return work


def test_similar_and_motifs_print_tables_and_draw(ds: Path) -> None:
    r = cli("similar", "AA", "--dataset", "ds", "--last", "3", "--plot", "s.png",
            "--matches", "3", cwd=ds)
    assert r.returncode == 0, r.stderr
    for text in ("P(close up after h bars)", "base P(up)", "raw binomial p",
                 "most recent matches", "next candle's range", "chart: s.png",
                 "3 horizons tested at once"):
        assert text in r.stdout, text
    # one verdict first: the val-replayed (calibrated) one, then the raw tables, labelled
    out = r.stdout
    assert "calibrated P(close up" in out
    assert out.index("calibrated P(close up") < out.index("raw: P(close up after h bars)")
    png = (ds / "s.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_motifs_table(ds: Path, capsys: pytest.CaptureFixture[str],
                      monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run_cli(("motifs", "ds", "--n", "2", "--top", "5", "--horizon", "1,3"),
                             ds, capsys, monkeypatch)
    assert code == 0, err
    assert "Benjamini-Hochberg" in out and "base rate (every window)" in out


def test_similar_json_respects_at(ds: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    code, text, err = run_cli(("similar", "BB", "--dataset", "ds", "--last", "4", "--mode",
                               "nearest", "--at", "2000-09-01", "--top", "7", "--json"),
                              ds, capsys, monkeypatch)
    assert code == 0, err
    out = json.loads(text)
    T = out["summary"]["T"]
    assert T <= "2000-09-01T00:00:00+00:00" and out["summary"]["mode"] == "nearest"
    assert len(out["matches"]) == 7 and all(m["end"] < T for m in out["matches"])
    assert {o["who"] for o in out["outcomes"]} == {"matches", "base"}


def test_bad_inputs_are_one_sentence(ds: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for args, words in (
        (("similar", "ZZ", "--dataset", "ds"), "not in the dataset"),
        (("similar", "AA", "--dataset", "ds", "--mode", "fuzzy"), "--mode"),
        (("similar", "AA", "--dataset", "ds", "--mode", "model"), "--model"),
        (("similar", "AA", "--dataset", "ds", "--horizon", "soon"), "--horizon"),
        (("similar", "AA", "--dataset", "ds", "--last", "100000"), "only"),
        (("motifs", "missing-dir"), "not a dataset folder"),
    ):
        code, _, err = run_cli(args, ds, capsys, monkeypatch)
        assert code != 0, args
        assert words in err and "Traceback" not in err, (args, err)


def tiny_model(path: Path, vocab_size: int, fingerprint: str) -> CandleGPT:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=vocab_size, context=16, n_layer=1, n_head=2, n_embd=16,
                    dropout=0.0)
    model = CandleGPT(cfg).eval()
    # a fresh CandleGPT's final LayerNorm gain is zero (it starts at the unigram), so every
    # hidden state would be the same vector and any order of windows would pass as "nearest"
    torch.nn.init.normal_(model.transformer.ln_f.weight)
    save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "gpt_config": cfg.to_dict(),
                           "model": model.state_dict(), "fingerprint": fingerprint})
    return model


def test_model_mode_equals_brute_force_over_hidden_states(ds: Path) -> None:
    root = ds / "ds"
    idx = open_index(root)
    tok = idx.tokenizer()
    model = tiny_model(ds / "m.pt", tok.vocab_size, tok.fingerprint)
    n, k = 4, 6
    res = similar(root, "CC", last=n, mode="model", model=ds / "m.pt", top=k,
                  horizons=(1, 3))
    assert list(index_dir(root).glob("model-*-n4.npy"))  # vectors cached beside the index
    # the reference: every eligible window through the model, sorted, thinned greedily
    s = idx.symbols.index("CC")
    q_end = int(idx.starts[s + 1]) - 1
    cut = Cut.of(idx, TimeRule(int(idx.ts[q_end]), n, (1, 3), s, q_end))
    e = cut.all_eligible()
    lags = np.arange(n - 1, -1, -1)
    with torch.no_grad():
        win = torch.from_numpy(np.asarray(idx.tokens[e[:, None] - lags]).astype(np.int64))
        h = model.hidden(win)[:, -1, :].numpy().astype(np.float64)
        q = model.hidden(torch.from_numpy(np.asarray(
            idx.tokens[q_end - n + 1 : q_end + 1]).astype(np.int64))[None])[0, -1].numpy()
    d = ((h - q.astype(np.float64)) ** 2).sum(axis=1)
    assert np.unique(d).size > 10 * k  # distances that tell windows apart
    kept: list[int] = []
    for i in np.lexsort((e, d)).tolist():
        if all(idx.sid[e[i]] != idx.sid[j] or abs(int(e[i]) - int(j)) >= cut.rule.zone
               for j in kept):
            kept.append(int(e[i]))
        if len(kept) == k:
            break
    assert res._e.tolist() == kept
    want = [d[np.flatnonzero(e == x)[0]] for x in kept]
    assert np.allclose(res.matches["distance"].to_numpy(), want, rtol=1e-5)
    # a model trained on another vocabulary is refused
    tiny_model(ds / "other.pt", tok.vocab_size, "0" * 16)
    with pytest.raises(ModelError, match="vocabulary"):
        similar(root, "CC", last=n, mode="model", model=ds / "other.pt")
    pytest.importorskip("faiss")
    approx = similar(root, "CC", last=n, mode="model", model=ds / "m.pt", top=k,
                     horizons=(1, 3), approximate=True)
    assert len(set(approx._e.tolist()) & set(kept)) >= k - 1  # HNSW: near-perfect recall


def test_query_from_bars_uses_only_bars_up_to_at(ds: Path) -> None:
    root = ds / "ds"
    bars = synthetic_bars(["CC"], n_bars=400, seed=11)
    at = bars["ts"][300]
    res = similar(root, bars, last=3, mode="nearest", at=at, top=5, horizons=(1, 2))
    assert res.summary["origin"] == "bars" and res.summary["T"] == at.isoformat()
    # the same bars, all of them after `at` removed: the same answer
    again = similar(root, bars.filter(pl.col("ts") <= at), last=3, mode="nearest", top=5,
                    horizons=(1, 2))
    assert again._e.tolist() == res._e.tolist()
    with pytest.raises(CandletokError, match="one symbol"):
        similar(root, synthetic_bars(["AA", "BB"], n_bars=50), last=3)
