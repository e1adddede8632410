"""Writing outputs: errors name the user's path, permissions follow the umask, a failed
write leaves nothing new behind, and settings are checked before anything is written."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from candletok.core.atomic import atomic_path, temp_dir_beside, write_text_atomic
from candletok.core.errors import CandletokError, DatasetError, OutputError, TokenizerError
from candletok.data.synthetic import synthetic_bars
from candletok.dataset.manifest import read_manifest
from candletok.model.train import TrainConfig
from candletok.tokenize.bins import BinsTokenizer


@pytest.fixture()
def umask_027():  # type: ignore[no-untyped-def]
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_a_folder_in_the_way_is_an_output_error_naming_the_users_path(tmp_path: Path) -> None:
    (tmp_path / "x.json").mkdir()
    with pytest.raises(OutputError, match=r"x\.json: it is a folder") as e:
        write_text_atomic(tmp_path / "x.json", "{}")
    assert ".tmp" not in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]  # no temp file left


def test_an_unwritable_parent_names_the_users_path(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("a file, not a folder")
    target = tmp_path / "file" / "out.parquet"
    with pytest.raises(OutputError, match=r"out\.parquet") as e:
        write_text_atomic(target, "x")
    assert ".tmp" not in str(e.value) and isinstance(e.value, CandletokError)


def test_an_error_in_the_writer_passes_through_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError), atomic_path(tmp_path / "y.txt") as tmp:
        tmp.write_text("half")
        1 / 0  # noqa: B018
    assert list(tmp_path.iterdir()) == []


def test_files_and_dataset_folders_get_the_umask_mode(tmp_path: Path, umask_027: None) -> None:
    f = write_text_atomic(tmp_path / "a.txt", "x")
    assert stat.S_IMODE(f.stat().st_mode) == 0o640  # 0666 & ~027, as open() would give
    d = temp_dir_beside(tmp_path / "ds", ".partial")
    assert stat.S_IMODE(d.stat().st_mode) == 0o750


def test_vocab_save_refuses_a_txt_name_and_writes_both_files_or_neither(tmp_path: Path) -> None:
    tok = BinsTokenizer(gap_bins=3, body_bins=3, upper_bins=2, lower_bins=2).fit(
        synthetic_bars(["AAA"], n_bars=300))
    with pytest.raises(TokenizerError, match=r"\.json"):
        tok.save(tmp_path / "v.txt")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "w.txt").mkdir()  # the listing's name is taken by a folder
    with pytest.raises(OutputError, match=r"w\.txt"):
        tok.save(tmp_path / "w.json")
    assert not (tmp_path / "w.json").exists()
    tok.save(tmp_path / "v.json")
    assert (tmp_path / "v.json").exists() and (tmp_path / "v.txt").exists()


@settings(max_examples=20, deadline=None)
@given(st.one_of(st.lists(st.integers(), max_size=3), st.none(), st.integers(),
                 st.text(max_size=5), st.fixed_dictionaries({"format": st.text(max_size=5)}),
                 st.just({"format": "candletok-dataset/1", "splits": []})))
def test_any_json_that_is_not_a_manifest_is_a_dataset_error(obj: object) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "manifest.json").write_text(json.dumps(obj))
        with pytest.raises(DatasetError, match="manifest"):
            read_manifest(d)


def test_demo_checks_its_settings_before_writing_anything(tmp_path: Path) -> None:
    from candletok.demo import DemoConfig, run_demo

    for cfg in (DemoConfig(out=tmp_path / "a", train=TrainConfig(steps=-1)),
                DemoConfig(out=tmp_path / "b", device="tpu")):
        with pytest.raises(CandletokError):
            run_demo(cfg)
    assert list(tmp_path.iterdir()) == []


ROOT = Path(__file__).resolve().parents[1]


def test_gitignore_covers_what_the_readme_writes_but_no_package_file() -> None:
    import shutil
    import subprocess

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    written = ["bars.parquet", "t.parquet", "data/manifest.json", "ds/train/part-0.parquet",
               "vocab.json", "vocab.txt", "v.json", "v.txt", "model.pt", "fan.png",
               "candletok-demo/fan.png", ".venv/bin/python"]
    kept = ["candletok/data/stocks.csv.gz", "candletok/data/ATTRIBUTION.md",
            "candletok/data/sources.py", "docs/demo_fan.png", "benchmarks/quality.png",
            "tests/data/yf_single_daily.pkl", "LICENSE", "README.md"]
    r = subprocess.run(["git", "check-ignore", "--no-index", *written, *kept], cwd=ROOT,
                       capture_output=True, text=True)
    ignored = set(r.stdout.split())
    assert ignored == set(written), (set(written) - ignored, ignored & set(kept))


def test_license_is_mit_as_pyproject_says() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "candletok authors" in text
    assert 'license = { text = "MIT" }' in (ROOT / "pyproject.toml").read_text()
