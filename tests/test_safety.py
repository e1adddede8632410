"""Work safety: nothing that existed is replaced without ``--overwrite``, one output folder
has one writer, killed runs leave nothing that stays hidden, SIGTERM stops like Ctrl-C,
a full disk is one sentence naming the path and the space, and bad numbers are refused
with the numbers (issue 20, items 14-20)."""

from __future__ import annotations

import errno
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from candletok.core.atomic import write_parquet_atomic
from candletok.core.errors import CandletokError, OutputError
from candletok.dataset.build import build_dataset
from candletok.model.checkpoint import CHECKPOINT_FORMAT, save_checkpoint

TINY = ["--steps", "4", "--eval-every", "2", "--context", "16", "--layers", "1", "--width",
        "16", "--heads", "2", "--batch", "8", "--threads", "1", "--device", "cpu"]
Invoke = Callable[..., tuple[int, str]]
SMALL_BINS = dict(gap_bins=3, body_bins=3, upper_bins=2, lower_bins=2)


@pytest.fixture()
def invoke(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """Run one command in-process as the console script does (errors become one line);
    returns its exit code and everything it printed."""
    from candletok.cli.main import run

    def call(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["candletok", *args])
        try:
            run()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        cap = capsys.readouterr()
        return code, cap.out + cap.err

    return call


def error_line(text: str) -> str:
    """The one ``error:`` sentence of a failed command (exactly one, no traceback)."""
    lines = [ln for ln in text.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in text and "unexpected" not in text, text
    return lines[0]


def cli(*args: str, cwd: Path) -> subprocess.Popen[str]:
    """The command as a separate process (signals, concurrency), importing this tree."""
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "CANDLETOK_OFFLINE": "1", "COLUMNS": "200",
           "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "candletok.cli.main", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real dataset (two synthetic symbols, a coarse vocabulary)."""
    root = tmp_path_factory.mktemp("safety") / "ds"
    build_dataset(["AAA", "BBB"], root, source="synthetic", tokenizer_kwargs=SMALL_BINS)
    return root


# -- 14: every output needs --overwrite ------------------------------------------------------
OUTPUTS = [  # (command line with {f} for the existing output, and the file it names)
    ("fit IBM --source sample --out {f}", "v.json"),
    ("decode DS --out {f}", "t.parquet"),
    ("train DS --out {f}", "m.pt"),
    ("generate --model m.pt --dataset DS --symbol AAA --plot {f}", "fan.png"),
    ("evaluate DS --plot {f}", "ev.png"),
    ("similar AAA --dataset DS --plot {f}", "s.png"),
    ("download AAPL --source sample --out {f}", "bars.parquet"),
]


@pytest.mark.parametrize(("line", "name"), OUTPUTS, ids=[o[0].split()[0] for o in OUTPUTS])
def test_an_existing_output_needs_overwrite(invoke: Invoke, tmp_path: Path, ds: Path, line: str,
                                            name: str) -> None:
    f = tmp_path / name
    f.write_bytes(b"kept")
    code, out = invoke(*line.replace("DS", str(ds)).format(f=f).split())
    assert code == 1
    msg = error_line(out)
    assert str(f) in msg and "--overwrite" in msg
    assert f.read_bytes() == b"kept"  # nothing replaced


def test_fit_and_decode_replace_with_overwrite(invoke: Invoke, tmp_path: Path, ds: Path) -> None:
    v, t = tmp_path / "v.json", tmp_path / "t.parquet"
    for p in (v, v.with_suffix(".txt"), t):
        p.write_text("old")
    code, out = invoke("fit", "IBM", "--source", "sample", "--out", str(v), "--overwrite")
    assert code == 0, out
    assert v.read_text().startswith("{") and v.with_suffix(".txt").read_text() != "old"
    code, out = invoke("decode", str(ds), "--out", str(t), "--overwrite")
    assert code == 0, out
    assert pl.read_parquet(t).height > 0


def test_fit_refuses_when_only_the_listing_exists(invoke: Invoke, tmp_path: Path) -> None:
    (tmp_path / "v.txt").write_text("notes")
    code, out = invoke("fit", "IBM", "--source", "sample", "--out", str(tmp_path / "v.json"))
    assert code == 1 and "v.txt" in error_line(out)
    assert (tmp_path / "v.txt").read_text() == "notes"


def _checkpoint(path: Path, step: int, stop_reason: str | None) -> None:
    metrics = {"history": []} if stop_reason is None else {"stop_reason": stop_reason}
    save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "step": step,
                           "train_config": {"steps": 100}, "metrics": metrics})


@pytest.mark.parametrize(("reason", "says"), [
    (None, "--resume"),  # killed between boundaries: its last boundary checkpoint
    ("interrupted", "--resume"),
    ("until", "--resume"),
    ("steps", "trained model"),
    ("early_stop", "trained model"),
])
def test_train_over_a_checkpoint_offers_resume_or_needs_overwrite(
        invoke: Invoke, tmp_path: Path, ds: Path, reason: str | None, says: str) -> None:
    m = tmp_path / "m.pt"
    _checkpoint(m, 40, reason)
    before = m.read_bytes()
    code, out = invoke("train", str(ds), "--out", str(m), *TINY)
    msg = error_line(out)
    assert code == 1 and str(m) in msg and says in msg and "--overwrite" in msg
    if says == "--resume":
        assert "step 40 of 100" in msg
    assert m.read_bytes() == before


def test_train_overwrite_starts_again_and_its_own_checkpoints_are_fine(
        invoke: Invoke, tmp_path: Path, ds: Path) -> None:
    m = tmp_path / "m.pt"
    _checkpoint(m, 40, "steps")
    code, out = invoke("train", str(ds), "--out", str(m), *TINY, "--overwrite")
    assert code == 0, out  # the run rewrites its own checkpoint at every boundary
    ck = torch.load(m, weights_only=True)
    assert ck["step"] == 4 and ck["metrics"]["stop_reason"] == "steps"
    code, out = invoke("train", str(ds), "--out", str(m), *TINY[2:], "--steps", "6",
                       "--resume")
    assert code == 0, out  # a resume continues the file it names, no --overwrite needed


# -- 15: one writer per output folder ----------------------------------------------------------
def _wait_for_build(folder: Path, name: str, proc: subprocess.Popen[str]) -> None:
    """Wait until ``proc`` is building ``name`` (its temporary folder exists)."""
    deadline = time.time() + 120
    while not list(folder.glob(f".{name}.*.partial")) and time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    assert list(folder.glob(f".{name}.*.partial")), "the build never started"


def test_a_second_encode_to_a_folder_being_built_refuses(tmp_path: Path) -> None:
    slow = cli("encode", *[f"S{i:03d}" for i in range(300)], "--source", "synthetic",
               "--group-size", "1", "--out", "ds", cwd=tmp_path)
    try:
        _wait_for_build(tmp_path, "ds", slow)
        second = cli("encode", "AAA", "--source", "synthetic", "--out", "ds", cwd=tmp_path)
        _, err = second.communicate(timeout=300)
        assert second.returncode == 1, err  # not a silent replacement of the first's
        msg = error_line(err)
        assert "ds is being written by another candletok run (pid" in msg
        assert slow.poll() is None  # the first goes on
        slow.send_signal(signal.SIGTERM)
        slow.communicate(timeout=120)
    finally:
        slow.kill()
    assert not (tmp_path / "ds").exists() and list(tmp_path.iterdir()) == []


def test_encode_refuses_while_another_run_holds_the_folder(tmp_path: Path) -> None:
    from candletok.core.atomic import lock_output

    out = tmp_path / "ds"
    with lock_output(out), pytest.raises(  # another run holds it
            OutputError, match="being written by another candletok run"):
        build_dataset(["AAA"], out, source="synthetic", tokenizer_kwargs=SMALL_BINS)
    assert not out.exists()
    build_dataset(["AAA"], out, source="synthetic", tokenizer_kwargs=SMALL_BINS)  # free again


def test_a_folder_that_appears_during_the_build_is_not_replaced(tmp_path: Path) -> None:
    """Something that took no lock wrote the folder while we built: checked again at the
    rename, so the later run refuses instead of silently replacing it."""
    from candletok.data.sources import load_bars

    out = tmp_path / "ds"

    def loader(*args: object, **kw: object) -> pl.DataFrame:
        out.mkdir(exist_ok=True)
        (out / "manifest.json").write_text("{}")
        return load_bars(*args, **kw)  # type: ignore[arg-type]

    with pytest.raises(CandletokError, match="appeared while this run was writing it"):
        build_dataset(["AAA"], out, source="synthetic", loader=loader,
                      tokenizer_kwargs=SMALL_BINS)
    assert (out / "manifest.json").read_text() == "{}"
    assert not list(tmp_path.glob(".ds.*"))


# -- 17: --overwrite never deletes what encode did not write -----------------------------------
def test_encode_overwrite_refuses_a_folder_holding_other_files(invoke: Invoke,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "ds"
    build_dataset(["AAA"], out, source="synthetic", tokenizer_kwargs=SMALL_BINS)
    (out / "model.pt").write_bytes(b"a model kept beside its data")
    (out / "notes.txt").write_text("notes")
    (out / "train" / "extra.csv").write_text("x")
    code, text = invoke("encode", "AAA", "--source", "synthetic", "--out", str(out),
                        "--overwrite")
    msg = error_line(text)
    assert code == 1 and all(n in msg for n in ("model.pt", "notes.txt", "train/extra.csv"))
    assert (out / "model.pt").exists() and (out / "notes.txt").exists()
    assert (out / "train" / "extra.csv").exists()
    for f in (out / "model.pt", out / "notes.txt", out / "train" / "extra.csv"):
        f.unlink()
    (out / "_index" / "search").mkdir(parents=True)  # derived files: rebuilt, not refused
    code, text = invoke("encode", "AAA", "--source", "synthetic", "--out", str(out),
                        "--overwrite")
    assert code == 0, text


# -- 18: temporary folders of killed runs are removed and reported -----------------------------
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_partial_folders_are_removed_and_reported(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "ds"
    dead = tmp_path / f".ds.p{_dead_pid()}-abcd1234.partial"
    live = tmp_path / f".ds.p{os.getppid()}-efgh5678.partial"  # a running process's
    old = tmp_path / ".ds.olderver.partial"  # no pid in the name: by age only
    fresh = tmp_path / ".ds.newerver.partial"
    other = tmp_path / f".other.p{_dead_pid()}-abcd1234.partial"  # another output's
    for d in (dead, live, old, fresh, other):
        d.mkdir()
        (d / "part-00000.parquet").write_bytes(b"x" * 2000)
    week = time.time() - 7 * 24 * 3600
    os.utime(old, (week, week))
    with caplog.at_level(logging.WARNING, logger="candletok"):
        build_dataset(["AAA"], out, source="synthetic", tokenizer_kwargs=SMALL_BINS)
    assert not dead.exists() and not old.exists()
    assert live.exists() and fresh.exists() and other.exists()
    text = caplog.text
    assert dead.name in text and old.name in text and "2.0 kB" in text
    from candletok.core.atomic import clean_stale_partials

    assert clean_stale_partials(out) == []  # nothing left to remove


def test_sigterm_during_encode_leaves_no_partial_folder(tmp_path: Path) -> None:
    syms = [f"S{i:03d}" for i in range(300)]
    p = cli("encode", *syms, "--source", "synthetic", "--group-size", "1", "--out", "ds",
            cwd=tmp_path)
    try:
        _wait_for_build(tmp_path, "ds", p)
        time.sleep(0.5)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == 143, err
    assert "terminated" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no folder, no partial, no lock file


# -- 16: SIGTERM stops training like Ctrl-C ------------------------------------------------------
def test_sigterm_during_train_saves_a_checkpoint_and_exits_143(tmp_path: Path, ds: Path) -> None:
    m = tmp_path / "m.pt"
    p = cli("train", str(ds), *TINY[2:], "--steps", "100000", "--eval-every", "2",
            "--patience", "0", "--out", str(m), cwd=tmp_path)
    try:
        assert p.stdout is not None
        first = p.stdout.readline()  # the first evaluation is written: SIGTERM
        assert first.startswith("step 2/100000"), first
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=300)
    finally:
        p.kill()
    assert p.returncode == 143, err
    assert "--resume" in err and "Traceback" not in err
    ck = torch.load(m, weights_only=True)
    assert 2 <= ck["step"] < 100000 and ck["metrics"]["stop_reason"] == "interrupted"


# -- 19: a full disk is one sentence naming the path and the space -------------------------------
def _disk_full(kind: str) -> BaseException:
    if kind == "oserror":
        return OSError(errno.ENOSPC, "No space left on device")
    if kind == "polars":
        return pl.exceptions.ComputeError("failed to write: No space left on device "
                                          "(os error 28)")
    return RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")


def _raise(exc: BaseException):  # type: ignore[no-untyped-def]
    def writer(*args: object, **kw: object) -> None:
        raise exc
    return writer


@pytest.mark.parametrize("kind", ["oserror", "polars", "torch"])
def test_a_full_disk_in_any_writer_names_the_path_and_the_space(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    monkeypatch.setattr(pl.DataFrame, "write_parquet", _raise(_disk_full(kind)))
    f = tmp_path / "bars.parquet"
    with pytest.raises(OutputError) as e:
        write_parquet_atomic(pl.DataFrame({"a": [1]}), f)
    msg = str(e.value)
    assert str(f) in msg and "disk is full" in msg and "free in" in msg
    assert ".tmp" not in msg and list(tmp_path.iterdir()) == []


def test_a_full_disk_in_each_command_is_one_sentence(
        invoke: Invoke, tmp_path: Path, ds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """train (torch.save), encode, decode and download (polars), fit (a plain OSError)."""
    cases = [
        ("torch.save", _disk_full("torch"), ["train", str(ds), *TINY], "m.pt"),
        ("write_parquet", _disk_full("polars"),
         ["encode", "AAA", "--source", "synthetic"], "newds"),
        ("write_parquet", _disk_full("polars"), ["decode", str(ds)], "t.parquet"),
        ("write_parquet", _disk_full("polars"),
         ["download", "AAPL", "--source", "sample"], "b.parquet"),
        ("write_text", _disk_full("oserror"), ["fit", "IBM", "--source", "sample"], "v.json"),
    ]
    for target, exc, args, name in cases:
        with monkeypatch.context() as mp:
            owner = {"torch.save": torch, "write_parquet": pl.DataFrame,
                     "write_text": Path}[target]
            mp.setattr(owner, target.split(".")[-1], _raise(exc))
            code, out = invoke(*args, "--out", str(tmp_path / name))
        msg = error_line(out)
        assert code == 1 and str(tmp_path / name) in msg, (args, msg)
        assert "disk is full" in msg and "free in" in msg, msg
        if name == "m.pt":  # the checkpoint knows its size
            assert re.search(r"about [\d.]+ [kM]B needed", msg), msg
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], args


# -- 20: bad numbers are one sentence --------------------------------------------------------------
def _csv(path: Path, n: int) -> Path:
    rows = [f"X,2020-01-{i + 1:02d},1,1.1,0.9,{1 + 0.01 * i},10" for i in range(n)]
    path.write_text("symbol,ts,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    return path


BAD = [  # (command line, what the one sentence must say)
    ("train DS --seed -1 --out M", "seed must be 0 or more, not -1"),
    ("encode AAA --source synthetic --scheme kmeans --k 8 --seed -1 --out O",
     "--seed must be 0 or more, not -1"),
    ("evaluate DS --seed -1", "--seed must be 0 or more, not -1"),
    ("generate --model M --dataset DS --symbol AAA --seed -1",
     "--seed must be 0 or more, not -1"),
    ("train DS --nproc 0 --out M", "--nproc must be at least 1, not 0"),
    ("train DS --nproc -1 --out M", "--nproc must be at least 1, not -1"),
    ("encode X --source CSV1 --out O", "only 1 bar was loaded, and a candle needs the bar"),
    ("encode X --source CSV2 --out O", "2 bars loaded, 1 before the validation cut"),
    ("encode X --source CSV3 --out O --val-from 2020-01-02 --test-from 2020-01-03",
     "3 bars loaded, 1 before the validation cut 2020-01-02"),
]


@pytest.mark.parametrize(("line", "says"), BAD, ids=[b[0] for b in BAD])
def test_bad_numbers_are_one_sentence(invoke: Invoke, tmp_path: Path, ds: Path, line: str,
                                      says: str) -> None:
    subs = {"DS": str(ds), "M": str(tmp_path / "m.pt"), "O": str(tmp_path / "o"),
            **{f"CSV{n}": str(_csv(tmp_path / f"b{n}.csv", n)) for n in (1, 2, 3)}}
    code, out = invoke(*[subs.get(a, a) for a in line.split()])
    msg = error_line(out)
    assert code == 1 and says in msg, msg
    if "bars loaded" in says:
        assert "needs at least 3 bars" in msg  # how many are needed, not only "none"
        assert "--val-from" in msg if "--val-from" in line else "at least 4 bars" in msg
    assert not (tmp_path / "o").exists() and not (tmp_path / "m.pt").exists()


@settings(max_examples=40, deadline=None)
@given(st.sets(st.one_of(st.sampled_from(["manifest.json", "vocab.json", "vocab.txt", "train",
                                          "val", "test", "_index", "model.pt", "notes"]),
                         st.text("abcxyz._-", min_size=1, max_size=8)), max_size=8),
       st.sets(st.sampled_from(["part-00000.parquet", "part-00001.parquet", "x.csv",
                                "part-0.txt", "sub"]), max_size=4))
def test_overwrite_refuses_exactly_what_a_build_did_not_write(top: set[str],
                                                             in_train: set[str]) -> None:
    """Whatever a dataset folder holds, the names ``encode --overwrite`` refuses are the
    top-level names outside a dataset's own and the non-shard files in its split folders:
    nothing of its own is refused, nothing foreign is missed."""
    import tempfile

    from candletok.dataset.build import DATASET_ENTRIES, foreign_entries

    top = {n for n in top if n not in (".", "..")}
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        for n in top | {"train"}:
            if n in ("train", "val", "test", "_index", "sub"):
                (root / n).mkdir(exist_ok=True)
            else:
                (root / n).write_text("x")
        for n in in_train:
            (root / "train" / n).mkdir() if n == "sub" else (root / "train" / n).write_text("x")
        want = sorted(n for n in top if n not in DATASET_ENTRIES) + sorted(
            f"train/{n}" for n in in_train if not n.startswith("part-") or n == "part-0.txt")
        assert foreign_entries(root) == want


def test_a_full_disk_in_a_nested_write_names_the_file_that_did_not_fit(
        tmp_path: Path) -> None:
    """fit writes v.json and v.txt together: when v.txt does not fit, the sentence names
    v.txt, not the outer v.json (issue 20 item 19)."""
    import errno

    from candletok.core.atomic import atomic_path

    outer, inner = tmp_path / "v.json", tmp_path / "v.txt"
    with pytest.raises(OutputError) as e, atomic_path(outer) as a, atomic_path(inner) as b:
        a.write_text("{}")
        b.write_text("x" * 10)
        raise OSError(errno.ENOSPC, "No space left on device")
    assert str(inner) in str(e.value) and str(outer) not in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_fit_names_the_txt_when_only_the_txt_does_not_fit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from candletok.data.synthetic import synthetic_bars
    from candletok.tokenize.bins import BinsTokenizer

    tok = BinsTokenizer(gap_bins=3, body_bins=3, upper_bins=2, lower_bins=2).fit(
        synthetic_bars("AAA", n_bars=200))
    real = Path.write_text

    def txt_full(self: Path, *a: object, **k: object) -> int:
        if ".v.txt." in self.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", txt_full)
    with pytest.raises(OutputError) as e:
        tok.save(tmp_path / "v.json")
    assert str(tmp_path / "v.txt") in str(e.value) and "v.json" not in str(e.value)
    assert list(tmp_path.iterdir()) == []
