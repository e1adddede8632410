"""The time rule on real dataset folders: no match or forward window reaches past T in
any symbol, and deleting or changing every bar after T changes nothing in the answer;
the saved index is keyed to the manifest (refused when it does not match, rebuilt when
the dataset changes)."""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from _helpers import dataset_from_frame
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from candletok.core.errors import DatasetError
from candletok.data.synthetic import synthetic_bars
from candletok.dataset.manifest import read_manifest
from candletok.search.index import SearchIndex, dataset_key, index_dir, open_index
from candletok.search.motifs import motifs
from candletok.search.similar import similar

SYMS = ["A", "B", "C"]


def universe() -> pl.DataFrame:
    """Three symbols on one calendar, C starting 40 bars late (calendars differ)."""
    bars = synthetic_bars(SYMS, n_bars=240, seed=7)
    first_c = bars.filter(pl.col("symbol") == "C")["ts"].sort()[40]
    return bars.filter((pl.col("symbol") != "C") | (pl.col("ts") >= first_c))


build = dataset_from_frame  # the shared recipe (tests/_helpers.py)


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> tuple[pl.DataFrame, Path]:
    bars = universe()
    return bars, build(bars, tmp_path_factory.mktemp("timerule") / "full")


@pytest.fixture(scope="module")
def search_model(full: tuple[pl.DataFrame, Path]) -> Path:
    """A search model of the full dataset (``--mode learned``), trained in a second."""
    import torch

    from candletok.search.retrieval_train import SearchTrainConfig, train_search

    torch.set_num_threads(1)
    out = full[1].parent / "m.pt"
    train_search(full[1], out, SearchTrainConfig(horizons=(1, 4), epochs=2, calendar="off",
                                                 embed="hidden", k=5))
    return out


def after_changed(bars: pl.DataFrame, T: Any, seed: int) -> pl.DataFrame:
    """The same bars up to T; after T, other (valid) bars at the same times."""
    other = synthetic_bars(SYMS, n_bars=240, seed=seed).select(
        "symbol", "ts", *[pl.col(c).alias(f"{c}_o") for c in ("open", "high", "low", "close",
                                                              "volume")])
    j = bars.join(other, on=["symbol", "ts"], how="left")
    late = pl.col("ts") > T
    return j.select("symbol", "ts", *[pl.when(late).then(pl.col(f"{c}_o")).otherwise(pl.col(c))
                                      .alias(c) for c in ("open", "high", "low", "close",
                                                          "volume")])


def check_before_t(root: Path, res: Any, T_us: int) -> None:
    """Every listed match and each forward window it reports end at or before T, in
    their own series, away from the query's window."""
    idx = open_index(root)
    z = res.summary["zone"]
    for e, r in zip(res._e.tolist(), res.matches.iter_rows(named=True), strict=True):
        s = int(idx.sid[e])
        end = int(idx.starts[s + 1])
        assert int(idx.ts[e]) <= T_us and e + 1 < end and int(idx.ts[e + 1]) <= T_us
        for h in res.summary["horizons"]:
            if r[f"fwd_{h}"] is not None:
                assert e + h < end and int(idx.ts[e + h]) <= T_us
        if idx.symbols[s] == res.summary["symbol"]:
            q_end = int(np.searchsorted(idx.ts[idx.starts[s] : end], T_us, side="right")) - 1
            assert e <= int(idx.starts[s]) + q_end - z


def same_answer(a: Any, b: Any) -> None:
    assert_frame_equal(a.matches, b.matches, check_exact=False, rel_tol=1e-9)
    assert_frame_equal(a.outcomes, b.outcomes, check_exact=False, rel_tol=1e-9)
    assert_frame_equal(a.next_range, b.next_range, check_exact=False, rel_tol=1e-9)
    # the analogue forecast too: its scale is the query's own, known at T
    assert_frame_equal(a.forecast, b.forecast, check_exact=False, rel_tol=1e-9)
    assert_frame_equal(a.query, b.query, check_exact=False, rel_tol=1e-12)
    skip = {"index_candles", "symbols", "search", "at"}  # the index size, the input echo
    for k, v in a.summary.items():
        if k in skip:
            continue
        w = b.summary[k]
        if isinstance(v, float):
            assert (math.isnan(v) and math.isnan(w)) or v == pytest.approx(w, rel=1e-9), k
        else:
            assert v == w, k
    assert a.words == b.words


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(40, 230),
       mode=st.sampled_from([("exact", "coarse"), ("exact", "tokens"), ("nearest", "coarse"),
                             ("learned", "coarse")]),
       last=st.integers(1, 5), how=st.sampled_from(["delete", "change"]),
       seed=st.integers(0, 10_000))
@example(cut=150, mode=("learned", "coarse"), last=5, how="change", seed=1)  # always covered
@example(cut=200, mode=("learned", "coarse"), last=5, how="delete", seed=2)
def test_bars_after_t_change_nothing(full: tuple[pl.DataFrame, Path], search_model: Path,
                                     cut: int, mode: tuple[str, str], last: int, how: str,
                                     seed: int) -> None:
    bars, root = full
    T = bars.filter(pl.col("symbol") == "A")["ts"].sort()[cut]
    T_us = int(pl.Series([T]).dt.epoch("us")[0])
    kw = {"last": last, "mode": mode[0], "alphabet": mode[1], "at": T, "top": 200,
          "horizons": (1, 4), "min_matches": 3}
    if mode[0] == "learned":  # the search model reads the window it was trained on
        kw = {**kw, "last": 5, "model": search_model}
    want = similar(root, "A", **kw)
    check_before_t(root, want, T_us)
    alt_bars = bars.filter(pl.col("ts") <= T) if how == "delete" else \
        after_changed(bars, T, seed)
    with tempfile.TemporaryDirectory() as tmp:
        alt = build(alt_bars, Path(tmp) / "alt", vocab=root / "vocab.json")
        got = similar(alt, "A", **kw)
        same_answer(want, got)
        if how == "delete":  # without `at`: T is the last bar, the answer is the same
            same_answer(want, similar(alt, "A", **{**kw, "at": None}))


@settings(max_examples=4, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(60, 230), alphabet=st.sampled_from(["coarse", "tokens"]),
       n=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_motifs_ignore_bars_after_t(full: tuple[pl.DataFrame, Path], cut: int, alphabet: str,
                                    n: int, seed: int) -> None:
    """Motif counts and outcomes as of T, over either alphabet, are the same when every
    bar after T is changed (and the symbols are derived from the stored rows of each)."""
    bars, root = full
    T = bars.filter(pl.col("symbol") == "A")["ts"].sort()[cut]
    kw = {"n": n, "top": 8, "horizons": (1, 4), "at": T, "alphabet": alphabet}
    want = motifs(root, **kw)
    with tempfile.TemporaryDirectory() as tmp:
        alt = build(after_changed(bars, T, seed), Path(tmp) / "alt", vocab=root / "vocab.json")
        got = motifs(alt, **kw)
    assert_frame_equal(want.motifs, got.motifs, check_exact=False, rel_tol=1e-9)
    assert_frame_equal(want.outcomes, got.outcomes, check_exact=False, rel_tol=1e-9)
    assert want.words == got.words


def test_index_is_keyed_to_the_manifest(tmp_path: Path) -> None:
    bars = universe()
    ds1 = build(bars.filter(pl.col("symbol").is_in(["A", "B"])), tmp_path / "ds1")
    ds2 = build(bars.filter(pl.col("symbol").is_in(["A", "C"])), tmp_path / "ds2")
    idx1 = open_index(ds1)
    assert idx1.symbols == ["A", "B"] and index_dir(ds1).is_dir()
    assert open_index(ds1, rebuild=False).key == dataset_key(read_manifest(ds1))  # loaded
    # an index copied from another dataset is refused, then rebuilt by open_index
    shutil.copytree(index_dir(ds1), index_dir(ds2))
    with pytest.raises(DatasetError, match="other data"):
        SearchIndex.load(index_dir(ds2), read_manifest(ds2))
    with pytest.raises(DatasetError, match="rebuild=True"):
        open_index(ds2, rebuild=False)
    assert open_index(ds2).symbols == ["A", "C"]
    assert open_index(ds2, rebuild=False).key == dataset_key(read_manifest(ds2))
    # the dataset re-encoded with other symbols: the next open rebuilds
    build(bars.filter(pl.col("symbol").is_in(["B", "C"])), ds1)
    assert open_index(ds1).symbols == ["B", "C"]
    # a shard edited in place no longer matches its manifest: one clear error
    shard = ds1 / read_manifest(ds1)["splits"]["train"]["shards"][0]["path"]
    df = pl.read_parquet(shard)
    df.with_columns(pl.col("close") * 1.01).write_parquet(shard)
    with pytest.raises(DatasetError, match="changed since the manifest"):
        open_index(ds1)
