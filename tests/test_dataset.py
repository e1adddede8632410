"""Token datasets: time splits without leakage, atomic folders, exact window coverage."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.dataset as pads
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from candletok import DatasetError
from candletok.core.errors import CandletokError
from candletok.core.ids import IGNORE_INDEX as IGNORE
from candletok.data.sample import load_sample
from candletok.dataset.build import build_dataset
from candletok.dataset.manifest import decode_dataset, read_split
from candletok.dataset.torchdata import TokenDataset, TokenStream, window_index
from candletok.tokenize.bins import BinsTokenizer

SYMS = ["AAPL", "IBM", "MSFT"]


def sample_loader(symbols, **_: object) -> pl.DataFrame:
    return load_sample(list(symbols))


@pytest.fixture(scope="module")
def ds_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ds") / "data"
    build_dataset(SYMS, out, scheme="bins", loader=sample_loader, shard_rows=2_000,
                  group_size=2, test_from="2012-01-01", val_from="2011-01-01")
    return out


def test_manifest_and_splits_respect_time_per_symbol(ds_root: Path) -> None:
    m = json.loads((ds_root / "manifest.json").read_text())
    assert m["format"] == "candletok-dataset/2"
    assert sorted(m["symbols"]) == SYMS
    train, val, test = (read_split(ds_root, s) for s in ("train", "val", "test"))
    cut_val = pl.datetime(2011, 1, 1, time_zone="UTC")
    cut_test = pl.datetime(2012, 1, 1, time_zone="UTC")
    assert train.filter(pl.col("ts") >= cut_val).height == 0
    assert val.filter((pl.col("ts") < cut_val) | (pl.col("ts") >= cut_test)).height == 0
    assert test.filter(pl.col("ts") < cut_test).height == 0
    for df in (train, val, test):
        assert df.equals(df.sort("symbol", "ts"))
        assert set(df["symbol"].unique()) == set(SYMS)
    # every candle but each series' first lands in exactly one split
    total = sum(df.height for df in (train, val, test))
    assert total == load_sample(SYMS).height - len(SYMS)
    # several shards were written and each carries the fingerprint
    shards = m["splits"]["train"]["shards"]
    assert len(shards) > 1 and sum(s["rows"] for s in shards) == train.height
    meta = pl.read_parquet_metadata(ds_root / shards[0]["path"])
    assert meta["candletok.fingerprint"] == m["fingerprint"]


def test_rows_carry_each_candles_own_bar(ds_root: Path) -> None:
    """Format 2: every row holds its candle's real bar, so the dataset alone gives forward
    outcomes, ranges and charts; only each series' first (anchor) bar has no row."""
    rows = pl.concat([read_split(ds_root, s) for s in ("train", "val", "test")])
    bars = load_sample(SYMS)
    joined = rows.join(bars, on=["symbol", "ts"], suffix="_bar")
    assert joined.height == rows.height == bars.height - len(SYMS)
    for c in ("open", "high", "low", "close", "volume"):
        assert joined[c].equals(joined[f"{c}_bar"].alias(c)), c
    for _, g in rows.sort("symbol", "ts").group_by("symbol", maintain_order=True):
        assert g["close"][:-1].equals(g["prev_close"][1:].alias("close"))


def test_vocab_is_fit_on_train_bars_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[pl.DataFrame] = []
    orig = BinsTokenizer.fit

    def spy(self: BinsTokenizer, bars: pl.DataFrame) -> BinsTokenizer:
        seen.append(bars)
        return orig(self, bars)

    monkeypatch.setattr(BinsTokenizer, "fit", spy)
    build_dataset(SYMS, tmp_path / "d", loader=sample_loader, val_from="2010-06-01",
                  test_from="2012-01-01")
    assert len(seen) == 1
    assert seen[0]["ts"].max().date().isoformat() < "2010-06-01"
    assert seen[0].height > 1000


def test_default_split_is_last_ten_percent(tmp_path: Path) -> None:
    r = build_dataset(["IBM"], tmp_path / "d", loader=sample_loader)
    b = r.manifest["boundaries"]
    first, last = (np.datetime64(b[k][:19]) for k in ("first", "last"))
    vf, tf = (np.datetime64(b[k][:19]) for k in ("val_from", "test_from"))
    span = last - first
    assert abs((last - tf) / span - 0.1) < 0.01
    assert abs((tf - vf) / span - 0.1) < 0.01


def test_decode_within_bounds(ds_root: Path) -> None:
    bars = decode_dataset(ds_root, "test")
    true = load_sample(SYMS)
    j = bars.join(true, on=["symbol", "ts"], suffix="_t")
    assert j.height == read_split(ds_root, "test").height
    err = (j["close"] / j["close_t"]).log().abs() * 1e4
    assert err.median() < 30  # basis points
    stats = json.loads((ds_root / "manifest.json").read_text())["stats"]["test"]
    assert stats["close_err_median_bps"] == pytest.approx(err.median(), rel=1e-6)
    assert stats["err_candles"] == stats["candles"]  # small dataset: every candle measured


def test_error_figures_on_a_systematic_sample_above_the_cap(tmp_path: Path) -> None:
    full = build_dataset(SYMS, tmp_path / "full", scheme="bins", loader=sample_loader,
                         test_from="2012-01-01", val_from="2011-01-01")
    cut = build_dataset(SYMS, tmp_path / "cut", scheme="bins", loader=sample_loader,
                        test_from="2012-01-01", val_from="2011-01-01", stats_max_candles=2_000)
    f, c = full.stats[0], cut.stats[0]
    assert f.split == c.split == "train" and f.err_candles == f.candles
    total_bars = load_sample(SYMS).height
    stride = -(-total_bars // 2_000)
    assert stride > 1 and abs(c.err_candles - f.candles / stride) <= len(SYMS) * 2
    # Tokens and counts are untouched; only the error figures come from the sample.
    assert (c.candles, c.tokens_used, c.bits_per_candle) == (
        f.candles, f.tokens_used, f.bits_per_candle)
    assert c.close_err_median_bps == pytest.approx(f.close_err_median_bps, rel=0.15)
    assert c.ohlc_err_p95_bps == pytest.approx(f.ohlc_err_p95_bps, rel=0.15)


def test_existing_folder_needs_overwrite(ds_root: Path, tmp_path: Path) -> None:
    with pytest.raises(CandletokError, match="overwrite=True"):  # the API's name, not the flag
        build_dataset(SYMS, ds_root, loader=sample_loader)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(CandletokError, match="not a candletok dataset"):
        build_dataset(SYMS, other, loader=sample_loader, overwrite=True)
    assert (other / "keep.txt").read_text() == "mine"


def test_interrupted_write_leaves_no_loadable_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from candletok.dataset import writer

    def boom(self: object) -> dict:
        raise KeyboardInterrupt

    monkeypatch.setattr(writer.ShardWriter, "close", boom)
    out = tmp_path / "d"
    with pytest.raises(KeyboardInterrupt):
        build_dataset(SYMS, out, loader=sample_loader)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary folder left behind
    with pytest.raises(DatasetError, match="not a dataset folder"):
        TokenDataset(out)


def test_interrupted_overwrite_keeps_the_old_dataset(
    ds_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from candletok.dataset import writer

    copy = tmp_path / "copy"
    shutil.copytree(ds_root, copy)
    before = (copy / "manifest.json").read_text()
    monkeypatch.setattr(writer.ShardWriter, "close", lambda self: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        build_dataset(["IBM"], copy, loader=sample_loader, overwrite=True)
    assert (copy / "manifest.json").read_text() == before
    assert len(TokenDataset(copy, "val", context=16)) > 0


def test_missing_manifest_and_corrupt_shard_are_clear(ds_root: Path, tmp_path: Path) -> None:
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(ds_root, bad)
    shard = bad / "train" / "part-00000.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"part-00000\.parquet is corrupt"):
        TokenDataset(bad, "train")
    shard.unlink()
    with pytest.raises(DatasetError, match=r"part-00000\.parquet is missing"):
        TokenDataset(bad, "train")
    (bad / "manifest.json").unlink()
    with pytest.raises(DatasetError, match=r"no manifest\.json"):
        TokenDataset(bad, "val")


def test_wrong_vocab_is_refused(ds_root: Path, tmp_path: Path) -> None:
    other = BinsTokenizer().fit(load_sample(["GOOG"]))
    path = tmp_path / "v.json"
    other.save(path)
    with pytest.raises(DatasetError, match="encoded with vocab"):
        TokenDataset(ds_root, "train", vocab=path)
    # vocab.json swapped inside the folder: manifest and vocab disagree
    import shutil

    mixed = tmp_path / "mixed"
    shutil.copytree(ds_root, mixed)
    other.save(mixed / "vocab.json")
    with pytest.raises(DatasetError, match="does not match the manifest"):
        TokenDataset(mixed, "train")


def test_folder_reads_with_polars_and_pyarrow(ds_root: Path) -> None:
    lazy = pl.scan_parquet(ds_root / "train" / "*.parquet").select(pl.len()).collect().item()
    arrow = pads.dataset(ds_root / "train", format="parquet").count_rows()
    assert lazy == arrow == read_split(ds_root, "train").height


def test_token_dataset_items(ds_root: Path) -> None:
    ds = TokenDataset(ds_root, "val", context=32)
    x, y = ds[0]
    assert x.dtype == torch.int64 and y.dtype == torch.int64 and x.shape == (32,)
    assert x[0].item() == ds.bos_id
    assert torch.equal(x[1:], y[:-1])  # shifted by one (first window of a long series)
    # every candle of the split is a target exactly once over all windows
    ys = torch.stack([ds[i][1] for i in range(len(ds))])
    assert int((ys != IGNORE).sum()) == ds.n_targets() == read_split(ds_root, "val").height
    series = ds.series()
    assert sum(len(s) for s in series) == ds.n_targets()
    # pickling must not copy the memory-mapped array
    import pickle

    blob = pickle.dumps(ds)
    assert len(blob) < ds.tokens.nbytes / 2 or ds.tokens.nbytes < 4096
    assert torch.equal(pickle.loads(blob)[3][0], ds[3][0])


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 60), min_size=1, max_size=8),
    context=st.integers(1, 24),
)
def test_windows_never_cross_series_and_cover_each_target_once(
    lengths: list[int], context: int
) -> None:
    lens = np.array(lengths)
    ends = np.cumsum(lens + 1)
    bounds = np.stack([ends - lens - 1, ends], axis=1)
    series_id = np.repeat(np.arange(lens.size), lens + 1)  # id of the series of each position
    starts, stops, skips = window_index(bounds, context)
    covered = Counter()
    for s, e, k in zip(starts, stops, skips, strict=True):
        n = min(e, s + context + 1) - s - 1
        assert 1 <= n <= context
        ids = series_id[s : s + n + 1]
        assert (ids == ids[0]).all()  # inputs and targets from one series
        for p in range(s + 1 + k, s + n + 1):
            covered[p] += 1
    bos = set(bounds[:, 0].tolist())
    targets = [p for p in range(int(ends[-1])) if p not in bos]
    assert sorted(covered) == targets
    assert set(covered.values()) == {1}


def test_stream_workers_and_ranks_cover_every_window_once(ds_root: Path) -> None:
    def key(x: torch.Tensor, y: torch.Tensor) -> tuple:
        return tuple(x.tolist()) + tuple(y.tolist())

    ref = TokenDataset(ds_root, "train", context=16)
    want = Counter(key(*ref[i]) for i in range(len(ref)))
    got: Counter = Counter()
    world = 2
    for rank in range(world):
        stream = TokenStream(ds_root, "train", context=16, shuffle_buffer=8, seed=3, block=5,
                             rank=rank, world_size=world, even=False)
        loader = DataLoader(stream, batch_size=None, num_workers=2)
        for x, y in loader:
            got[key(x, y)] += 1
    assert got == want
    # a new epoch deals the blocks in another order
    s = TokenStream(ds_root, "train", context=16, seed=3, block=5, rank=0, world_size=1)
    first = s.window_ids().copy()
    s.set_epoch(1)
    assert not np.array_equal(first, s.window_ids())
    assert sorted(first) == sorted(s.window_ids())


def test_dataloader_batches(ds_root: Path) -> None:
    ds = TokenDataset(ds_root, "train", context=64)
    x, y = next(iter(DataLoader(ds, batch_size=8, shuffle=True, num_workers=2)))
    assert x.shape == (8, 64) and y.shape == (8, 64)
    assert int(x.max()) < ds.vocab_size and int(y.min()) >= IGNORE


def test_batch_path_equals_item_path(ds_root: Path) -> None:
    for context in (7, 64, 4000):  # 4000: longer than any series -> padded windows
        ds = TokenDataset(ds_root, "test", context=context)
        idx = np.arange(len(ds))
        x, y = ds.batch(idx)
        for i in idx:
            xi, yi = ds.window(int(i))
            assert np.array_equal(x[i], xi) and np.array_equal(y[i], yi)
        items = ds.__getitems__([0, len(ds) - 1])
        assert torch.equal(items[1][1], torch.from_numpy(ds.window(len(ds) - 1)[1]))


def test_folder_reads_with_hugging_face_datasets(
    ds_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/datasets.md's `datasets.load_dataset("parquet", ...)` lines, offline."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    datasets = pytest.importorskip("datasets")
    files = {s: str(ds_root / s / "*.parquet") for s in ("train", "val", "test")}
    dd = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "c"))
    for split in ("train", "val", "test"):
        want = read_split(ds_root, split)
        got = dd[split]
        assert got.num_rows == want.height
        assert got.column_names == want.columns
        assert got["token"][:50] == want["token"].head(50).to_list()
    # The folder form picks the splits from the directory names (the _index folder is ignored).
    dd2 = datasets.load_dataset("parquet", data_dir=str(ds_root), cache_dir=str(tmp_path / "d"))
    assert {k: v.num_rows for k, v in dd2.items()} == {
        "train" if k == "train" else ("validation" if k == "val" else "test"):
        read_split(ds_root, k).height for k in ("train", "val", "test")
    }
