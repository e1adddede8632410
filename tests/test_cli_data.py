"""`candletok encode / inspect / decode` as a user runs them (offline, sample source)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from candletok import load_sample, validate_bars


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
