"""Issue 20, the search's part: what `similar`, `motifs` and training read is what
`encode` wrote (shard checksums before the first index build, Parquet fingerprints
against the manifest, every `_index` array checksummed, a model-vector cache keyed by
content), and inputs without an answer are refused in one sentence."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from candletok.core.atomic import sha256_file, write_parquet_atomic
from candletok.core.errors import CandletokError, DatasetError
from candletok.data.synthetic import synthetic_bars
from candletok.dataset.build import build_dataset
from candletok.dataset.manifest import FINGERPRINT_KEY, verify_dataset
from candletok.search.index import index_dir, open_index
from candletok.search.motifs import motifs
from candletok.search.similar import similar

PARAMS = {"gap_bins": 3, "body_bins": 3, "upper_bins": 2, "lower_bins": 2}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small dataset as `encode` writes it; tests that damage it work on a copy."""
    work = tmp_path_factory.mktemp("integrity")
    bars = synthetic_bars(["AA", "BB", "CC"], n_bars=300, seed=5)

    def loader(symbols: list[str], **_: Any) -> pl.DataFrame:
        return bars.filter(pl.col("symbol").is_in(symbols))

    build_dataset(["AA", "BB", "CC"], work / "ds", loader=loader, tokenizer_params=PARAMS)
    return work / "ds"


@pytest.fixture
def ds(pristine: Path, tmp_path: Path) -> Path:
    shutil.copytree(pristine, tmp_path / "ds")
    return tmp_path / "ds"


def _manifest(root: Path) -> dict[str, Any]:
    return json.loads((root / "manifest.json").read_text())


def _save_manifest(root: Path, m: dict[str, Any]) -> None:
    (root / "manifest.json").write_text(json.dumps(m, indent=2))


# ---- item 10: shards are verified before the first index build -------------------------
@pytest.mark.parametrize("build", ["similar", "motifs"])
def test_a_shard_edited_after_encode_is_refused_before_the_index_is_built(
        ds: Path, build: str) -> None:
    shard = ds / _manifest(ds)["splits"]["train"]["shards"][0]["path"]
    df = pl.read_parquet(shard)
    meta = pl.read_parquet_metadata(shard)
    # a plausible edit: every close 1% higher, the vocabulary's metadata kept
    write_parquet_atomic(df.with_columns(pl.col("close") * 1.01), shard, metadata=meta)
    with pytest.raises(DatasetError, match="corrupt"):
        if build == "similar":
            similar(ds, "AA", last=2, horizons=(1,))
        else:
            motifs(ds, n=2, top=3, horizons=(1,))
    assert not (index_dir(ds) / "meta.json").exists()  # nothing built from the bad shard


def test_a_shard_edited_after_the_index_was_built_is_refused(ds: Path) -> None:
    similar(ds, "AA", last=2, horizons=(1,))  # builds and saves the index
    shard = ds / _manifest(ds)["splits"]["test"]["shards"][0]["path"]
    meta = pl.read_parquet_metadata(shard)
    write_parquet_atomic(pl.read_parquet(shard).with_columns(pl.col("high") * 1.02), shard,
                         metadata=meta)
    with pytest.raises(DatasetError, match="changed since the manifest was written"):
        similar(ds, "AA", last=2, horizons=(1,))


# ---- item 12: the Parquet fingerprint is compared with the manifest -------------------
def test_a_shard_of_another_vocabulary_is_refused_by_verification(ds: Path) -> None:
    m = _manifest(ds)
    entry = m["splits"]["val"]["shards"][0]
    shard = ds / entry["path"]
    meta = pl.read_parquet_metadata(shard)
    meta[FINGERPRINT_KEY] = "f" * 16
    write_parquet_atomic(pl.read_parquet(shard), shard, metadata=meta)
    entry["sha256"] = sha256_file(shard)  # the checksum alone cannot tell
    _save_manifest(ds, m)
    with pytest.raises(DatasetError, match="written with vocab ffff"):
        verify_dataset(ds)
    with pytest.raises(DatasetError, match="written with vocab ffff"):
        open_index(ds)


# ---- item 11: every _index array is checksummed -----------------------------------------
def _move_boundary(ds: Path, split: str = "train") -> Path:
    """Shift the second series' start back one token: still back to back, still the
    array's length, but the first symbol's last candle now opens the second symbol."""
    path = ds / "_index" / f"{split}.series.npy"
    b = np.load(path)
    b[0, 1] -= 1
    b[1, 0] -= 1
    np.save(path, b)
    return path


def test_a_moved_series_boundary_is_refused(ds: Path) -> None:
    from candletok.dataset.torchdata import TokenDataset, TokenStream

    assert _manifest(ds)["splits"]["train"]["series_sha256"]
    path = _move_boundary(ds)
    with pytest.raises(DatasetError, match=r"series\.npy is corrupt"):
        verify_dataset(ds, ["train"])
    with pytest.raises(DatasetError, match=r"series\.npy"):
        TokenDataset(ds, "train", context=8)
    # unverified readers (the distributed stream) still refuse windows across symbols
    with pytest.raises(DatasetError, match=r"series\.npy does not match"):
        TokenStream(ds, "train", context=8)
    assert path.exists()


def test_a_dataset_written_before_series_checksums_still_loads_and_is_checked(
        ds: Path, caplog: pytest.LogCaptureFixture) -> None:
    from candletok.dataset.torchdata import TokenDataset

    m = _manifest(ds)
    for split in m["splits"].values():
        del split["series_sha256"]
    _save_manifest(ds, m)
    with caplog.at_level(logging.INFO, logger="candletok.dataset.manifest"):
        verify_dataset(ds)
    assert "predates series checksums" in caplog.text
    assert len(TokenDataset(ds, "train", context=8)) > 0
    _move_boundary(ds)  # the bounds are checked against the verified tokens' BOS markers
    with pytest.raises(DatasetError, match=r"series\.npy does not match"):
        TokenDataset(ds, "train", context=8)


def test_a_token_index_with_a_changed_token_is_refused(ds: Path) -> None:
    path = ds / "_index" / "val.tokens.npy"
    t = np.load(path)
    t[5] = t[5] + 1 if t[5] + 1 < 40 else t[5] - 1
    np.save(path, t)
    with pytest.raises(DatasetError, match=r"tokens\.npy is corrupt"):
        verify_dataset(ds, ["val"])


# ---- item 13: the model-vector cache is keyed by content --------------------------------
def _random_model(path: Path, vocab_size: int, fingerprint: str) -> None:
    """A tiny checkpoint with random weights everywhere (a fresh model's final hidden
    states can all be 0, and then any vectors, zeros included, give the same order)."""
    import torch

    from candletok.model.checkpoint import CHECKPOINT_FORMAT, save_checkpoint
    from candletok.model.gpt import CandleGPT, GPTConfig

    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=vocab_size, context=16, n_layer=1, n_head=2, n_embd=16,
                    dropout=0.0)
    model = CandleGPT(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p))
    save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "gpt_config": cfg.to_dict(),
                           "model": model.state_dict(), "fingerprint": fingerprint})


@pytest.mark.parametrize("damage", ["zeros", "pickled", "truncated"])
def test_a_damaged_model_vector_cache_is_rebuilt_with_a_warning(
        ds: Path, tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    tok = open_index(ds).tokenizer()
    ckpt = tmp_path / "m.pt"
    _random_model(ckpt, tok.vocab_size, tok.fingerprint)
    kw: dict[str, Any] = dict(last=3, mode="model", model=ckpt, top=5, horizons=(1,))
    want = similar(ds, "BB", **kw)
    (cache,) = index_dir(ds).glob("model-*-n3.npy")
    good = np.load(cache)
    assert np.abs(good).sum() > 0
    if damage == "zeros":
        np.save(cache, np.zeros_like(good))
    elif damage == "pickled":
        np.save(cache, np.array([good], dtype=object), allow_pickle=True)
    else:
        cache.write_bytes(cache.read_bytes()[:200])
    with caplog.at_level(logging.WARNING, logger="candletok.search.embed"):
        got = similar(ds, "BB", **kw)
    assert "rebuilding the cached model vectors" in caplog.text
    assert got._e.tolist() == want._e.tolist()
    assert np.array_equal(np.load(cache), good)  # and the cache is whole again
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="candletok.search.embed"):
        similar(ds, "BB", **kw)
    assert "rebuilding" not in caplog.text  # a good cache is used without a word


# ---- item 20 (the search's rows): refused in one sentence, or answered ----------------
@pytest.mark.parametrize(("args", "code", "words"), [
    (("similar", "AA", "--horizon", "100000", "--no-calibrate"), 1,
     "No outcome 100000 bars after a 5-candle window exists"),
    (("similar", "AA", "--horizon", "1,100000", "--json", "--no-calibrate"), 1,
     "use horizons of at most"),
    (("motifs", "--horizon", "100000"), 1, "No outcome 100000 bars after a 3-candle"),
    (("similar", "aa", "--last", "2", "--no-calibrate", "--json"), 0, '"symbol": "AA"'),
])
def test_similar_and_motifs_inputs_table(pristine: Path, args: tuple[str, ...], code: int,
                                         words: str, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from test_search_cli import run_cli

    full = (*args[:1], "ds", *args[1:]) if args[0] == "motifs" else \
        (*args[:2], "--dataset", "ds", *args[2:])
    got, out, err = run_cli(full, pristine.parent, capsys, monkeypatch)
    assert got == code, (out, err)
    if code:
        assert words in err and "Traceback" not in err and "nan" not in err
        assert len(err.strip().splitlines()) == 1, err
    else:
        assert words in out and "nan%" not in out


def test_horizons_past_the_data_are_refused_by_the_library(pristine: Path) -> None:
    with pytest.raises(CandletokError, match="longest series has"):
        similar(pristine, "AA", last=3, horizons=(1, 10_000))
    assert similar(pristine, "aa", last=2, horizons=(1,)).summary["symbol"] == "AA"


# ---- the search index's own arrays: saved with checksums, rebuilt when edited ----------
@pytest.mark.parametrize("name", ["close", "high", "tokens"])
def test_an_edited_search_index_array_is_rebuilt_not_shown(ds: Path, name: str,
                                                           caplog: pytest.LogCaptureFixture
                                                           ) -> None:
    """An array of the saved search index edited in place (same size, another value) is
    never trusted: the index is rebuilt with a warning and the answer is the real one."""
    res = similar(ds, "CC", last=3, horizons=(1,))
    want = (res.query.rows(), res.matches.rows())  # copies: the result maps the arrays
    del res
    path = index_dir(ds) / f"{name}.npy"
    arr = np.load(path)
    arr[-1] = arr[-1] * 2 if arr.dtype.kind == "f" else arr[-1] ^ 1  # another value
    np.save(path, arr)
    with caplog.at_level(logging.WARNING, logger="candletok"):
        got = similar(ds, "CC", last=3, horizons=(1,))
    assert "changed since the index was built" in caplog.text
    assert (got.query.rows(), got.matches.rows()) == want
    assert open_index(ds, rebuild=False).n == got.summary.get("candles", open_index(ds).n)


def test_edited_cached_base_rate_sums_are_recomputed(ds: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    want = similar(ds, "CC", last=3, horizons=(1, 3)).outcomes  # computed, not mapped
    days = index_dir(ds) / "days.npz"
    if not days.exists():
        pytest.skip("this index caches no base-rate sums")
    with np.load(days) as z:
        parts = {k: z[k] for k in z.files}
    parts["cums"] = parts["cums"] * 0
    np.savez(days, **parts)
    with caplog.at_level(logging.WARNING, logger="candletok"):
        got = similar(ds, "CC", last=3, horizons=(1, 3))
    assert "do not match their checksum" in caplog.text
    assert got.outcomes.equals(want)


def test_a_rebuild_hashes_only_the_shards_changed_since_the_index_verified_them(
        ds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rebuild of a fresh index trusts the shards' (size, mtime) it recorded when it
    verified them, as loading it does: none is hashed again; a shard edited since (its
    stat differs) is hashed and refused."""
    from candletok.dataset import manifest as mf

    open_index(ds)
    shards = {s["path"] for sp in _manifest(ds)["splits"].values() for s in sp["shards"]}
    hashed: list[Path] = []

    def counting(path: Any) -> str:
        hashed.append(Path(path))
        return sha256_file(path)

    monkeypatch.setattr(mf, "sha256_file", counting)
    open_index(ds, rebuild=True)
    assert not {str(p.relative_to(ds)) for p in hashed} & shards
    victim = ds / sorted(shards)[0]
    df = pl.read_parquet(victim)
    meta = pl.read_parquet_metadata(victim)
    write_parquet_atomic(df.with_columns(pl.col("close") * 1.01), victim, metadata=meta)
    hashed.clear()
    with pytest.raises(DatasetError, match="corrupt"):
        open_index(ds, rebuild=True)
    assert [str(p.relative_to(ds)) for p in hashed if str(p.relative_to(ds)) in shards] == [
        str(victim.relative_to(ds))]
