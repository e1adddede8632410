"""``candletok predict`` for several symbols in one call, reading bars from the dataset's
own source (no Yahoo wait for a dataset built from the sample), and its JSON: fractions
for probabilities and moves, every row the table shows."""

from __future__ import annotations

import json
import shutil
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


@pytest.fixture(scope="module")
def evaluated(trained: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[Path, Path, Any]:
    """A copy of the model that `evaluate` measured on the dataset (its calibration file
    beside it), and evaluate's report."""
    from candletok.evaluation.evaluate import evaluate_forecasts

    ds, model = trained
    m = tmp_path_factory.mktemp("evaluated") / "m.pt"
    shutil.copy(model, m)
    rep = evaluate_forecasts(ds, m, horizons=(1,), analogues=(), n_boot=50)
    return ds, m, rep


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
    assert r.output.count("P(next close above this close)") == 2
    # evaluate never measured this model: no check is made up, and the reason is said
    assert "Brier" not in r.output
    assert "`candletok evaluate` has not measured this model" in r.output
    assert no_yahoo == []  # the dataset was built from the sample: no Yahoo wait


def test_the_test_check_is_what_evaluate_scored(evaluated: tuple[Path, Path, Any],
                                                no_yahoo: list[list[str]]) -> None:
    """predict --dataset shows evaluate's own direction row of the model at h=1 (the same
    Brier scores, skill interval and reliability bins), not a second scoring loop."""
    ds, model, rep = evaluated
    name = rep.calibration["model_forecaster"]
    row = next(d for d in rep.direction if d.forecaster == name and d.horizon == 1)
    r = runner.invoke(app, ["predict", "AAPL", "--model", str(model), "--dataset", str(ds)])
    assert r.exit_code == 0, r.output
    assert f"Brier {row.brier.value:.4f} vs {row.brier_base:.4f}" in r.output
    assert "as evaluate scored it" in r.output
    r = runner.invoke(app, ["predict", "AAPL", "--model", str(model), "--dataset", str(ds),
                            "--json"])
    cal = json.loads(r.stdout)["calibration"]
    assert cal["n"] == row.n and cal["brier"] == pytest.approx(row.brier.value, abs=1e-12)
    assert cal["skill_lo"] == pytest.approx(row.skill.lo, abs=1e-12)
    assert cal["skill_hi"] == pytest.approx(row.skill.hi, abs=1e-12)
    assert [b["count"] for b in cal["bins"]] == [int(t[3]) for t in row.reliability]
    assert sum(b["count"] for b in cal["bins"]) == row.n


def test_a_check_from_another_dataset_is_not_shown(evaluated: tuple[Path, Path, Any],
                                                   tmp_path: Path,
                                                   no_yahoo: list[list[str]]) -> None:
    ds, model, _ = evaluated
    from candletok.dataset.build import build_dataset
    from candletok.dataset.manifest import open_dataset

    other = tmp_path / "other"  # the same vocabulary, other bars: another dataset
    build_dataset(["AAPL", "MSFT"], other, vocab=open_dataset(ds)[1], source="sample",
                  start="2010-01-01")
    r = runner.invoke(app, ["predict", "AAPL", "--model", str(model), "--dataset",
                            str(other)])
    assert r.exit_code == 0, r.output
    assert "Brier" not in r.output
    assert "measured on another dataset" in r.output


def test_json_holds_every_row_with_one_convention(trained: tuple[Path, Path],
                                                  no_yahoo: list[list[str]]) -> None:
    ds, model = trained
    r = runner.invoke(app, ["predict", "AAPL", "MSFT", "--model", str(model), "--dataset",
                            str(ds), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
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
    assert doc["calibration"] is None  # never measured by evaluate: none is made up


def test_an_explicit_source_wins(trained: tuple[Path, Path],
                                 no_yahoo: list[list[str]]) -> None:
    ds, model = trained
    r = runner.invoke(app, ["predict", "AAPL", "--model", str(model), "--dataset", str(ds),
                            "--source", "yahoo"])
    assert r.exit_code == 1 and "could not be reached" in str(r.exception)
    assert no_yahoo == [["AAPL"]]  # asked once: offline gives up at once
