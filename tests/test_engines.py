"""Scale-out pieces that need no Ray: the engine entry point, shard counts that common
world sizes divide, the exact prediction of split rows, and TokenStream's equal shares
that read only their own part of the token index."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from candletok.core.errors import CandletokError, DatasetError
from candletok.data.synthetic import synthetic_bars
from candletok.dataset.build import BuildConfig, build_dataset, fit_symbols
from candletok.dataset.torchdata import TokenDataset, TokenStream
from candletok.dataset.writer import MIN_BALANCED_ROWS, SHARD_MULTIPLE, shard_sizes
from candletok.engines import build

WORLD_SIZES = (2, 4, 8, 16, 32, 64)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 50_000_000), st.data())
def test_shard_sizes_add_up_and_large_splits_divide_by_world_sizes(rows: int,
                                                                   data: st.DataObject) -> None:
    shard_rows = data.draw(st.integers(rows // 20_000 + 1, 5_000_000))  # <= 20k shards
    sizes = shard_sizes(rows, shard_rows)
    assert sum(sizes) == rows and min(sizes) >= 1 and max(sizes) <= shard_rows
    n = -(-rows // shard_rows)
    if n > 1 and rows >= MIN_BALANCED_ROWS and -(-n // SHARD_MULTIPLE) * SHARD_MULTIPLE <= rows:
        assert len(sizes) % SHARD_MULTIPLE == 0 and len(sizes) - n < SHARD_MULTIPLE
        assert all(len(sizes) % w == 0 for w in WORLD_SIZES)
        assert max(sizes) - min(sizes) <= 1  # equal files, give or take a row
    else:  # small splits: fixed-size shards, the last one shorter
        assert sizes[:-1] == [shard_rows] * (len(sizes) - 1)


def test_shard_sizes_examples() -> None:
    assert shard_sizes(0, 10) == []
    assert shard_sizes(25, 10) == [10, 10, 5]
    big = shard_sizes(10_000_000, 1_000_000)
    assert len(big) == 64 and set(big) == {156_250}
    assert len(shard_sizes(70_000_000, 1_000_000)) == 128


def synthetic_loader(n_bars: int) -> Any:
    def loader(symbols: list[str], **_: Any) -> pl.DataFrame:
        return synthetic_bars(symbols, n_bars=n_bars, seed=7)
    return loader


@pytest.fixture(scope="module")
def big_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset whose train split is large enough for the multiple-of-64 rule."""
    out = tmp_path_factory.mktemp("big") / "ds"
    cfg = BuildConfig(symbols=[f"S{i}" for i in range(10)], out=out, shard_rows=20_000,
                      group_size=4)
    build(cfg, loader=synthetic_loader(9_000))
    return out


def test_build_predicts_split_rows_and_balances_shards(big_root: Path) -> None:
    m = json.loads((big_root / "manifest.json").read_text())
    train = m["splits"]["train"]
    assert train["rows"] >= MIN_BALANCED_ROWS  # the case the rule is for
    assert len(train["shards"]) % SHARD_MULTIPLE == 0
    rows = [s["rows"] for s in train["shards"]]
    assert sum(rows) == train["rows"] and max(rows) - min(rows) <= 1
    for split in ("val", "test"):  # small: shards of shard_rows, here one each
        assert [s["rows"] for s in m["splits"][split]["shards"]] == [m["splits"][split]["rows"]]
    ds = TokenDataset(big_root, "train", context=32)
    assert ds.n_targets() == train["rows"]


def test_engine_entry_point_checks_its_arguments(tmp_path: Path) -> None:
    cfg = BuildConfig(symbols=["A"], out=tmp_path / "x")
    with pytest.raises(CandletokError, match="Unknown engine 'spark'"):
        build(cfg, engine="spark")
    with pytest.raises(CandletokError, match="ray_address"):
        build(cfg, engine="local", ray_address="auto")


def test_local_engine_is_build_dataset(tmp_path: Path) -> None:
    loader = synthetic_loader(300)
    a = build(BuildConfig(symbols=["A", "B"], out=tmp_path / "a"), loader=loader)
    b = build_dataset(BuildConfig(symbols=["A", "B"], out=tmp_path / "b"), loader=loader)
    assert a.manifest["splits"] == b.manifest["splits"]
    assert a.manifest["fingerprint"] == b.manifest["fingerprint"]


def test_fit_sample_is_whole_symbols_bounded_and_seeded() -> None:
    counts = pl.DataFrame({"symbol": [f"S{i}" for i in range(20)], "len": [100] * 20})
    assert fit_symbols(counts, 5_000, 0) is None  # everything fits
    a = fit_symbols(counts, 550, 3)
    assert a is not None and len(a) == 5
    assert a == fit_symbols(counts.reverse(), 550, 3)  # input order does not matter
    assert a != fit_symbols(counts, 550, 4)
    assert fit_symbols(counts, 10, 0) is not None and len(fit_symbols(counts, 10, 0)) == 1


# ---------------------------------------------------------------- TokenStream shares


@pytest.mark.parametrize("consumers", [1, 2, 3, 4, 8])
def test_stream_shares_are_equal_and_cover_every_window(big_root: Path, consumers: int) -> None:
    shares = [TokenStream(big_root, "train", context=32, block=7, seed=1, rank=r,
                          world_size=consumers).window_ids() for r in range(consumers)]
    total = len(TokenDataset(big_root, "train", context=32, verify=False))
    assert {len(s) for s in shares} == {-(-total // consumers)}
    allw = np.concatenate(shares)
    assert set(allw.tolist()) == set(range(total))
    assert allw.size - total < consumers  # only the wrap-around repeats


def test_stream_workers_split_a_rank_equally(big_root: Path) -> None:
    from torch.utils.data import DataLoader

    seen = []
    for rank in range(2):
        stream = TokenStream(big_root, "val", context=32, rank=rank, world_size=2, block=3)
        n = sum(1 for _ in DataLoader(stream, batch_size=None, num_workers=2))
        seen.append(n)
    total = len(TokenDataset(big_root, "val", context=32, verify=False))
    assert seen == [2 * -(-total // 4)] * 2


class Recorder:
    """Stands for the memory-mapped token array and records every span read from it."""

    def __init__(self, arr: np.ndarray) -> None:
        self.arr, self.spans = arr, []

    @property
    def shape(self) -> tuple[int, ...]:
        return self.arr.shape

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, slice):
            self.spans.append((key.start, key.stop))
        else:
            idx = np.asarray(key)
            self.spans.append((int(idx.min()), int(idx.max()) + 1))
        return self.arr[key]


def test_stream_reads_only_its_share_and_no_checksums(big_root: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def no_hash(path: Any) -> str:
        raise AssertionError(f"a stream must not hash {path}")

    monkeypatch.setattr("candletok.dataset.manifest.sha256_file", no_hash)
    stream = TokenStream(big_root, "train", context=32, rank=1, world_size=4, block=5)
    rec = Recorder(np.asarray(stream.ds.tokens))
    stream.ds._tokens = rec
    mine = stream.window_ids()
    for _ in stream:
        pass
    lo = stream.ds.starts[mine]
    hi = np.minimum(stream.ds.ends[mine], lo + 33)
    allowed = set(zip(lo.tolist(), hi.tolist(), strict=True))
    assert rec.spans and set(rec.spans) <= allowed
    touched = sum(b - a for a, b in set(rec.spans))
    assert touched < 0.4 * rec.shape[0]  # about a quarter of the split, not all of it


def test_stream_refuses_a_token_index_of_the_wrong_length(big_root: Path,
                                                          tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "ds"
    shutil.copytree(big_root, root)
    path = root / "_index" / "val.tokens.npy"
    np.save(path, np.load(path)[:-3])
    with pytest.raises(DatasetError, match="damaged"):
        TokenStream(root, "val", context=32)


def test_scale_benchmark_runs_small(capsys: pytest.CaptureFixture[str]) -> None:
    """The benchmark in miniature, so it cannot rot (no timing is asserted)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import scale_speed

    scale_speed.main(["--no-ray", "--symbols", "3", "--bars", "300", "--read-bars", "3000"])
    out = capsys.readouterr().out
    assert "local" in out and "900" in out  # 3 x 300 candles encoded
    for what in ("CSV file", "Parquet file", "Parquet folder"):
        line = next(ln for ln in out.splitlines() if ln.startswith(what))
        assert line.rstrip().endswith("x") and float(line.split()[-1][:-1]) > 0


# ---------------------------------------------------------------- the command line


def cli(*args: str) -> Any:
    """The command in this process (a subprocess would import everything again)."""
    from typer.testing import CliRunner

    from candletok.cli.main import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_download_to_a_folder_then_encode_from_it_with_a_symbol_list(tmp_path: Path) -> None:
    (tmp_path / "syms.txt").write_text("# two tickers\naaa\nbbb\n")
    syms, bars = f"@{tmp_path / 'syms.txt'}", tmp_path / "bars"
    r = cli("download", syms, "--source", "synthetic", "--bars", "400", "--out", bars)
    assert r.exit_code == 0, r.output
    for sym in ("AAA", "BBB"):
        part = pl.read_parquet(bars / f"symbol={sym}" / "part-0.parquet")
        assert part["symbol"].unique().to_list() == [sym] and part.height == 400
    r = cli("encode", syms, "--source", bars, "--out", tmp_path / "ds", "--engine", "local")
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert m["symbols"] == ["AAA", "BBB"] and m["splits"]["train"]["rows"] > 0
    r = cli("download", "AAA", "--source", "synthetic", "--out", tmp_path / "ds")
    assert r.exit_code != 0 and "dataset folder" in str(r.exception)  # run() prints it


def test_encode_engine_flags_are_checked(tmp_path: Path) -> None:
    out = tmp_path / "data"
    r = cli("encode", "AAPL", "--source", "sample", "--engine", "spark", "--out", out)
    assert r.exit_code != 0 and "--engine" in r.output
    r = cli("encode", "AAPL", "--source", "sample", "--ray-address", "auto", "--out", out)
    assert r.exit_code != 0 and "--engine ray" in r.output
    assert not out.exists()
