"""Distributed training: a real 2-process gloo run through ``candletok train --nproc 2``
(torchrun) follows the one-process run with the same global batch, writes one checkpoint
that loads, and resumes with one process; plus the launcher's pure pieces."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from candletok.core.errors import ModelError
from candletok.model.checkpoint import load_model, read_checkpoint
from candletok.model.ddp import forwarded_args, is_distributed, torchrun_command, world_from_env
from candletok.model.train import Ranks, TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
# One config for both runs; dropout 0 because dropout masks are drawn per rank.
CFG = dict(steps=8, eval_every=4, batch_size=8, context=32, n_layer=1, n_head=2, n_embd=32,
           dropout=0.0, lr=1e-2, threads=1, seed=3)
FLAGS = ["--steps", "8", "--eval-every", "4", "--batch", "8", "--context", "32",
         "--layers", "1", "--heads", "2", "--width", "32", "--dropout", "0", "--lr", "1e-2",
         "--threads", "1", "--seed", "3", "--device", "cpu"]


def _dataset(root: Path) -> Path:
    from candletok.dataset.build import build_dataset

    build_dataset(["AAA", "BBB"], root, scheme="bins", source="synthetic", overwrite=True,
                  tokenizer_kwargs=dict(gap_bins=3, body_bins=3, upper_bins=2, lower_bins=2))
    return root


def test_two_gloo_processes_follow_the_one_process_run(tmp_path: Path,
                                                        one_torch_thread: None) -> None:
    root = _dataset(tmp_path / "ds")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("WORLD_SIZE", None)
    # Exactly what `candletok train ... --nproc 2` launches (without its own start-up).
    cmd = torchrun_command(2, [str(root), *FLAGS, "--out", str(tmp_path / "ddp.pt")],
                           sys.executable)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "× 2 processes" in r.stdout and r.stdout.count("parameters") == 1  # rank 0 prints

    cfg = TrainConfig(**CFG)  # type: ignore[arg-type]
    one = train(root, cfg, out=tmp_path / "one.pt", device="cpu")
    ck = read_checkpoint(tmp_path / "ddp.pt")
    hist = ck["metrics"]["history"]
    assert [h["step"] for h in hist] == [h["step"] for h in one.history] == [4, 8]
    for mine, ref in zip(hist, one.history, strict=True):
        assert mine["loss"] == pytest.approx(ref["loss"], rel=1e-4)
        assert mine["val_bpc"] == pytest.approx(ref["val_bpc"], rel=1e-4)
    ref_sd = read_checkpoint(tmp_path / "one.pt")["model"]
    assert ck["model"].keys() == ref_sd.keys()  # the plain module, no "module." prefix
    for k, v in ck["model"].items():
        assert torch.allclose(v, ref_sd[k], atol=1e-4), k
    m = load_model(tmp_path / "ddp.pt")
    assert m.num_params() == one.n_params

    # Resume the 2-process checkpoint with one process: it continues like the
    # one-process checkpoint does.
    more = TrainConfig(**{**CFG, "steps": 12})  # type: ignore[arg-type]
    a = train(root, more, out=tmp_path / "ddp.pt", device="cpu", resume=True)
    b = train(root, more, out=tmp_path / "one.pt", device="cpu", resume=True)
    assert a.step == b.step == 12
    assert a.history[-1]["loss"] == pytest.approx(b.history[-1]["loss"], rel=1e-4)


def test_the_global_batch_must_divide_between_the_processes(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="multiple of the number of processes"):
        train(tmp_path / "nowhere", TrainConfig(batch_size=10), out=tmp_path / "m.pt",
              device="cpu", ranks=Ranks(rank=0, world_size=4))


def test_the_launcher_forwards_every_argument_but_nproc() -> None:
    argv = ["candletok", "--debug", "train", "DIR", "--nproc", "4", "--batch", "8",
            "--nproc=2", "--out", "m.pt"]
    args = forwarded_args(argv)
    assert args == ["DIR", "--batch", "8", "--out", "m.pt"]
    cmd = torchrun_command(4, args, "py")
    assert cmd[:5] == ["py", "-m", "torch.distributed.run", "--standalone",
                       "--nproc_per_node=4"]
    assert cmd[5:8] == ["-m", "candletok.cli", "train"] and cmd[8:] == args
    with pytest.raises(ModelError):
        torchrun_command(0, args, "py")


def test_the_rank_comes_from_torchruns_environment() -> None:
    assert world_from_env({}) == (0, 1, 0)
    assert world_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == (3, 4, 1)
    assert is_distributed({"WORLD_SIZE": "2", "RANK": "0"})
    assert not is_distributed({})
    for bad in ({"RANK": "4", "WORLD_SIZE": "4"}, {"WORLD_SIZE": "two"}):
        with pytest.raises(ModelError):
            world_from_env(bad)
