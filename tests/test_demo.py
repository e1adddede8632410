"""The demo pipeline on the real bundled sample, shrunk to a tiny model and few steps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from candletok.core.errors import CandletokError
from candletok.dataset.manifest import read_split, verify_dataset
from candletok.demo import MARKER, DemoConfig, run_demo
from candletok.model.train import TrainConfig


def tiny(out: Path) -> DemoConfig:
    return DemoConfig(
        out=out, symbols=("AAPL", "IBM"), device="cpu", samples=6, horizon=4, eval_boot=200,
        train=TrainConfig(steps=4, eval_every=2, context=32, n_layer=1, n_head=2, n_embd=16,
                          batch_size=8, eval_windows=16),
    )


def test_demo_writes_every_file_and_reruns(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    r = run_demo(tiny(out))
    names = {p.name for _, p in r.files}
    assert names == {"data", "vocab.json", "model.pt", "fan.png", "summary.md",
                     "reliability.png", "model.calibration.json", "report.html"}
    for _, p in r.files:
        assert p.exists(), p
    for png in ("fan.png", "reliability.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    verify_dataset(out / "data")
    # Splits as documented: nothing in train on or after val_from, test from test_from.
    bounds = r.encode.manifest["boundaries"]
    assert bounds["val_from"].startswith("2011-01-01") and bounds["test_from"][:10] == "2012-01-01"
    text = (out / "summary.md").read_text()
    for s in r.train.table:  # every score in the summary, as printed
        assert f"| {s.name} | {s.val:.4f} | {s.test:.4f} |" in text
    assert r.train.summary in text and "Brier" in text
    # the evaluate harness on the demo's data and model: h = 1, cheap forecasters + CandleGPT
    rep = r.evaluation
    assert rep is not None and rep.split == "test" and rep.horizons == (1,)
    who = {row.forecaster for row in rep.direction}
    assert {"base rate", "CandleGPT"} <= who and not any("analogues" in w for w in who)
    assert {row.forecaster for row in rep.range} >= {"EWMA", "HistVol20", "CandleGPT"}
    assert "## How good are the forecasts?" in text and "![reliability diagram" in text
    gpt = next(row for row in rep.direction if row.forecaster == "CandleGPT")
    assert f"{gpt.skill.value:+.4f} [{gpt.skill.lo:+.4f}, {gpt.skill.hi:+.4f}]" in text
    assert gpt.verdict in text and "Not run in the demo" in text
    assert r.prediction.symbol == "AAPL"
    # the interactive report: linked from the summary, with the demo's evaluate tables
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "[report.html](report.html)" in text and "AAPL at " in page
    assert "P(close up at t+h): Brier skill vs the base rate" in page and gpt.verdict in page
    assert abs(float(r.prediction.probs.sum()) - 1.0) < 1e-6
    assert r.continuation.paths["close"].shape == (6, 4)
    # Beside the fan, what evaluate measured of direction (issue 20, item 9): h = 4 never,
    # h = 1 on test; and the test check's one base rate is the train split's (item 8).
    cav = r.continuation.caveat
    assert "h=4 was never measured" in cav and "at h=1:" in cav and "on test (Brier" in cav
    assert cav in text and ("direction skill", cav) in r.continuation.summary()
    assert r.calibration.base_split == "train"
    # The fan chart draws the real bars the dataset stores, not bars rebuilt from tokens.
    rows = read_split(out / "data", "test").filter(pl.col("symbol") == "AAPL")
    assert r.continuation.history == "real bars from the dataset"
    for k in ("open", "high", "low", "close", "volume"):
        assert np.array_equal(r.continuation.context[k], rows[k].to_numpy()), k
    assert r.continuation.last_close == rows["close"][-1]
    # A second run replaces the first one's files instead of refusing or mixing them.
    (out / "model.pt").write_bytes(b"stale")
    r2 = run_demo(tiny(out))
    assert (out / "model.pt").read_bytes() != b"stale"
    assert r2.encode.manifest["fingerprint"] == r.encode.manifest["fingerprint"]


def test_demo_refuses_a_folder_it_did_not_write(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(CandletokError, match="did not write"):
        run_demo(tiny(out))
    assert (out / "thesis.tex").read_text() == "precious"
    assert not (out / MARKER).exists()
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(CandletokError, match="is a file"):
        run_demo(tiny(f))


def test_cli_demo_runs_offline(tmp_path: Path) -> None:
    env = {**os.environ, "CANDLETOK_OFFLINE": "1", "COLUMNS": "200"}
    out = tmp_path / "d"
    r = subprocess.run(
        [sys.executable, "-m", "candletok.cli.main", "demo", "--out", str(out), "--steps", "3",
         "--device", "cpu"], capture_output=True, text=True, env=env, timeout=600,
    )
    assert r.returncode == 0, r.stderr
    for needle in ("bits per candle", "unigram", "ngram-3", "next candle", "Brier",
                   "sampled continuations", str(out / "fan.png"), "candletok evaluate",
                   "skill vs base", "HistVol20", "forecasters run:", "reliability of CandleGPT",
                   str(out / "reliability.png"), str(out / "report.html")):
        assert needle in r.stdout, needle
    assert (out / "summary.md").exists() and (out / "model.pt").exists()
    assert "next: candletok predict" in r.stderr  # what to run after the demo
    assert "done step 3/3" in r.stderr and "encode done" in r.stderr  # plain lines in a log
    bad = subprocess.run(
        [sys.executable, "-m", "candletok.cli.main", "demo", "--out", str(out / "model.pt")],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "is a file" in bad.stderr and "--out" in bad.stderr and "out=" not in bad.stderr


def test_make_demo_ends_by_saying_how_to_run_candletok() -> None:
    import shutil

    root = Path(__file__).resolve().parents[1]
    if shutil.which("make") is None:
        pytest.skip("no make")
    r = subprocess.run(["make", "-n", "demo"], cwd=root, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    tail = r.stdout.split("candletok demo", 1)[1]
    assert "source .venv/bin/activate" in tail and ".venv/bin/candletok" in tail
