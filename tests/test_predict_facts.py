"""What a forecast may claim (issue 20, items 4, 8 and 9): the checkpoint and its
calibration record the interval, dataset fingerprint and symbols they were fit on;
``predict`` refuses bars of another interval, says when a symbol was never trained on,
shows one named base rate and one verdict, no calibrated number without a calibration;
a fan carries what ``evaluate`` measured of direction at its horizon."""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch
from _helpers import trained_on_sample
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from candletok.cli import commands  # noqa: F401  (registers every command)
from candletok.cli.app import app
from candletok.core.times import INTERVALS
from candletok.data.sample import load_sample
from candletok.dataset.manifest import read_split
from candletok.evaluation.calibrate import direction_caveat, save_calibration
from candletok.model.checkpoint import dataset_fingerprint, read_checkpoint
from candletok.predict.predict import _bars_interval

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return trained_on_sample(tmp_path_factory.mktemp("facts"))


def _copy_model(model: Path, tmp_path: Path) -> Path:
    out = tmp_path / "m.pt"
    shutil.copyfile(model, out)
    return out


def _calibrate(model: Path, *, symbols: list[str] | None = None, interval: str = "1d",
               base: float = 0.48, horizon: int = 1) -> None:
    """A calibration file beside ``model``: the base rate itself (shrink lam=0), with a val
    and a test skill whose intervals include zero."""
    fit = {"map": {"kind": "shrink", "base": base, "lam": 0.0}, "base_rate": base, "n": 100,
           "val_skill": {"value": 0.0, "lo": -0.01, "hi": 0.01}}
    test = {"n": 90, "skill": {"value": -0.002, "lo": -0.01, "hi": 0.01}}
    save_calibration(model, {"fingerprint": read_checkpoint(model)["fingerprint"],
                             "interval": interval, "symbols": symbols,
                             "forecasters": {"CandleGPT": {"p_up": {str(horizon): fit}}},
                             "evaluated": {"split": "test",
                                           "p_up": {"CandleGPT": {str(horizon): test}}}})


def _train_up_share(ds: Path) -> float:
    tr = read_split(ds, "train")
    return float((tr["close"] > tr["prev_close"]).mean())


# -- item 4: the facts, the interval, the symbols ----------------------------------------------
def test_the_checkpoint_records_what_it_was_fit_on(trained: tuple[Path, Path]) -> None:
    ds, model = trained
    ck = read_checkpoint(model)
    assert ck["interval"] == "1d"
    assert ck["symbols"] == ["AAPL", "MSFT"]
    assert ck["dataset_fingerprint"] is not None
    assert ck["dataset_fingerprint"] == dataset_fingerprint(ds)
    assert ck["train_base_rate"] == pytest.approx(_train_up_share(ds))


def test_hourly_bars_are_refused_by_a_daily_model(trained: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
    _, model = trained
    bars = load_sample(["AAPL"]).tail(300)
    t0 = datetime(2024, 1, 2, tzinfo=timezone.utc)
    hourly = bars.with_columns(pl.Series("ts", [t0 + timedelta(hours=i)
                                                for i in range(bars.height)])
                               .cast(bars["ts"].dtype))
    path = tmp_path / "aapl_hourly.parquet"
    hourly.write_parquet(path)
    r = runner.invoke(app, ["predict", "AAPL", "--model", str(model), "--source", str(path)])
    assert r.exit_code != 0
    msg = str(r.exception)
    assert "60m" in msg and "1d" in msg, msg
    # the interval was the model's, not the user's: no advice to drop an --interval
    assert "trained on 1d bars" in msg and "interval" not in msg.replace("1d", ""), msg


def test_a_dataset_of_another_interval_is_refused(trained: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
    ds, model = trained
    other = tmp_path / "ds"
    shutil.copytree(ds, other)
    man = json.loads((other / "manifest.json").read_text())
    man["interval"] = "60m"
    (other / "manifest.json").write_text(json.dumps(man))
    r = runner.invoke(app, ["predict", "AAPL", "--model", str(model), "--dataset", str(other)])
    assert r.exit_code != 0
    assert "60m" in str(r.exception) and "1d" in str(r.exception)


def test_a_symbol_outside_the_training_data_is_named_and_shows_no_calibrated_skill(
        trained: tuple[Path, Path], tmp_path: Path) -> None:
    _, model = trained
    m = _copy_model(model, tmp_path)
    _calibrate(m, symbols=["AAPL", "IBM"])  # the calibration saw IBM; the model never did
    r = runner.invoke(app, ["predict", "AAPL", "IBM", "--model", str(m), "--source", "sample",
                            "--json"])
    assert r.exit_code == 0, r.output
    aapl, ibm = json.loads(r.output)["predictions"]
    assert aapl["in_training_data"] is True and aapl["p_close_up_calibrated"] is not None
    assert ibm["in_training_data"] is False and ibm["p_close_up_calibrated"] is None
    assert "IBM was not in the model's training data" in ibm["p_close_up_calibrated_reason"]
    r = runner.invoke(app, ["predict", "IBM", "--model", str(m), "--source", "sample"])
    assert r.exit_code == 0, r.output
    assert "IBM was not in the model's training data" in r.output
    assert "calibrated, val skill" not in r.output  # no calibrated skill it never measured


def test_a_calibration_fit_on_other_symbols_is_not_applied(trained: tuple[Path, Path],
                                                           tmp_path: Path) -> None:
    _, model = trained
    m = _copy_model(model, tmp_path)
    _calibrate(m, symbols=["AAPL"])
    r = runner.invoke(app, ["predict", "AAPL", "MSFT", "--model", str(m), "--source",
                            "sample", "--json"])
    assert r.exit_code == 0, r.output
    aapl, msft = json.loads(r.output)["predictions"]
    assert aapl["p_close_up_calibrated"]["value"] == pytest.approx(0.48)
    assert msft["p_close_up_calibrated"] is None
    assert "other symbols" in msft["p_close_up_calibrated_reason"]


def test_a_calibration_fit_on_another_interval_is_refused(trained: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    _, model = trained
    m = _copy_model(model, tmp_path)
    _calibrate(m, symbols=["AAPL"], interval="60m")
    r = runner.invoke(app, ["predict", "AAPL", "--model", str(m), "--source", "sample"])
    assert r.exit_code != 0 and "fit on 60m bars" in str(r.exception)


def test_an_old_checkpoint_without_the_facts_still_predicts_and_says_so(
        trained: tuple[Path, Path], tmp_path: Path) -> None:
    _, model = trained
    ck: dict[str, Any] = torch.load(model, weights_only=True)
    for key in ("interval", "symbols", "dataset_fingerprint", "train_base_rate"):
        ck.pop(key, None)
    old = tmp_path / "old.pt"
    torch.save(ck, old)
    r = runner.invoke(app, ["predict", "AAPL", "--model", str(old), "--source", "sample"])
    assert r.exit_code == 0, r.output
    assert "does not record the bar interval, dataset fingerprint, symbols" in r.output
    r = runner.invoke(app, ["predict", "AAPL", "--model", str(old), "--source", "sample",
                            "--json"])
    p = json.loads(r.output)["predictions"][0]
    assert p["interval"] is None and p["in_training_data"] is None


@settings(max_examples=40, deadline=None)
@given(interval=st.sampled_from(sorted(INTERVALS)), n=st.integers(8, 200),
       seed=st.integers(0, 10_000))
def test_the_interval_is_the_median_spacing(interval: str, n: int, seed: int) -> None:
    """Up to a quarter of the bars missing (holidays, weekends, halts) leave the inferred
    interval unchanged."""
    rng = np.random.default_rng(seed)
    keep = np.ones(n, bool)
    keep[rng.choice(n, size=rng.integers(0, n // 4 + 1), replace=False)] = False
    step = INTERVALS[interval]
    t0 = datetime(2020, 1, 1, tzinfo=timezone.utc)
    ts = pl.Series("ts", [t0 + i * step for i in np.flatnonzero(keep)])
    assert _bars_interval(ts) == interval


# -- item 8: one base rate, one verdict, no calibrated field without a calibration ----------------
_BASE_PCT = re.compile(r"base rate[\s│|(,:]*(\d+\.\d)%")


def test_one_named_base_rate_and_one_verdict_without_calibration(
        trained: tuple[Path, Path]) -> None:
    ds, model = trained
    r = runner.invoke(app, ["predict", "AAPL", "MSFT", "--model", str(model), "--dataset",
                            str(ds), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    train = _train_up_share(ds)
    assert doc["base_rate"]["split"] == "train"
    assert doc["base_rate"]["value"] == pytest.approx(train)
    assert doc["calibration"] is None  # evaluate never measured it: no check made up
    assert doc["verdict"] and "base rate" in doc["verdict"]
    assert "never measured" in doc["verdict"]
    for p in doc["predictions"]:
        assert p["p_close_up_calibrated"] is None and p["p_close_up_calibrated_reason"]
    r = runner.invoke(app, ["predict", "AAPL", "MSFT", "--model", str(model), "--dataset",
                            str(ds)])
    assert r.exit_code == 0, r.output
    shown = set(_BASE_PCT.findall(r.output))
    assert shown == {f"{100 * train:.1f}"}, r.output
    assert r.output.count("Direction skill of P(close up) was never measured") == 1
    assert "shown no skill" not in r.output


def test_one_base_rate_with_a_calibration(trained: tuple[Path, Path], tmp_path: Path) -> None:
    ds, model = trained
    m = _copy_model(model, tmp_path)
    _calibrate(m, symbols=["AAPL", "MSFT"], base=0.48)
    r = runner.invoke(app, ["predict", "AAPL", "--model", str(m), "--dataset", str(ds),
                            "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["base_rate"] == {"value": 0.48, "split": "train", "from": "calibration"}
    assert doc["calibration"] is None  # the file records no test check by evaluate
    assert "on val" in doc["verdict"]
    cp = doc["predictions"][0]["p_close_up_calibrated"]
    assert cp["value"] == pytest.approx(0.48) and "base_rate" not in cp
    r = runner.invoke(app, ["predict", "AAPL", "--model", str(m), "--dataset", str(ds)])
    assert r.exit_code == 0, r.output
    assert set(_BASE_PCT.findall(r.output)) == {"48.0"}, r.output
    assert r.output.count("is the better guide") == 1  # one verdict


# -- item 9: the fan's caveat ---------------------------------------------------------------------
def test_direction_caveat_says_what_was_measured() -> None:
    fit = {"val_skill": {"value": 0.01, "lo": -0.02, "hi": 0.03}}
    test = {"skill": {"value": -0.002, "lo": -0.01, "hi": 0.01}}
    cal: dict[str, Any] = {"forecasters": {"CandleGPT": {"p_up": {"20": fit}}},
                           "evaluated": {"split": "test", "p_up": {"CandleGPT": {"20": test}}}}
    assert direction_caveat(cal, 20) == (
        "direction at h=20: no skill on test (Brier skill -0.002 [-0.010, +0.010]); "
        "the median's drift is not a forecast")
    test["skill"] = {"value": 0.02, "lo": 0.01, "hi": 0.03}
    assert direction_caveat(cal, 20).startswith("direction at h=20: skill on test")
    test["skill"] = {"value": -0.02, "lo": -0.03, "hi": -0.01}
    assert "worse than the base rate on test" in direction_caveat(cal, 20)
    del cal["evaluated"]  # an older file: the val skill is what was measured
    assert "no skill on val" in direction_caveat(cal, 20)
    other = direction_caveat(cal, 5)
    assert "h=5 was never measured" in other and "h=20" in other
    assert "never measured" in direction_caveat(None, 20)


def test_generate_shows_what_evaluate_measured_beside_the_fan(
        trained: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from candletok.evaluation.evaluate import evaluate_forecasts
    from candletok.predict import continuation as predict_mod

    ds, model = trained
    m = _copy_model(model, tmp_path)
    titles: list[str] = []

    def fake_plot(*args: Any, caveat: str = "", **kwargs: Any) -> Path:
        titles.append(caveat)  # what the chart prints under the fan
        return Path(args[2])

    monkeypatch.setattr(predict_mod, "plot_fan", fake_plot)
    png = str(tmp_path / "fan.png")
    args = ["generate", "--model", str(m), "--dataset", str(ds), "--symbol", "AAPL",
            "--samples", "4", "--plot", png]
    r = runner.invoke(app, [*args, "--n", "1"])
    assert r.exit_code == 0, r.output
    assert "never measured" in r.output and "never measured" in titles[-1]
    evaluate_forecasts(ds, m, horizons=(1,), analogues=(), n_boot=50)
    saved = json.loads(m.with_name("m.calibration.json").read_text())
    assert saved["interval"] == "1d" and saved["dataset_fingerprint"] == dataset_fingerprint(ds)
    assert set(saved["symbols"]) <= {"AAPL", "MSFT"} and saved["symbols"]
    assert saved["evaluated"]["split"] == "test"
    assert "1" in saved["evaluated"]["p_up"]["CandleGPT"]
    r = runner.invoke(app, [*args, "--n", "1"])
    assert r.exit_code == 0, r.output
    want = direction_caveat(saved, 1)
    assert want.startswith("direction at h=1: ") and "on test (Brier skill" in want
    assert want in titles[-1] and "direction at h=1:" in r.output
    r = runner.invoke(app, [*args, "--n", "3"])
    assert r.exit_code == 0, r.output
    assert "h=3 was never measured" in titles[-1]
