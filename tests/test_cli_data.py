"""`candletok encode / inspect / decode` as a user runs them (offline, sample source)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from candletok.data.bars import validate_bars
from candletok.data.sample import load_sample


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "candletok.cli.main", *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "CANDLETOK_OFFLINE": "1", "COLUMNS": "200",
             "CANDLETOK_CACHE": str(cwd / "cache"), "HOME": str(cwd)},
    )


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("cli")
    r = cli("encode", "AAPL", "MSFT", "IBM", "GOOG", "--source", "sample", "--scheme", "kmeans",
            "--out", "ds", cwd=work)
    assert r.returncode == 0, r.stderr
    assert "train" in r.stdout and "test" in r.stdout and "bits/candle" in r.stdout
    return work


def test_encode_inspect_decode(encoded: Path) -> None:
    r = cli("inspect", "ds", cwd=encoded)
    assert r.returncode == 0, r.stderr
    assert "kmeans" in r.stdout and "verified" in r.stdout
    r = cli("decode", "ds", "--split", "test", "--out", "t.parquet", cwd=encoded)
    assert r.returncode == 0, r.stderr
    bars = validate_bars(pl.read_parquet(encoded / "t.parquet"))
    assert sorted(bars["symbol"].unique()) == ["AAPL", "GOOG", "IBM", "MSFT"]
    true = load_sample(["AAPL"]).join(bars, on=["symbol", "ts"], suffix="_d")
    err_bps = ((true["close_d"] / true["close"]).log().abs() * 1e4).median()
    assert err_bps < 30


def test_encode_again_needs_overwrite(encoded: Path) -> None:
    r = cli("encode", "AAPL", "--source", "sample", "--out", "ds", cwd=encoded)
    assert r.returncode != 0
    assert "--overwrite" in r.stderr and "Traceback" not in r.stderr


def test_bad_inputs_are_one_sentence(encoded: Path) -> None:
    for args in (
        ("encode", "NOPE", "--source", "sample", "--out", "x"),
        ("encode", "AAPL", "--source", "sample", "--scheme", "words", "--out", "y"),
        ("decode", "missing-dir"),
        ("inspect", "missing-dir"),
        ("decode", "ds", "--split", "holdout"),
        ("train", "ds", "--steps", "0", "--out", "m.pt"),  # 0 is not "the default"
        ("train", "ds", "--heads", "0", "--out", "m.pt"),
        ("train", "ds", "--dropout", "1.5", "--out", "m.pt"),
        ("fit", "AAPL", "--source", "sample", "--out", "v.txt"),
        ("download", "AAPL", "--source", "sample", "--out", "ds"),  # a folder
    ):
        r = cli(*args, cwd=encoded)
        assert r.returncode != 0, args
        assert "Traceback" not in r.stderr, r.stderr
        assert r.stderr.strip().startswith("error:"), (args, r.stderr)
        assert "unexpected" not in r.stderr and ".tmp" not in r.stderr, (args, r.stderr)
    for name in ("x", "y", "m.pt", "v.txt"):
        assert not (encoded / name).exists(), name


def test_encode_defaults_work_offline(tmp_path: Path) -> None:
    # `candletok encode AAPL --scheme bins` with no other flag: Yahoo is unreachable in tests
    # (no network), so `auto` falls back to the bundled sample and says so on stderr.
    r = cli("encode", "AAPL", "--scheme", "bins", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "data" / "manifest.json").exists()
    assert "sample" in r.stderr.lower()


def test_offline_yahoo_is_one_line(tmp_path: Path) -> None:
    r = cli("download", "AAPL", "--source", "yahoo", cwd=tmp_path)
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: Yahoo Finance could not be reached")


def test_encode_warns_when_a_split_comes_out_empty(tmp_path: Path) -> None:
    r = cli("encode", "IBM", "--source", "sample", "--out", "e", "--val-from", "2029-01-01",
            "--test-from", "2030-01-01", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "warning: no candles in val or test" in " ".join(r.stderr.split())


def test_default_cuts_fall_on_a_bar_open_time(encoded: Path) -> None:
    """Item 10: the default val/test cuts of daily sample bars are bars' open times, not
    an instant between two bars (e.g. 2014-12-31T19:12)."""
    import json
    from datetime import datetime

    m = json.loads((encoded / "ds" / "manifest.json").read_text())
    opens = set(load_sample(["AAPL", "MSFT", "IBM", "GOOG"])["ts"].to_list())
    for key in ("val_from", "test_from"):
        cut = datetime.fromisoformat(m["boundaries"][key])
        assert cut in opens, (key, cut)
        assert (cut.hour, cut.minute, cut.second) == (0, 0, 0)


def test_encode_takes_any_case_of_scheme_and_the_tokenizer_settings(tmp_path: Path) -> None:
    from candletok.tokenize.registry import load_tokenizer

    r = cli("encode", "IBM", "--source", "sample", "--scheme", "Bins", "--bins", "5,5,3,3,4",
            "--out", "b", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    tok = load_tokenizer(tmp_path / "b" / "vocab.json")
    assert tok.scheme == "bins" and tok.n_candle_tokens <= 5 * 5 * 3 * 3 * 4
    assert tok.features.volume  # the fifth count adds the volume feature
    r = cli("encode", "IBM", "--source", "sample", "--scheme", "KMEANS", "--k", "9", "--seed",
            "3", "--out", "k", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert load_tokenizer(tmp_path / "k" / "vocab.json").n_candle_tokens <= 9
    for args in (("--k", "9"), ("--scheme", "kmeans", "--bins", "3,3,2,2")):
        r = cli("encode", "IBM", "--source", "sample", *args, "--out", "z", cwd=tmp_path)
        assert r.returncode == 1 and r.stderr.startswith("error:"), args
        assert not (tmp_path / "z").exists()


def test_encode_strict_bars(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("date,open,high,low,close\n" + "".join(
        f"2024-01-{d:02d},1,2,0.5,1.5\n" for d in range(2, 30)) + "2024-01-30,-1,2,0.5,1.5\n")
    r = cli("encode", "X", "--source", "x.csv", "--strict-bars", "--strict", "--out", "s",
            cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "price <= 0" in r.stderr and "--repair-bars" in r.stderr and "repair=" not in r.stderr
    assert not (tmp_path / "s").exists()
    r = cli("encode", "X", "--source", "x.csv", "--out", "r", cwd=tmp_path)  # repaired
    assert r.returncode == 0, r.stderr
    assert "repaired bars: 1 rows with prices <= 0" in r.stderr


def test_inspect_a_missing_dataset_suggests_encode(tmp_path: Path) -> None:
    r = cli("inspect", "nosuch_ds", cwd=tmp_path)
    assert r.returncode == 1 and "candletok encode" in r.stderr
    r = cli("inspect", "nosuch.json", cwd=tmp_path)
    assert r.returncode == 1 and "candletok fit" in r.stderr


def test_validation_is_the_val_split(encoded: Path) -> None:
    from candletok.dataset.torchdata import TokenDataset

    r = cli("decode", "ds", "--split", "validation", "--out", "v.parquet", cwd=encoded)
    assert r.returncode == 0, r.stderr
    val = pl.read_parquet(encoded / "v.parquet")
    ds = TokenDataset(encoded / "ds", split="validation", context=16)
    assert ds.split == "val" and len(ds) > 0
    assert val.height == TokenDataset(encoded / "ds", split="val", context=16).n_targets()
