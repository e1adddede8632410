"""The learned search mode: a planted pattern with a fixed forward move is found more often
than by the nearest mode; shifting every timestamp changes no match unless val chose
calendar inputs; the file is versioned and refused when it does not fit; exact search."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from _helpers import dataset_from_frame, run_main

from candletok.core.errors import ModelError
from candletok.search.retrieval import load_search_model, search_model_path
from candletok.search.retrieval_train import SearchTrainConfig, train_search
from candletok.search.similar import similar
from candletok.search.vectors import NumpyFlatIndex, dot_search

N_BARS = 900
EVERY = 24  # one planted pattern per ~EVERY bars


def planted_bars(seed: int = 3) -> tuple[pl.DataFrame, dict[str, list[int]]]:
    """Two random-walk daily series; at planted bars t the candle has a long upper wick
    on a tiny body (the signature), and the five bars after it each rise by 1.5%. The
    other four candles of a window ending at t are as random as any."""
    rng = np.random.default_rng(seed)
    frames, planted = [], {}
    ts = np.datetime64("2000-01-03", "us") + np.arange(N_BARS) * np.timedelta64(1, "D")
    for sym in ("AAA", "BBB"):
        gap = rng.normal(0, 0.003, N_BARS)
        body = rng.normal(0, 0.012, N_BARS)
        up = np.abs(rng.normal(0, 0.004, N_BARS))
        lo = np.abs(rng.normal(0, 0.004, N_BARS))
        base = np.arange(40, N_BARS - 20, EVERY)
        at = base + rng.integers(0, 6, base.size)
        at = at[at < N_BARS - 10]
        planted[sym] = at.tolist()
        body[at], up[at], gap[at] = 0.0005, 0.03, 0.0
        for j in range(1, 6):
            body[at + j], gap[at + j], up[at + j], lo[at + j] = 0.015, 0.0005, 0.001, 0.001
        c = np.empty(N_BARS)
        o = np.empty(N_BARS)
        prev = 100.0
        for i in range(N_BARS):  # building the fixture's bars, not a hot path
            o[i] = prev * np.exp(gap[i])
            c[i] = o[i] * np.exp(body[i])
            prev = c[i]
        frames.append(pl.DataFrame({
            "symbol": sym, "ts": ts, "open": o, "high": np.maximum(o, c) * np.exp(up),
            "low": np.minimum(o, c) * np.exp(-lo), "close": c,
            "volume": 1e6 * np.exp(rng.normal(0, 0.2, N_BARS))}))
    bars = pl.concat(frames).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))
    return bars, planted


build = dataset_from_frame  # the shared recipe (tests/_helpers.py)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("learned")
    bars, where = planted_bars()
    ds = build(bars, root / "ds")
    res = train_search(ds, root / "m.pt", SearchTrainConfig(horizons=(1, 5), epochs=8,
                                                          embed="hidden"))
    return {"bars": bars, "where": where, "ds": ds, "model": root / "m.pt", "res": res,
            "root": root}


def _hits(res: Any, bars: pl.DataFrame, where: dict[str, list[int]], idx: Any) -> int:
    """How many matches end on a planted bar."""
    times = {s: set(bars.filter(pl.col("symbol") == s)["ts"].sort().dt.epoch("us")
                    .gather(at).to_list()) for s, at in where.items()}
    return sum(int(idx.ts[e]) in times[idx.symbols[int(idx.sid[e])]] for e in res._e)


def test_learned_finds_more_planted_occurrences_than_nearest(planted: dict[str, Any]) -> None:
    bars, where = planted["bars"], planted["where"]
    a_ts = bars.filter(pl.col("symbol") == "AAA")["ts"].sort()
    from candletok.search.index import open_index

    idx = open_index(planted["ds"])
    learned = nearest = 0
    for t in where["AAA"][-6:]:  # queries in val/test; matches from every earlier window
        kw = {"last": 5, "top": 10, "horizons": (1, 5), "at": a_ts[t]}
        learned += _hits(similar(planted["ds"], "AAA", mode="learned",
                                 model=planted["model"], **kw), bars, where, idx)
        nearest += _hits(similar(planted["ds"], "AAA", mode="nearest", **kw), bars, where, idx)
    assert learned > nearest, (learned, nearest)
    assert learned >= 30  # of 60 matches, at least half are the planted pattern


def test_the_file_is_versioned_and_says_what_it_was_chosen_on(planted: dict[str, Any]) -> None:
    sm = planted["res"].model
    assert planted["res"].path == search_model_path(planted["model"])
    assert planted["res"].path.name == "m.search.pt"
    f = sm.facts
    assert f["chosen_on_val"] in [r["candidate"] for r in f["val_table"]]
    rows = {r["candidate"]: r for r in f["val_table"]}
    kind = "calendar on" if sm.calendar is not None else "calendar off"
    assert f["chosen_on_val"].startswith(kind)
    assert rows[f["chosen_on_val"]]["mse"] == min(r["mse"] for r in f["val_table"]
                                                  if r["candidate"].startswith(kind))
    if sm.calendar is not None:  # kept only when they beat the best without them on val
        assert f["calendar_p"] < 0.05
        assert rows[f["chosen_on_val"]]["mse"] < min(
            r["mse"] for r in f["val_table"] if r["candidate"].startswith("calendar off"))
    assert "train mean (no search)" in rows and "raw weighted features (nearest's space)" in rows
    assert f["trained_on"]["train_windows"] > 0 and f["trained_on"]["val_windows"] > 0
    with pytest.raises(ModelError, match="trained on 5-candle windows"):
        similar(planted["ds"], "AAA", mode="learned", model=planted["model"], last=3)
    with pytest.raises(ModelError, match="No search model"):
        similar(planted["ds"], "AAA", mode="learned", model=planted["root"] / "other.pt")
    bad = planted["root"] / "bad.search.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="Cannot read the search model"):
        load_search_model(bad)


def _shifted(planted: dict[str, Any], name: str) -> Path:
    bars = planted["bars"].with_columns(pl.col("ts") + timedelta(days=184))
    return build(bars, planted["root"] / name, vocab=planted["ds"] / "vocab.json")


def test_shifting_time_changes_no_match_without_calendar(planted: dict[str, Any]) -> None:
    """Six months later, same candles: the same matches, unless the model reads the
    calendar, which only val may have chosen (and then the table says it won)."""
    sm = planted["res"].model
    shifted = _shifted(planted, "shifted")
    a_ts = planted["bars"].filter(pl.col("symbol") == "AAA")["ts"].sort()
    t = planted["where"]["AAA"][-3]
    kw = {"mode": "learned", "last": 5, "top": 10, "horizons": (1, 5)}
    off = planted["root"] / "off.pt"
    train_search(planted["ds"], off, SearchTrainConfig(horizons=(1, 5), epochs=3,
                                                       calendar="off", embed="hidden"))
    a = similar(planted["ds"], "AAA", model=off, at=a_ts[t], **kw)
    b = similar(shifted, "AAA", model=off, at=a_ts[t] + timedelta(days=184), **kw)
    assert np.array_equal(a._e, b._e) and np.allclose(a.matches["distance"],
                                                       b.matches["distance"])
    if sm.calendar is not None:  # the chosen model reads it: val must have said so
        assert sm.facts["calendar_chosen_on_val"] and sm.facts["calendar_p"] < 0.05
        assert sm.facts["chosen_on_val"].startswith("calendar on")
    else:
        assert not sm.facts["calendar_chosen_on_val"]
    # a model forced to read the calendar does see the shift (the test can fail)
    on = planted["root"] / "on.pt"
    r_on = train_search(planted["ds"], on, SearchTrainConfig(horizons=(1, 5), epochs=3,
                                                             calendar="on", embed="hidden"))
    assert r_on.model.calendar is not None and not r_on.model.facts["calendar_chosen_on_val"]
    from candletok.search.index import open_index
    from candletok.search.retrieval import learned_vectors

    va = learned_vectors(open_index(planted["ds"]), open_index(planted["ds"]).tokenizer(),
                         r_on.model)[1].copy()
    idx_s = open_index(shifted)
    vb = learned_vectors(idx_s, idx_s.tokenizer(), r_on.model)[1]
    assert not np.allclose(va, vb)


def test_dot_search_is_the_exact_search() -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(size=(5000, 16)).astype(np.float32)
    v[100] = v[200]  # a tie: the lower id first
    sq = np.einsum("ij,ij->i", v, v, dtype=np.float64)
    mask = rng.random(5000) < 0.7
    mask[[100, 200]] = True
    for q in (rng.normal(size=16).astype(np.float32), v[200] + np.float32(1e-4)):
        want = NumpyFlatIndex(v).search_masked(q, 25, mask)
        got = dot_search(v, sq, q, 25, mask)
        assert np.array_equal(want.indices, got.indices)
        assert np.allclose(want.scores, got.scores, rtol=1e-9, atol=1e-9)


def test_analogue_range_is_the_matches_mean_times_the_query_scale(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An analogue answer's next range (mean and mean square, in vol units) becomes the
    forecast times the scale known at the origin; horizons past 1 carry none."""
    import candletok.evaluation.analogues as an
    from candletok.evaluation.analogues import AnalogueAnswer, AnalogueForecaster

    class Hist:
        next_scale = np.array([0.01, 0.02, 0.04])

    def query(hist: Any, row: int, horizons: Any) -> dict[int, AnalogueAnswer]:
        return {1: AnalogueAnswer(0.5, 10.0, (-1.0, 0.0, 1.0), (0.8 + row, 0.7 + row)),
                5: AnalogueAnswer(0.5, 10.0, (-1.0, 0.0, 1.0), None)}

    f = AnalogueForecaster("toy", query, horizons=(1, 5), subsample=10)
    f.base.rate = lambda hist, h: (0.5, 0.0)  # type: ignore[method-assign]
    rows = np.arange(3)
    monkeypatch.setattr(an, "pick_subsample", lambda hist, rows, n, seed: rows)  # every one
    fc = f.forecast(Hist(), rows, 1)  # type: ignore[arg-type]
    fc5 = f.forecast(Hist(), rows, 5)  # type: ignore[arg-type]
    assert fc is not None and fc5 is not None
    assert np.allclose(fc.range_mean, (0.8 + rows) * Hist.next_scale)
    assert np.allclose(fc.range_sq, (0.7 + rows) * Hist.next_scale ** 2)
    assert fc5.range_mean is None


def test_the_cli_trains_and_searches(planted: dict[str, Any], capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root = planted["root"]
    (root / "cli.pt").write_bytes(b"a checkpoint stand-in")  # only hashed into the facts
    args = ("train-search", "--model", "cli.pt", "--dataset", "ds", "--epochs", "2",
            "--calendar", "off", "--embed", "hidden", "--horizon", "1,5")
    code, out, err = run_main(args, root, capsys, monkeypatch, OMP_NUM_THREADS="1")
    assert code == 0, err
    assert "chosen on val: calendar off, hidden embedding" in out
    assert "cli.search.pt" in out and (root / "cli.search.pt").is_file()
    code, _, err = run_main(args, root, capsys, monkeypatch)
    assert code != 0 and "--overwrite" in err
    code, _, err = run_main(("train-search", "--model", "none.pt", "--dataset", "ds"), root,
                            capsys, monkeypatch)
    assert code != 0 and "No checkpoint at none.pt" in " ".join(err.split())
    code, out, err = run_main(("similar", "AAA", "--dataset", "ds", "--mode", "learned",
                               "--model", "cli.pt", "--horizon", "1,5", "--no-calibrate"),
                              root, capsys, monkeypatch)
    assert code == 0, err
    assert "search model trained for retrieval (cli.search.pt" in " ".join(out.split())
    code, _, err = run_main(("similar", "AAA", "--dataset", "ds", "--mode", "learned",
                             "--model", "m2.pt", "--no-calibrate"), root, capsys, monkeypatch)
    assert code != 0 and "train-search" in " ".join(err.split())
