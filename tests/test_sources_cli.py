"""``candletok download`` through Typer's CliRunner; the network is never touched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from candletok.cli import cmd_download  # noqa: F401  (registers the command)
from candletok.cli.app import app
from candletok.core.errors import BarsError, CandletokError, SourceError
from candletok.data import sources, yahoo
from candletok.data.bars import BARS_SCHEMA, validate_bars

runner = CliRunner()


@pytest.fixture(autouse=True)
def _offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CANDLETOK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(yahoo, "SLEEP", lambda s: None)
    monkeypatch.setattr(sources, "_SAID", set())

    def no_network(symbols: list[str], **kw: Any) -> Any:
        raise ConnectionError("Could not resolve host: query2.finance.yahoo.com")

    monkeypatch.setattr(yahoo, "yf_download", no_network)


def test_download_sample_writes_valid_parquet(tmp_path: Path) -> None:
    res = runner.invoke(app, ["download", "AAPL", "MSFT", "--source", "sample",
                              "--out", "bars.parquet"])
    assert res.exit_code == 0, res.output
    df = pl.read_parquet(tmp_path / "bars.parquet")
    assert dict(df.schema) == BARS_SCHEMA
    validate_bars(df, "strict")
    assert df["symbol"].unique().sort().to_list() == ["AAPL", "MSFT"]
    assert "AAPL" in res.output and "sample" in res.output and "2013-03-01" in res.output
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_download_synthetic_intraday_default_out(tmp_path: Path) -> None:
    res = runner.invoke(app, ["download", "FOO", "--source", "synthetic", "--interval", "5m",
                              "--bars", "120", "--seed", "3"])
    assert res.exit_code == 0, res.output
    df = pl.read_parquet(tmp_path / "bars.parquet")
    assert df.height == 120 and df["symbol"].unique().to_list() == ["FOO"]
    assert df["ts"].diff().drop_nulls().min().total_seconds() == 300


def test_download_yahoo_without_network_fails_with_one_sentence(tmp_path: Path) -> None:
    res = runner.invoke(app, ["download", "AAPL", "--source", "yahoo"])
    assert res.exit_code != 0
    assert isinstance(res.exception, SourceError)
    msg = str(res.exception)
    assert "\n" not in msg and msg.rstrip(".").count(". ") == 0
    assert "--source sample" in msg and "source=" not in msg  # the flag, not the API argument
    assert not (tmp_path / "bars.parquet").exists()


def test_download_unknown_sample_symbol_names_available() -> None:
    res = runner.invoke(app, ["download", "NOPE", "--source", "sample"])
    assert res.exit_code != 0 and isinstance(res.exception, BarsError)
    assert "AAPL, FB, GOOG, IBM, MSFT" in str(res.exception)


def test_download_auto_offline_uses_sample(tmp_path: Path) -> None:
    res = runner.invoke(app, ["download", "IBM", "--start", "2012-06-01", "--out", "ibm.parquet"])
    assert res.exit_code == 0, res.output
    df = pl.read_parquet(tmp_path / "ibm.parquet")
    assert df["ts"].min().year == 2012


def test_download_bad_interval_and_source() -> None:
    for args in (["--interval", "7m"], ["--source", "bloomberg"]):
        res = runner.invoke(app, ["download", "AAPL", *args])
        assert res.exit_code != 0 and isinstance(res.exception, CandletokError)


def test_download_from_path_source(tmp_path: Path) -> None:
    runner.invoke(app, ["download", "AAA", "BBB", "--source", "synthetic", "--out", "in.parquet"])
    res = runner.invoke(app, ["download", "BBB", "--source", "in.parquet", "--out", "b.parquet"])
    assert res.exit_code == 0, res.output
    df = pl.read_parquet(tmp_path / "b.parquet")
    assert df["symbol"].unique().to_list() == ["BBB"] and "in.parquet" in res.output


def test_download_refuses_to_overwrite_without_the_flag(tmp_path: Path) -> None:
    assert runner.invoke(app, ["download", "AAPL", "--source", "sample"]).exit_code == 0
    before = (tmp_path / "bars.parquet").read_bytes()
    res = runner.invoke(app, ["download", "MSFT", "--source", "sample"])  # same default --out
    assert res.exit_code == 1 and "--overwrite" in res.output
    assert (tmp_path / "bars.parquet").read_bytes() == before  # untouched
    res = runner.invoke(app, ["download", "MSFT", "--source", "sample", "--overwrite"])
    assert res.exit_code == 0, res.output
    assert pl.read_parquet(tmp_path / "bars.parquet")["symbol"].unique().to_list() == ["MSFT"]


def test_download_strict_bars_refuses_broken_rows(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("date,open,high,low,close,volume\n"
                                    "2024-01-02,1,2,0.5,1.5,10\n"
                                    "2024-01-03,1,0.9,0.5,1.5,10\n")  # high < open
    res = runner.invoke(app, ["download", "X", "--source", "x.csv", "--strict-bars",
                              "--out", "s.parquet"])
    assert res.exit_code != 0 and isinstance(res.exception, BarsError)
    msg = str(res.exception)
    assert "high below" in msg and "--repair-bars" in msg and "repair=" not in msg
    assert not (tmp_path / "s.parquet").exists()
    res = runner.invoke(app, ["download", "X", "--source", "x.csv", "--out", "r.parquet"])
    assert res.exit_code == 0, res.output  # the default repairs, with one line on stderr
    assert pl.read_parquet(tmp_path / "r.parquet").height == 1


def test_download_date_format(tmp_path: Path) -> None:
    (tmp_path / "eu.csv").write_text("Date,Open,High,Low,Close\n"
                                     "20240131,1,2,0.5,1.5\n20240201,1,2,0.5,1.5\n")
    res = runner.invoke(app, ["download", "EU", "--source", "eu.csv", "--date-format",
                              "%Y%m%d", "--out", "eu.parquet"])
    assert res.exit_code == 0, res.output
    ts = pl.read_parquet(tmp_path / "eu.parquet")["ts"].dt.strftime("%Y-%m-%d").to_list()
    assert ts == ["2024-01-31", "2024-02-01"]
    res = runner.invoke(app, ["download", "EU", "--source", "eu.csv", "--out", "y.parquet"])
    assert res.exit_code == 0, res.output  # YYYYMMDD is recognised without a format too
    assert pl.read_parquet(tmp_path / "y.parquet")["ts"].equals(
        pl.read_parquet(tmp_path / "eu.parquet")["ts"])
    res = runner.invoke(app, ["download", "EU", "--source", "eu.csv", "--date-format",
                              "%d/%m/%Y", "--out", "x.parquet"])  # a format they don't match
    assert res.exit_code != 0 and not (tmp_path / "x.parquet").exists()


def test_sample_lists_the_bundled_symbols() -> None:
    from candletok.data.sample import sample_symbols

    res = runner.invoke(app, ["sample"])
    assert res.exit_code == 0, res.output
    for sym in sample_symbols():
        assert sym in res.output
    assert "2013-03-01" in res.output
