"""Shown = scored: the Predictor's answer at T is the row at T of ``evaluate --forecasts``,
exactly, and it never reads a bar after T. A tiny synthetic dataset and a 1-layer model."""

from __future__ import annotations

import json
import math
import subprocess
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from _helpers import cli_subprocess, trained_on_synthetic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from candletok.core.errors import ModelError, OutputError
from candletok.evaluation.conformal import INTERVAL_COLUMNS
from candletok.evaluation.forecastfile import FORECAST_COLUMNS, QUANTILE_COLUMNS

SHOWN = ("p_up_raw", "p_up", "range_raw", "range", *QUANTILE_COLUMNS, *INTERVAL_COLUMNS)
QUANTITY = {c: ("p_up" if c.startswith("p_up") else "range" if c.startswith("range")
                else "quantiles") for c in SHOWN}
"""Which chosen quantity (the val winner's forecaster) each shown column comes from."""


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return cli_subprocess(*args, cwd=cwd)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset, a model, its calibration and its forecasts file (evaluate's CLI)."""
    root = tmp_path_factory.mktemp("predictor")
    trained_on_synthetic(root)
    r = cli("evaluate", "ds", "--model", "m.pt", "--horizon", "1,3", "--samples", "4",
            "--subsample", "10", "--analogues", "none", "--forecasts", "f.parquet", cwd=root)
    assert r.returncode == 0, r.stderr
    assert "forecasts written to f.parquet" in r.stdout
    return root


@pytest.fixture(scope="module")
def file(work: Path) -> pl.DataFrame:
    return pl.read_parquet(work / "f.parquet")


@pytest.fixture(scope="module")
def gpt_rows(file: pl.DataFrame) -> pl.DataFrame:
    return file.filter((pl.col("forecaster") == "CandleGPT") & (pl.col("horizon") == 1))


@pytest.fixture(scope="module")
def predictor(work: Path):  # type: ignore[no-untyped-def]
    from candletok.predict.predictor import Predictor

    return Predictor.from_checkpoint(work / "m.pt", work / "ds")


def shown(a) -> tuple:  # type: ignore[no-untyped-def]
    return (a.p_up_raw, a.p_up, a.range_raw, a.range, *(a.quantiles[q] for q in QUANTILE_COLUMNS),
            *(a.intervals[k] for k in INTERVAL_COLUMNS))


def scored(file: pl.DataFrame, symbol: str, origin: datetime, h: int,
           sources: dict) -> tuple:  # type: ignore[type-arg]
    """The file's numbers an answer must show: each column from the row of the forecaster
    its quantity came from (the val winner, named in ``sources``)."""
    def row(name: str) -> dict:  # type: ignore[type-arg]
        got = file.filter((pl.col("forecaster") == name) & (pl.col("horizon") == h)
                          & (pl.col("symbol") == symbol) & (pl.col("origin") == origin))
        assert got.height == 1, (name, symbol, origin, h)
        return got.row(0, named=True)

    return tuple(row(sources.get(QUANTITY[c], "CandleGPT"))[c] for c in SHOWN)


def scored_for(file: pl.DataFrame, a) -> tuple:  # type: ignore[no-untyped-def, type-arg]
    return scored(file, a.symbol, a.origin, a.horizon, a.sources)


def test_the_forecasts_file_holds_every_origin_of_every_forecaster(
        file: pl.DataFrame) -> None:
    assert tuple(file.columns) == FORECAST_COLUMNS
    assert file.schema["origin"] == pl.Datetime("us", "UTC")
    names = set(file["forecaster"].unique().to_list())
    assert {"CandleGPT", "base rate", "EWMA", "HistVol20"} <= names
    keys = ["symbol", "origin", "forecaster", "horizon"]
    assert file.select(keys).is_unique().all()  # one row per (symbol, origin, fc, h)
    assert set(file["horizon"].unique().to_list()) == {1, 3}
    assert set(file["split"].unique().to_list()) == {"test"}
    base = file.filter(pl.col("forecaster") == "base rate")
    assert (base["p_up"] == base["p_up_raw"]).all()  # nothing learned, nothing calibrated
    ewma = file.filter(pl.col("forecaster") == "EWMA")
    assert ewma["p_up"].is_null().all() and (ewma["range"] > 0).all()
    g = file.filter((pl.col("forecaster") == "CandleGPT") & (pl.col("horizon") == 1))
    assert g["p_up"].is_not_null().all() and g["range"].is_not_null().all()
    assert (g["q05"] <= g["q10"]).all() and (g["q10"] <= g["q50"]).all()
    assert (g["q50"] <= g["q90"]).all() and (g["q90"] <= g["q95"]).all()


def test_predict_at_prints_exactly_the_row_of_the_file(work: Path, file: pl.DataFrame,
                                                       gpt_rows: pl.DataFrame) -> None:
    row = gpt_rows.row(gpt_rows.height // 3, named=True)
    day = row["origin"].date().isoformat()
    r = cli("predict", row["symbol"], "--model", "m.pt", "--dataset", "ds", "--at", day,
            "--json", cwd=work)
    assert r.returncode == 0, r.stderr
    a = json.loads(r.stdout)["answers"][0]
    assert datetime.fromisoformat(a["origin"]) == row["origin"]
    got = (a["p_up_raw"], a["p_up"], a["range_raw"], a["range"],
           *(a["quantiles"][q] for q in QUANTILE_COLUMNS),
           *(a["intervals"][k] for k in INTERVAL_COLUMNS))
    # exactly: the same bits, not approximately, from the forecaster that won on val
    assert got == scored(file, row["symbol"], row["origin"], 1, a["sources"])
    assert a["chosen"] and any("chosen on val" in w for w in a["chosen"])
    r = cli("predict", row["symbol"], "--model", "m.pt", "--dataset", "ds", "--at", day,
            cwd=work)
    assert r.returncode == 0, r.stderr
    assert f"{100 * a['p_up']:.1f}%" in r.stdout and "base rate" in r.stdout
    assert f"{100 * math.expm1(a['range']):.2f}%" in r.stdout
    assert "chosen on val" in r.stdout and "80% interval (conformal)" in r.stdout


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(i=st.integers(0, 10**6))
def test_predictor_at_random_origins_equals_the_file(predictor, gpt_rows: pl.DataFrame,  # type: ignore[no-untyped-def]
                                                     file: pl.DataFrame, i: int) -> None:
    row = gpt_rows.row(i % gpt_rows.height, named=True)
    a = predictor.predict(row["symbol"], at=row["origin"])[0]
    assert a.origin == row["origin"] and a.horizon == 1
    assert shown(a) == scored_for(file, a)
    assert a.base_rate_name.startswith("train share") and 0 < a.base_rate < 1


@pytest.fixture(scope="module")
def bars() -> pl.DataFrame:
    from candletok.data.sources import load_bars

    return load_bars(["AAA"], source="synthetic")  # the bars the dataset was built from


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(i=st.integers(0, 10**6), seed=st.integers(0, 2**16), cut=st.booleans())
def test_bars_after_t_never_change_the_answer_at_t(predictor, bars: pl.DataFrame,  # type: ignore[no-untyped-def]
                                                   gpt_rows: pl.DataFrame, i: int,
                                                   seed: int, cut: bool,
                                                   file: pl.DataFrame) -> None:
    aaa = gpt_rows.filter(pl.col("symbol") == "AAA")
    row = aaa.row(i % aaa.height, named=True)
    t = row["origin"]
    before = bars.filter(pl.col("ts") <= t)
    if cut:
        other = before
    else:  # every bar after T replaced by a random (valid) one
        after = bars.filter(pl.col("ts") > t)
        rng = np.random.default_rng(seed)
        k = np.exp(rng.normal(0, 0.05, after.height))
        o, c = after["open"].to_numpy() * k, after["close"].to_numpy() / k
        other = pl.concat([before, after.with_columns(
            open=pl.Series(o), close=pl.Series(c),
            high=pl.Series(np.maximum(o, c) * 1.01), low=pl.Series(np.minimum(o, c) * 0.99),
            volume=pl.col("volume") * pl.Series(k))])
    a = predictor.predict(bars, at=t)[0]
    b = predictor.predict(other, at=t)[0]
    assert shown(a) == shown(b) and a.origin == b.origin == t
    # and the bars the dataset was built from give the file's row too
    assert shown(a) == scored_for(file, a)


def test_h3_comes_from_the_same_forecaster(predictor, gpt_rows: pl.DataFrame,  # type: ignore[no-untyped-def]
                                           file: pl.DataFrame) -> None:
    row = gpt_rows.row(5, named=True)
    one, three = predictor.predict(row["symbol"], at=row["origin"], horizons=(1, 3))
    assert (one.horizon, three.horizon) == (1, 3)
    assert shown(one) == scored_for(file, one)
    assert three.range is None and 0 <= three.p_up_raw <= 1  # sampled paths, no range


def test_at_before_any_bar_and_bad_horizons_are_one_sentence(predictor) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ModelError, match="no encoded bar at or before 1990"):
        predictor.predict("AAA", at="1990-01-01")
    with pytest.raises(ModelError, match="positive"):
        predictor.predict("AAA", horizons=(0,))


def test_without_calibration_the_answer_says_why(work: Path, predictor,  # type: ignore[no-untyped-def]
                                                 caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from candletok.core import fallback
    from candletok.predict.predictor import Predictor

    fallback._SAID.clear()
    caplog.set_level(logging.WARNING, logger="candletok")

    bare = Predictor(predictor.model, predictor.tokenizer, predictor.history, None,
                     dataset=predictor.dataset,
                     calibration_reason="no calibration beside the model")
    a = bare.predict("BBB")[0]
    assert a.p_up is None and a.p_up_reason == "no calibration beside the model"
    assert a.range is None and a.range_raw is not None and a.notes
    assert set(a.sources.values()) == {"CandleGPT"} and "no val winner" in a.chosen[0]
    assert all(v is None for v in a.intervals.values())
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("no val winner" in m and "come from CandleGPT" in m for m in said)
    assert a.p_up_raw == predictor.predict("BBB")[0].p_up_raw


def test_forecasts_file_refuses_an_existing_file_and_other_formats(work: Path,
                                                                    file: pl.DataFrame) -> None:
    from candletok.evaluation.forecastfile import write_forecasts

    with pytest.raises(OutputError, match="already exists"):
        write_forecasts(file, work / "f.parquet")
    with pytest.raises(OutputError, match=r"\.parquet or \.csv"):
        write_forecasts(file, work / "f.json")
    out = write_forecasts(file.head(50), work / "f.csv")
    back = pl.read_csv(out, try_parse_dates=True)
    assert back.height == 50 and tuple(back.columns) == FORECAST_COLUMNS
    write_forecasts(file.head(7), out, overwrite=True)
    assert pl.read_csv(out).height == 7
    r = cli("evaluate", "ds", "--horizon", "1", "--analogues", "none", "--forecasts",
            "f.parquet", cwd=work)
    assert r.returncode != 0 and "already exists" in r.stderr and "--overwrite" in r.stderr


def test_one_origin_reads_the_same_bits_as_many(predictor) -> None:  # type: ignore[no-untyped-def]
    """The defect behind shown != scored at the last bit: a product over one row (gemv)
    and over many (gemm) differ by an ulp; every product now is row by row."""
    hist, g = predictor.history, predictor.forecaster
    rows, _ = hist.origins("test", 1)
    many = g.forecast(hist, rows, 1)
    for k in (0, 7, rows.size - 1):
        one = g.forecast(hist, rows[k:k + 1], 1)
        assert one.p_up[0] == many.p_up[k] and one.range_mean[0] == many.range_mean[k]
        assert (one.quantiles[0] == many.quantiles[k]).all()


def test_predict_next_with_a_predictor_shows_the_scored_numbers(predictor,  # type: ignore[no-untyped-def]
                                                                 bars: pl.DataFrame) -> None:
    """`candletok predict --dataset` goes through predict_next with the Predictor: its
    P(close up) and range are the scored forecaster's, no longer the representatives'."""
    from candletok.predict.predict import predict_next

    a = predictor.predict(bars)[0]
    pr = predict_next(predictor.model, predictor.tokenizer, bars, predictor)
    # P(close up) is the model's own (its map is applied beside it); the range the winner's
    assert pr.p_close_up == predictor.predict(bars, winners=False)[0].p_up_raw
    assert any(n.startswith("range: ") and "chosen on val" in n for n in pr.notes)
    assert pr.exp_range_pct == pytest.approx(100 * math.expm1(a.range), rel=1e-12)
    assert pr.probs.sum() == pytest.approx(1.0) and pr.last_ts == a.origin
    old = predict_next(predictor.model, predictor.tokenizer, bars)
    assert old.exp_range_pct != pr.exp_range_pct  # the representatives' range differed


def test_from_checkpoint_finds_the_recorded_dataset_or_says_why(work: Path, tmp_path: Path,
                                                                predictor) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from candletok.predict.predictor import Predictor

    same = Predictor.from_checkpoint(work / "m.pt")  # the folder the checkpoint records
    assert same.dataset is not None and same.dataset.resolve() == (work / "ds").resolve()
    assert shown(same.predict("AAA")[0]) == shown(predictor.predict("AAA")[0])
    shutil.copy(work / "m.pt", tmp_path / "m.pt")
    moved = tmp_path / "m.pt"
    ck = torch.load(moved, weights_only=True)
    ck["dataset"] = str(tmp_path / "gone")
    torch.save(ck, moved)
    with pytest.raises(ModelError, match="pass dataset="):
        Predictor.from_checkpoint(moved)
    bare = Predictor.from_checkpoint(moved, work / "ds")  # no calibration beside this file
    a = bare.predict("AAA")[0]
    assert a.p_up is None and "no calibration" in (a.p_up_reason or "")


@pytest.mark.parametrize("fit", [{"kind": "platt", "base": 0.52, "a": 1.7},
                                 {"kind": "shrink", "base": 0.5, "lam": 0.6},
                                 {"kind": "isotonic", "x": [0.0, 0.5232, 0.5234, 1.0],
                                  "y": [0.4, 0.45, 0.6, 0.7]}])
def test_every_map_kind_shows_what_the_file_applies(predictor, gpt_rows: pl.DataFrame,  # type: ignore[no-untyped-def]
                                                   fit: dict) -> None:  # type: ignore[type-arg]
    """The tiny model's val picks the base rate (a constant): here each map kind is put in
    its place, and the Predictor's one number equals the map applied to the whole file's
    raw column (the way ``evaluate --forecasts`` applies it)."""
    import copy

    from candletok.evaluation.calibrate import CalibrationMap
    from candletok.predict.predictor import Predictor

    cal = copy.deepcopy(predictor.calibration)
    cal["forecasters"]["CandleGPT"]["p_up"]["1"]["map"] = fit
    p = Predictor(predictor.model, predictor.tokenizer, predictor.history, cal,
                  dataset=predictor.dataset)
    applied = CalibrationMap.from_dict(fit).apply(gpt_rows["p_up_raw"].to_numpy())
    for k in (0, gpt_rows.height // 2, gpt_rows.height - 1):
        row = gpt_rows.row(k, named=True)
        a = p.predict(row["symbol"], at=row["origin"])[0]
        assert a.p_up_raw == row["p_up_raw"] and a.p_up == applied[k]
        assert a.calibration == CalibrationMap.from_dict(fit).describe()


@pytest.mark.parametrize("winners", [
    {"range": "HAR-RV", "quantiles": "base rate", "p_up": "base rate"},
    {"range": "EWMA", "quantiles": "HistVol20", "p_up": "CandleGPT"},
    {"range": "GARCH-t", "quantiles": "GARCH-t", "p_up": "ngram-3"}])
def test_a_val_winner_answers_with_the_numbers_the_file_holds_for_it(
        predictor, gpt_rows: pl.DataFrame, file: pl.DataFrame, winners: dict) -> None:  # type: ignore[no-untyped-def, type-arg]
    """Whichever forecaster val chose for each quantity, the Predictor shows that one's
    row of the forecasts file, bit for bit, and names it."""
    import copy

    from candletok.predict.predictor import Predictor

    names = set(file["forecaster"].unique().to_list())
    if not set(winners.values()) <= names:
        pytest.skip(f"the tiny run has no {set(winners.values()) - names}")
    cal = copy.deepcopy(predictor.calibration)
    for q, name in winners.items():
        cal["winners"][q]["1"].update(forecaster=name, value=0.1, model_value=0.2)
    p = Predictor(predictor.model, predictor.tokenizer, predictor.history, cal,
                  dataset=predictor.dataset)
    for k in (0, gpt_rows.height // 2, gpt_rows.height - 1):
        row = gpt_rows.row(k, named=True)
        a = p.predict(row["symbol"], at=row["origin"])[0]
        assert a.sources == winners
        assert shown(a) == scored_for(file, a)
        said = " ".join(a.chosen)
        assert f"range: {winners['range']}, chosen on val (QLIKE 0.1 vs CandleGPT 0.2" in said


def test_a_calibration_written_before_intervals_and_winners_still_reads(
        predictor, gpt_rows: pl.DataFrame, file: pl.DataFrame) -> None:  # type: ignore[no-untyped-def]
    """An older file (no ``intervals``, ``winners`` or ``aci_walk``): the model answers,
    with its calibrated P(up) and range as before, no intervals, and says no winner."""
    import copy

    from candletok.predict.predictor import Predictor

    cal = copy.deepcopy(predictor.calibration)
    cal.pop("winners")
    cal.pop("aci_walk")
    for entry in cal["forecasters"].values():
        entry.pop("intervals", None)
    p = Predictor(predictor.model, predictor.tokenizer, predictor.history, cal,
                  dataset=predictor.dataset)
    row = gpt_rows.row(3, named=True)
    a = p.predict(row["symbol"], at=row["origin"])[0]
    assert set(a.sources.values()) == {"CandleGPT"}
    assert all(v is None for v in a.intervals.values())
    assert any("no val winner recorded" in w for w in a.chosen)
    assert (a.p_up_raw, a.p_up, a.range) == (row["p_up_raw"], row["p_up"], row["range"])
