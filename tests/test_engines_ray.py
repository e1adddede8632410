"""The Ray Data engine on a local Ray (2 CPUs): the same bytes as the local engine, and a
failing symbol named with nothing left behind. Skipped when Ray is not installed (the
dev extra installs it)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from candletok.core.errors import CandletokError
from candletok.data.synthetic import synthetic_bars
from candletok.dataset.build import BuildConfig
from candletok.dataset.torchdata import TokenDataset
from candletok.engines import build

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray internals

SYMBOLS = [f"S{i:02d}" for i in range(11)]


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def bars_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bars folder partitioned by symbol, plus one symbol whose file is not Parquet."""
    root = tmp_path_factory.mktemp("bars")
    bars = synthetic_bars(SYMBOLS, n_bars=500, seed=5)
    for (sym,), part in bars.group_by("symbol"):
        (root / f"symbol={sym}").mkdir()
        part.write_parquet(root / f"symbol={sym}" / "part-0.parquet")
    (root / "symbol=BAD").mkdir()
    (root / "symbol=BAD" / "part-0.parquet").write_bytes(b"not parquet at all")
    return root


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "manifest.json"}


def manifest(root: Path) -> dict:
    m = json.loads((root / "manifest.json").read_text())
    m.pop("created")
    return m


def test_ray_writes_the_local_engines_bytes(local_ray: None, bars_dir: Path,
                                            tmp_path: Path) -> None:
    syms = [*SYMBOLS[:8], "BAD"]  # BAD fails to load: skipped by both; its group is empty
    out = {}
    for engine in ("local", "ray"):
        cfg = BuildConfig(symbols=syms, out=tmp_path / engine, source=str(bars_dir),
                          group_size=4, shard_rows=700, fit_max_candles=2_500, seed=3)
        out[engine] = build(cfg, engine=engine)
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert digests(remote) == digests(local)  # shards, _index, vocab: byte for byte
    assert len([p for p in digests(local) if p.endswith(".parquet")]) > 3
    ml, mr = manifest(local), manifest(remote)
    assert mr["splits"] == ml["splits"] and mr["fingerprint"] == ml["fingerprint"]
    assert mr == ml  # the whole manifest, errors and figures included
    assert list(mr["errors"]) == ["BAD"] and "BAD" not in mr["symbols"]
    assert out["ray"].stats[0].candles == out["local"].stats[0].candles > 0
    assert TokenDataset(remote, "train", context=16).n_targets() == ml["splits"]["train"]["rows"]
    assert not list(tmp_path.glob(".*partial"))


def test_ray_failure_names_the_symbol_and_leaves_nothing(local_ray: None, bars_dir: Path,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "ds"
    cfg = BuildConfig(symbols=[*SYMBOLS[:3], "BAD", SYMBOLS[3]], out=out,
                      source=str(bars_dir), group_size=5, strict=True)
    with pytest.raises(CandletokError, match="BAD") as err:
        build(cfg, engine="ray")
    assert "Symbol BAD" in str(err.value)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no partial folder either


def test_ray_uses_a_given_vocabulary(local_ray: None, bars_dir: Path, tmp_path: Path) -> None:
    first = build(BuildConfig(symbols=SYMBOLS[:3], out=tmp_path / "a", source=str(bars_dir)))
    vocab = tmp_path / "a" / "vocab.json"
    res = build(BuildConfig(symbols=SYMBOLS[3:6], out=tmp_path / "b", source=str(bars_dir),
                            vocab=vocab), engine="ray")
    assert res.manifest["fingerprint"] == first.manifest["fingerprint"]
    rows = pl.read_parquet(tmp_path / "b" / "train" / "*.parquet")
    assert set(rows["symbol"].unique()) == set(SYMBOLS[3:6])


def test_encode_command_with_the_ray_engine(local_ray: None, bars_dir: Path,
                                            tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from candletok.cli.main import app

    args = ["encode", *SYMBOLS[:4], "--source", str(bars_dir), "--shard-rows", "500"]
    for engine in ("ray", "local"):
        r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / engine), "--engine", engine])
        assert r.exit_code == 0, r.output
    assert digests(tmp_path / "ray") == digests(tmp_path / "local")
