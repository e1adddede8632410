"""``candletok predict`` for several symbols in one call, reading bars from the dataset's
own source (no Yahoo wait for a dataset built from the sample), and its JSON: fractions
for probabilities and moves, every row the table shows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _helpers import trained_on_sample
from typer.testing import CliRunner

from candletok.cli import commands  # noqa: F401  (registers every command)
from candletok.cli.app import app
from candletok.data import yahoo

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return trained_on_sample(tmp_path_factory.mktemp("predict"))


@pytest.fixture()
def no_yahoo(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every Yahoo request, recorded (and refused as an offline machine would)."""
    calls: list[list[str]] = []

    def refuse(symbols: list[str], **kwargs: Any) -> Any:
        calls.append(list(symbols))
        raise ConnectionError("Could not resolve host: query2.finance.yahoo.com")

    monkeypatch.setattr(yahoo, "yf_download", refuse)
    return calls


def test_several_symbols_from_the_datasets_own_source(trained: tuple[Path, Path],
                                                      no_yahoo: list[list[str]]) -> None:
    ds, model = trained
    r = runner.invoke(app, ["predict", "AAPL", "msft", "--model", str(model), "--dataset",
                            str(ds)])
    assert r.exit_code == 0, r.output
    assert "AAPL: next candle after 2013-03-01" in r.output
    assert "MSFT: next candle after 2013-03-01" in r.output
    assert r.output.count("P(next close above this close)") == 2 and "Brier" in r.output
    assert no_yahoo == []  # the dataset was built from the sample: no Yahoo wait


def test_json_holds_every_row_with_one_convention(trained: tuple[Path, Path],
                                                  no_yahoo: list[list[str]]) -> None:
    ds, model = trained
    r = runner.invoke(app, ["predict", "AAPL", "MSFT", "--model", str(model), "--dataset",
                            str(ds), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert [p["symbol"] for p in doc["predictions"]] == ["AAPL", "MSFT"]
    assert "fraction" in doc["units"]["p_*, prob, base_rate, observed, mean_predicted"]
    assert "percent" in doc["units"]["*_pct"]
    for p in doc["predictions"]:
        for key in ("p_close_up", "p_close_down", "p_gap_up", "p_gap_down", "p_no_gap"):
            assert 0.0 <= p[key] <= 1.0, key
        assert p["p_close_up"] + p["p_close_down"] == pytest.approx(1.0)
        assert p["p_gap_up"] + p["p_gap_down"] + p["p_no_gap"] == pytest.approx(1.0)
        assert 0 < p["exp_range_pct"] < 100 and 0 < p["scale"] < 1  # percent vs fraction
        assert p["exp_range_pct"] > 100 * p["scale"] * p["exp_range_vol"] * 0.5
        # no calibration beside this model: no calibrated number, and the reason in words
        assert p["p_close_up_calibrated"] is None
        assert "no calibration" in p["p_close_up_calibrated_reason"]
        assert p["last_ts"].startswith("2013-03-01") and p["last_close"] > 0
        assert len(p["top"]) == 5 and all(0 <= c["prob"] <= 1 for c in p["top"])
        # every row of the table is there
        for key in ("exp_body_vol", "exp_body_pct", "exp_range_vol", "context_candles"):
            assert key in p
    cal = doc["calibration"]
    assert cal["split"] == "test" and cal["n"] > 0 and 0 <= cal["base_rate"] <= 1
    assert sum(b["count"] for b in cal["bins"]) == cal["n"]


def test_an_explicit_source_wins(trained: tuple[Path, Path],
                                 no_yahoo: list[list[str]]) -> None:
    ds, model = trained
    r = runner.invoke(app, ["predict", "AAPL", "--model", str(model), "--dataset", str(ds),
                            "--source", "yahoo"])
    assert r.exit_code == 1 and "could not be reached" in str(r.exception)
    assert no_yahoo == [["AAPL"]]  # asked once: offline gives up at once
