"""Test helpers several test files share: tiny trained models, the CLI run in this
process or in a subprocess. Kept here so each recipe is written once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
COARSE = dict(gap_bins=3, body_bins=3, upper_bins=2, lower_bins=2)
# the flags of a training run that takes a second: what a test of the commands needs
TINY_TRAIN_FLAGS = ["--steps", "2", "--context", "16", "--layers", "1", "--width", "16",
                    "--heads", "2", "--eval-every", "2", "--device", "cpu"]


def trained_on_sample(root: Path) -> tuple[Path, Path]:
    """AAPL and MSFT from the bundled sample since 2009 (coarse bins) and a 4-step model:
    (dataset, checkpoint)."""
    from candletok.dataset.build import build_dataset
    from candletok.model.train import TrainConfig, train

    ds = root / "ds"
    build_dataset(["AAPL", "MSFT"], ds, source="sample", start="2009-01-01",
                  tokenizer_params=COARSE)
    cfg = TrainConfig(steps=4, context=16, n_layer=1, n_head=2, n_embd=16, batch_size=8,
                      eval_every=2, eval_windows=8)
    train(ds, cfg, out=root / "m.pt", device="cpu")
    return ds, root / "m.pt"


def trained_on_synthetic(root: Path, levels: bool = False) -> None:
    """``root/ds`` (AAA and BBB, synthetic, coarse bins) and ``root/m.pt``, a 4-step
    model on one torch thread (with level inputs when ``levels``)."""
    import torch

    from candletok.dataset.build import build_dataset
    from candletok.model.train import TrainConfig, train

    build_dataset(["AAA", "BBB"], root / "ds", scheme="bins", source="synthetic",
                  tokenizer_params=COARSE)
    torch.set_num_threads(1)
    cfg = TrainConfig(steps=4, batch_size=4, context=16, n_layer=1, n_head=2, n_embd=16,
                      eval_every=4, warmup_steps=1, levels=levels)
    train(root / "ds", cfg, out=root / "m.pt", device="cpu")


def cli_subprocess(*args: str, cwd: Path, columns: int = 200) -> subprocess.CompletedProcess[str]:
    """``candletok ARGS`` in a fresh interpreter with a bare, offline environment; the code
    under test is this checkout's (PYTHONPATH), not an installed copy."""
    return subprocess.run(
        [sys.executable, "-m", "candletok.cli.main", *args], cwd=cwd, capture_output=True,
        text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "CANDLETOK_OFFLINE": "1", "COLUMNS": str(columns),
             "PYTHONPATH": str(ROOT), "CANDLETOK_CACHE": str(cwd / "cache"),
             "HOME": str(cwd), "OMP_NUM_THREADS": "1"})


def run_main(args: tuple[str, ...], cwd: Path, capsys: pytest.CaptureFixture[str],
             monkeypatch: pytest.MonkeyPatch, **env: str) -> tuple[int, str, str]:
    """The console script's entry point in this process (exit code, stdout, stderr): the
    same error handling as a real run, without a new interpreter per call."""
    from candletok.cli import app as cli_app
    from candletok.cli import main

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["candletok", *args])
    monkeypatch.setattr(cli_app.console, "width", 200)
    monkeypatch.setattr(cli_app.err_console, "width", 200)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    capsys.readouterr()
    with pytest.raises(SystemExit) as ex:
        main.run()
    out = capsys.readouterr()
    return int(ex.value.code or 0), out.out, out.err


def dataset_from_frame(bars: Any, out: Path, vocab: Path | None = None) -> Path:
    """A dataset folder at ``out`` (replaced) from the canonical ``bars`` frame itself (its
    loader serves them), coarse bins unless ``vocab`` is given: what the search tests build
    their planted and edited histories with."""
    from candletok.dataset.build import build_dataset

    def loader(symbols: list[str], **_: Any) -> Any:
        return bars.filter(bars["symbol"].is_in(symbols))

    build_dataset(sorted(bars["symbol"].unique().to_list()), out, loader=loader, vocab=vocab,
                  tokenizer_params=COARSE, overwrite=True)
    return out


def random_calendar_ids(shape: tuple[int, ...], g: Any) -> Any:
    """Random calendar ids (``shape`` + one column per field of the default CalendarSpec,
    each up to its unknown id), drawn from torch generator ``g``."""
    import torch

    from candletok.tokenize.calendar import CalendarSpec

    cols = [torch.randint(0, n + 1, (*shape, 1), generator=g) for n in CalendarSpec().sizes]
    return torch.cat(cols, dim=-1)
