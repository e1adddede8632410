"""Issue 24: `generate --at` and `predict --at` replay a past origin: the answer reads no
bar after it, and the real bars that followed are drawn over the fan and listed beside
its quantiles in --json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from _helpers import run_main, trained_on_sample
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from candletok.dataset.manifest import read_rows

AT = "2012-06-01"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return trained_on_sample(tmp_path_factory.mktemp("replay"))


@pytest.fixture(scope="module")
def aapl(trained: tuple[Path, Path]) -> pl.DataFrame:
    rows = read_rows(trained[0])[0]
    return rows.filter(pl.col("symbol") == "AAPL").sort("ts")


def _after(aapl: pl.DataFrame, at: str, n: int) -> pl.DataFrame:
    cut = pl.lit(at).str.to_datetime().dt.replace_time_zone("UTC")
    return aapl.filter(pl.col("ts") > cut).head(n)


def _spy_chart(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    import candletok.viz.fan as fan

    seen: dict[str, Any] = {}
    real = fan.save

    def spy(chart: Any, out: Path) -> Path:
        seen["chart"] = chart
        return real(chart, out)

    monkeypatch.setattr(fan, "save", spy)
    return seen


def _realized_line(chart: Any) -> Any:
    (line,) = [ln for ln in chart.price.get_lines() if ln.get_label().startswith("what happened")]
    return line


def test_generate_at_draws_and_lists_the_real_bars_that_followed(
        trained: tuple[Path, Path], aapl: pl.DataFrame, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from candletok.model.checkpoint import load_model
    from candletok.predict.continuation import continue_series

    ds, m = trained
    cont = continue_series(load_model(m), ds, "AAPL", n=5, samples=8, at=AT)
    real = _after(aapl, AT, 5)
    assert cont.last_ts <= pl.Series([AT]).str.to_datetime().dt.replace_time_zone("UTC")[0]
    assert cont.realized is not None
    assert np.array_equal(cont.realized["close"], real["close"].to_numpy())
    assert cont.realized_text().startswith("what followed: 5 of 5 real bars")
    doc = cont.to_dict()
    assert doc["at"] == AT and doc["realized_bars"] == 5
    assert [b["realized_close"] for b in doc["bars"]] == real["close"].to_list()
    assert all({"close_q10", "close_q50", "close_q90"} <= set(b) for b in doc["bars"])
    seen = _spy_chart(monkeypatch)
    cont.plot(tmp_path / "g.png")
    line = _realized_line(seen["chart"])
    assert np.array_equal(line.get_ydata()[1:], real["close"].to_numpy())  # the real closes
    assert line.get_ydata()[0] == cont.last_close  # drawn from the last close the model read


@settings(max_examples=4, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(back=st.integers(2, 400), factor=st.floats(0.5, 2.0).filter(lambda f: abs(f - 1) > 0.01),
       token=st.integers(4, 20))
def test_generate_at_never_reads_the_bars_after_the_origin(
        trained: tuple[Path, Path], aapl: pl.DataFrame, back: int, factor: float,
        token: int) -> None:
    """Changing every bar after the origin (prices and tokens) changes what is drawn as
    realized, never the sampled paths."""
    from candletok.model.checkpoint import load_model
    from candletok.predict import continuation

    ds, m = trained
    model = load_model(m)
    at = aapl["ts"][-back].strftime("%Y-%m-%d")
    base = continuation.continue_series(model, ds, "AAPL", n=3, samples=4, at=at)
    real_read = continuation.read_rows
    cut = pl.lit(at).str.to_datetime().dt.replace_time_zone("UTC")

    def changed(root: Any, columns: Any = None) -> Any:
        rows, split = real_read(root, columns)
        late = pl.col("ts") > cut
        return rows.with_columns(
            *[pl.when(late).then(pl.col(c) * factor).otherwise(pl.col(c)).alias(c)
              for c in ("open", "high", "low", "close")],
            pl.when(late).then(pl.lit(token, pl.UInt16)).otherwise(pl.col("token"))
            .alias("token"),
        ), split

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(continuation, "read_rows", changed)
        other = continuation.continue_series(model, ds, "AAPL", n=3, samples=4, at=at)
    assert np.array_equal(other.tokens, base.tokens)
    assert np.array_equal(other.paths["close"], base.paths["close"])
    assert other.realized["close"].size == min(3, back - 1)
    assert np.allclose(other.realized["close"], factor * base.realized["close"])


def test_generate_at_near_the_end_lists_what_the_data_holds(
        trained: tuple[Path, Path], aapl: pl.DataFrame, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    ds, m = trained
    at = aapl["ts"][-3].strftime("%Y-%m-%d")  # two bars follow it
    code, out, err = run_main(("generate", "--model", str(m), "--dataset", str(ds), "--symbol",
                               "AAPL", "--n", "4", "--samples", "4", "--at", at, "--json"),
                              ds.parent, capsys, monkeypatch)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["realized_bars"] == 2
    got = [b["realized_close"] for b in doc["bars"]]
    assert got[:2] == aapl["close"].tail(2).to_list() and got[2:] == [None, None]
    code, out, err = run_main(("generate", "--model", str(m), "--dataset", str(ds), "--symbol",
                               "AAPL", "--at", "1990-01-01"), ds.parent, capsys, monkeypatch)
    assert code == 1 and "no candle at or before 1990-01-01" in err


def test_predict_at_replays_the_answer_with_what_followed(
        trained: tuple[Path, Path], aapl: pl.DataFrame, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from candletok.predict.predictor import Predictor
    from candletok.predict.replay import replay

    ds, m = trained
    pred = Predictor.from_checkpoint(m, ds)
    (rep,) = replay(pred, "AAPL", AT, horizon=3)
    real = _after(aapl, AT, 3)
    assert rep.realized_close == real["close"].to_list()
    one = pred.predict("AAPL", at=AT)[0]  # the table's h = 1 answer, unchanged
    assert rep.answers[0].quantiles == one.quantiles and rep.answers[0].p_up_raw == one.p_up_raw
    assert rep.closes["q50"][0] == pytest.approx(one.last_close * np.exp(one.quantiles["q50"]))
    doc = rep.to_dict()
    assert [b["h"] for b in doc["bars"]] == [1, 2, 3]
    assert [b["realized_close"] for b in doc["bars"]] == real["close"].to_list()
    assert all(b["close_q05"] <= b["close_q50"] <= b["close_q95"] for b in doc["bars"])
    seen = _spy_chart(monkeypatch)
    rep.plot(tmp_path / "p.png")
    chart = seen["chart"]
    assert np.array_equal(_realized_line(chart).get_ydata()[1:], real["close"].to_numpy())
    bands = [c.get_label() for c in chart.price.collections if "forecast close" in
             str(c.get_label())]
    assert bands == ["5%-95% of CandleGPT's forecast close",
                     "10%-90% of CandleGPT's forecast close"]


def test_predict_at_cli_writes_the_replay(trained: tuple[Path, Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    ds, m = trained
    png = tmp_path / "p.png"
    args = ("predict", "AAPL", "--model", str(m), "--dataset", str(ds), "--at", AT,
            "--horizon", "2")
    code, out, err = run_main((*args, "--plot", str(png)), tmp_path, capsys, monkeypatch)
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "what happened next" in out and "after 2 of 2 bars the real close was" in out
    code, out, err = run_main((*args, "--plot", str(png)), tmp_path, capsys, monkeypatch)
    assert code == 1 and "--overwrite" in err  # nothing replaced without it
    code, out, err = run_main((*args, "--json"), tmp_path, capsys, monkeypatch)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["answers"][0]["horizon"] == 1 and len(doc["replays"][0]["bars"]) == 2
    code, out, err = run_main(("predict", "AAPL", "--model", str(m), "--dataset", str(ds),
                               "--plot", str(tmp_path / "q.png")), tmp_path, capsys, monkeypatch)
    assert code == 1 and "--at" in err and not (tmp_path / "q.png").exists()
