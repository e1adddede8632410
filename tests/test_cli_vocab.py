"""`candletok fit` and `candletok inspect` on the bundled sample (offline)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from candletok.cli import cmd_vocab  # noqa: F401  (registers fit/inspect)
from candletok.cli.app import app
from candletok.tokenize.registry import load_tokenizer

runner = CliRunner()


def test_fit_then_inspect_bins(tmp_path: Path) -> None:
    out = tmp_path / "vocab.json"
    r = runner.invoke(app, ["fit", "IBM", "MSFT", "--source", "sample", "--end", "2009-12-31",
                            "--bins", "5,7,3,3", "--out", str(out)])
    assert r.exit_code == 0, r.output
    tok = load_tokenizer(out)
    assert tok.scheme == "bins" and tok.n_candle_tokens <= 5 * 7 * 3 * 3
    assert (tmp_path / "vocab.txt").exists()
    assert tok.fingerprint in r.output.replace("\n", "") or tok.fingerprint[:8] in r.output
    r = runner.invoke(app, ["inspect", str(out), "--rows", "5"])
    assert r.exit_code == 0, r.output
    assert tok.fingerprint in r.output and "wick" in r.output


def test_fit_kmeans_and_bad_options(tmp_path: Path) -> None:
    out = tmp_path / "km.json"
    r = runner.invoke(app, ["fit", "IBM", "--source", "sample", "--scheme", "kmeans",
                            "--k", "12", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert load_tokenizer(out).n_candle_tokens <= 12
    r = runner.invoke(app, ["fit", "IBM", "--source", "sample", "--scheme", "bpe",
                            "--out", str(out)])
    assert r.exit_code != 0
    r = runner.invoke(app, ["fit", "IBM", "--source", "sample", "--bins", "3,x",
                            "--out", str(tmp_path / "b.json")])
    assert r.exit_code != 0 and not (tmp_path / "b.json").exists()
    for args in (["--scheme", "kmeans", "--k", "0"], ["--k", "5"],  # --k is kmeans only
                 ["--scheme", "kmeans", "--bins", "3,3,2,2"]):
        r = runner.invoke(app, ["fit", "IBM", "--source", "sample", *args,
                                "--out", str(tmp_path / "c.json")])
        assert r.exit_code != 0 and not (tmp_path / "c.json").exists(), args
    for args in (["--sort", "bogus"], ["--rows", "-1"]):
        r = runner.invoke(app, ["inspect", str(out), *args])
        assert r.exit_code != 0, args


def test_inspect_refuses_tampered_vocab(tmp_path: Path) -> None:
    out = tmp_path / "vocab.json"
    r = runner.invoke(app, ["fit", "IBM", "--source", "sample", "--out", str(out)])
    assert r.exit_code == 0
    content = json.loads(out.read_text())
    content["params"]["tail_z"] = 3.0
    out.write_text(json.dumps(content))
    r = runner.invoke(app, ["inspect", str(out)])
    assert r.exit_code != 0
