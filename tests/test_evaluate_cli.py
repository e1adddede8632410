"""`candletok evaluate` as a user runs it, on a small synthetic dataset and a tiny model."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from _helpers import cli_subprocess, trained_on_synthetic

from candletok.evaluation.calibrate import calibration_path, load_calibration


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return cli_subprocess(*args, cwd=cwd, columns=240)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("evalcli")
    trained_on_synthetic(root)
    return root


def test_evaluate_prints_every_table_and_writes_the_chart_and_the_calibration(
        work: Path) -> None:
    r = cli("evaluate", "ds", "--model", "m.pt", "--horizon", "1,3", "--samples", "4",
            "--subsample", "10", "--analogue-subsample", "20", "--plot", "e.png", cwd=work)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for words in ("P(close up at t+h)", "next candle's range", "quantiles", "bits per candle",
                  "base rate", "EWMA", "HistVol20", "CandleGPT", "verdict", "sampled paths",
                  "exact analogues", "nearest analogues", "model analogues", "median n_eff",
                  "GARCH-t", "HAR-RV", "CRPS", "90% cover", "Christoffersen", "MCS 10%"):
        assert words in out, words
    assert (work / "e.png").stat().st_size > 10_000
    cal = load_calibration(work / "m.pt")
    assert cal is not None and "CandleGPT" in cal["forecasters"]
    assert str(calibration_path(work / "m.pt").name) in out
    # predict now shows the calibrated P(close up), its val skill and the base rate
    r = cli("predict", "AAA", "--model", "m.pt", "--source", "synthetic", cwd=work)
    assert r.returncode == 0, r.stderr
    assert "calibrated, val skill" in r.stdout and "base rate" in r.stdout
    fit = cal["forecasters"]["CandleGPT"]["p_up"]["1"]
    if fit["val_skill"]["lo"] <= 0:
        assert "has shown no skill for P(next close up)" in " ".join(r.stdout.split())


def test_evaluate_json_holds_every_row(work: Path) -> None:
    r = cli("evaluate", "ds", "--split", "val", "--horizon", "1", "--json", "--analogues",
            "none", cwd=work)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["split"] == "val" and d["horizons"] == [1]
    names = {row["forecaster"] for row in d["direction"]}
    assert "base rate" in names and len(names) == 2  # the base rate and the n-gram
    assert {row["forecaster"] for row in d["range"]} >= {"EWMA", "HistVol20", "GARCH-t",
                                                         "HAR-RV"}
    assert d["references"]["range"] == ["EWMA", "HistVol20", "GARCH-t", "HAR-RV"]
    q = {row["forecaster"]: row for row in d["quantiles"]}
    assert set(q["GARCH-t"]["tests"]) == {"80", "90"} and q["GARCH-t"]["crps"]["value"] > 0
    assert isinstance(q["GARCH-t"]["mcs"], bool) and q["HAR-RV"]["coverage90"]["lo"] <= 1
    assert all(set(row["skill"]) == {"value", "lo", "hi"} for row in d["direction"])


@pytest.mark.parametrize("args,words", [
    (("--split", "train"), "--split takes val or test"),
    (("--horizon", "1,x"), "--horizon"),
    (("--horizon", "0"), "positive"),
    (("--samples", "0"), "--samples"),
    (("--analogues", "exact,fuzzy"), "--analogues takes"),
])
def test_bad_options_are_one_sentence(tmp_path: Path, args: tuple[str, ...], words: str) -> None:
    from typer.testing import CliRunner

    from candletok.cli.main import app

    r = CliRunner().invoke(app, ["evaluate", str(tmp_path), *args])
    assert r.exit_code != 0
    assert words in r.output and "Traceback" not in r.output


def test_a_folder_that_is_not_a_dataset_is_one_sentence(tmp_path: Path) -> None:
    r = cli("evaluate", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 1 and "not a complete dataset" in r.stderr
    assert "Traceback" not in r.stderr
