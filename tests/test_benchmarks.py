"""The benchmark suite runs in quick mode, so it cannot rot unnoticed.

No timing is asserted (shared cores make timings noise); what is asserted is the shape of
the results: every stage timed, every ratio computed and finite, all five quality schemes
present, and the reference encoders producing candletok's tokens.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

# ``benchmarks`` is a folder at the repo root, not an installed package: `python -m pytest`
# finds it through the working directory, plain `pytest` through this line.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import pipeline_speed as ps
from benchmarks import quality_schemes as qs
from benchmarks import run as bench_run
from benchmarks.references import (
    naive_bins,
    naive_encode_bins,
    pandas_bins,
    pandas_encode_bins,
)
from candletok.data.synthetic import synthetic_bars
from candletok.tokenize.bins import BinsTokenizer


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One quick run of every section (shared by the structure tests)."""
    return bench_run.run(quick=True, progress=lambda s: None)


def test_every_stage_timed(quick: dict[str, Any]) -> None:
    stages = {r["stage"] for r in quick["stages"]}
    assert stages == set(ps.STAGES)
    for r in quick["stages"]:
        assert r["seconds"] > 0 and math.isfinite(r["per_s"]) and r["per_s"] > 0, r
        assert r["peak_rss_mib"] > 0
    # every scaled stage at every quick size, with a finite slope
    for stage in ps.SCALED:
        sizes = {r["n"] for r in quick["stages"]
                 if r["stage"] == stage and r["label"] == ps.STAGES[stage]}
        assert sizes == set(ps.QUICK_SIZES), stage
    assert {f["stage"] for f in quick["slopes"]} == set(ps.SCALED)
    assert all(math.isfinite(f["slope"]) for f in quick["slopes"])


def test_reference_ratios_computed(quick: dict[str, Any]) -> None:
    refs = quick["references"]
    assert {(r["level"], r["impl"]) for r in refs} == {
        (lv, im) for lv in ("features -> tokens", "bars -> tokens")
        for im in ("candletok", "pandas", "naive Python")
    }
    for r in refs:
        assert r["agree"] and r["checked"] > 0
        assert math.isfinite(r["ratio"]) and r["ratio"] > 0
    by = {(r["level"], r["impl"]): r for r in refs}
    for lv in ("features -> tokens", "bars -> tokens"):  # the ratio is the two runs' rates
        ct, pdr = by[(lv, "candletok")], by[(lv, "pandas")]
        assert pdr["ratio"] == pytest.approx(ct["per_s"] / pdr["per_s"])


def test_quality_has_five_schemes(quick: dict[str, Any]) -> None:
    rows = quick["quality"]
    assert {r["family"] for r in rows} == set(qs.FAMILIES)
    for r in rows:
        assert r["bits"] > 0 and math.isfinite(r["bits"])
        for c in "ohlc":
            assert 0 <= r[f"{c}_med"] <= r[f"{c}_p95"] < 1e4
    chronos = [r for r in rows if r["family"] == "chronos"]
    # four tokens per candle: more bits than any single token of that vocabulary can carry
    assert all(r["bits"] > math.log2(r["vocab"]) for r in chronos)


def test_live_section_compares_cache_and_full(quick: dict[str, Any]) -> None:
    live = quick["live"]
    assert [r["what"].split(",")[0] for r in live["updates"]] == ["update", "update"]
    for r in live["updates"]:
        for k in ("cached_p50_ms", "cached_p99_ms", "full_p50_ms", "full_p99_ms"):
            assert math.isfinite(r[k]) and r[k] > 0, (k, r)
        assert r["max_abs_diff"] <= 1e-5  # the cache gives the full forward's logits
    assert len(live["paths"]) == 3
    assert all(r["same_paths"] and math.isfinite(r["speedup"]) for r in live["paths"])


def test_report_and_plots(quick: dict[str, Any], tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    text = bench_run.report(quick, "python -m benchmarks.run --quick")
    for label in ps.STAGES.values():
        assert label in text
    assert "chronos" in text and "sax" in text and "raw quantile" in text
    assert "KV cache" in text and "sampled paths" in text
    monkeypatch.setattr(bench_run, "RESULTS", tmp_path / "results.md")
    monkeypatch.setattr(bench_run, "PLOTS", {k: tmp_path / f"{k}.png" for k in bench_run.PLOTS})
    written = bench_run.write_outputs(quick, text)
    assert {p.name for p in written} == {"results.md", "quality.png", "scaling.png"}
    for p in written[1:]:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temp files


def test_only_parsing() -> None:
    assert bench_run.parse_only(["quality"]) == ({"quality"}, list(ps.STAGES))
    sections, stages = bench_run.parse_only(["kmeans_fit", "references"])
    assert sections == {"speed", "scaling", "references"} and stages == ["kmeans_fit"]
    with pytest.raises(SystemExit, match="Unknown --only"):
        bench_run.parse_only(["nope"])


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), n_sym=st.integers(1, 3), n_bars=st.integers(2, 300),
       bins=st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(2, 4),
                      st.integers(2, 4)))
def test_references_equal_candletok(seed: int, n_sym: int, n_bars: int,
                                    bins: tuple[int, int, int, int]) -> None:
    bars = synthetic_bars([f"S{i}" for i in range(n_sym)], n_bars=n_bars, interval="1d",
                          seed=seed)
    fit = synthetic_bars(["FIT"], n_bars=400, interval="1d", seed=seed + 1)
    tok = BinsTokenizer(*bins).fit(fit)
    want = tok.encode(bars)["token"].to_numpy().astype(np.int64)
    _, X = tok.feature_matrix(bars)
    assert np.array_equal(np.asarray(naive_bins(tok, X)), want)
    assert np.array_equal(pandas_bins(tok, X), want)
    assert np.array_equal(np.asarray(naive_encode_bins(tok, bars)), want)
    assert np.array_equal(pandas_encode_bins(tok, bars), want)


def test_reference_schemes_rebuild_what_they_keep() -> None:
    """Chronos with fine bins rebuilds every price closely; SAX rebuilds the close from
    the return letter (the open is the previous close by construction)."""
    bars = synthetic_bars(["A", "B"], n_bars=600, interval="1d", seed=3)
    ch = qs.ChronosBins(n_bins=200_001, limit=15.0)
    scaled = bars.join(ch.scales(bars), on=["symbol", "ts"]).drop_nulls("s_close")
    tok, rebuilt = ch.encode_decode(scaled)
    assert tok.shape == (scaled.height, 4)
    for c, r in zip(qs.PRICES, rebuilt, strict=True):
        assert np.abs(np.log(r / scaled[c].to_numpy())).max() < 1e-3
    sax = qs.SaxLetters(8).fit(bars)
    keys, t, (o, h, lo, c) = sax.encode_decode(bars)
    assert t.min() >= 0 and t.max() < 64 and keys.height == bars.height - 2
    prev = qs.SaxLetters.series(bars)["prev_close"].to_numpy()
    assert np.array_equal(o, prev)
    assert np.all(h >= np.maximum(o, c)) and np.all(lo <= np.minimum(o, c))
    assert isinstance(keys, pl.DataFrame)


def test_dataset_and_tokenizer_speed_scripts_run_quick() -> None:
    """The issue-4 and issue-3 speed scripts in quick mode: every row measured and finite."""
    from benchmarks import dataset_speed

    rows = dataset_speed.main(quick=True)
    assert [r["unit"] for r in rows] == ["candles/s", "tokens/s", "tokens/s"]
    assert rows[0]["candles"] == 50 * (2_000 - 1)  # every bar but each series' anchor
    assert "without it" in rows[0]["note"]
    for r in rows:
        assert r["per_s"] > 0 and math.isfinite(r["per_s"]) and r["peak_rss_mib"] > 0
    from benchmarks import tokenizer_speed

    trows = tokenizer_speed.main(quick=True)  # asserts the naive encoders agree, too
    stages = ["features -> tokens", "bars -> tokens, first call", "bars -> tokens, warm"]
    assert [(r["scheme"][:4], r["stage"]) for r in trows] == [
        (s, st) for s in ("bins", "kmea") for st in stages]
    for r in trows:
        assert r["per_s"] > 0 and math.isfinite(r["speedup"]) and r["candles"] == 200_000
        assert r["per_s"] >= r["median_per_s"] > 0  # best of the calls, then their median
