"""One process against DistributedDataParallel: training tokens/s, side by side.

    python -m benchmarks.ddp_speed           # default config, 40 timed steps
    python -m benchmarks.ddp_speed --quick   # tiny model, 8 timed steps

Each row times the library's own step (:func:`candletok.model.train.train_step` plus the
per-step agreement on loss and stop, as :func:`~candletok.model.train.run_steps` does) on
the same global batch, after 3 untimed warm-up steps, on random tokens:

- 1 process with 1 thread, and with as many threads as the DDP run has processes;
- N processes under ``torchrun`` (gloo on CPU, 1 thread each), tokens counted over every
  rank (the global batch).

On a CPU box the processes share the cores and every step all-reduces the gradients, so
DDP only pays off once a step's compute dwarfs that exchange (wider models, more cores,
or GPUs).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks._util import machine
from benchmarks.train_speed import _Series
from candletok.model.ddp import process_group
from candletok.model.gpt import CandleGPT
from candletok.model.train import RunState, TrainConfig, WindowSampler, train_step

QUICK = dict(batch_size=16, context=64, n_layer=1, n_head=2, n_embd=32)


def worker(cfg: TrainConfig, steps: int, threads: int, out: Path | None) -> dict[str, Any]:
    """Time ``steps`` steps in this process (one rank when under ``torchrun``)."""
    torch.set_num_threads(threads)
    dev = torch.device("cpu")
    with process_group("cpu") as ranks:
        cfg = dataclasses.replace(cfg, steps=steps + 3)
        torch.manual_seed(0)
        model = CandleGPT(cfg.gpt_config(1057, n_features=4))
        opt = model.configure_optimizer(cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2))
        data = _Series(50, 5000, 1057)
        run = RunState(cfg, model.config, model, opt, data)  # type: ignore[arg-type]
        if ranks.comm is not None:
            run.wrapped = torch.nn.parallel.DistributedDataParallel(model)
        sampler = WindowSampler(data, cfg.context)  # type: ignore[arg-type]
        model.train()
        tokens, t0 = 0, 0.0
        for step in range(steps + 3):
            if step == 3:
                ranks.barrier()
                t0 = time.perf_counter()
            lv, _, _, n = train_step(run, sampler, dev, ranks.rank, ranks.world_size)
            ranks.agree(lv, False)
            tokens += n * ranks.world_size if step >= 3 else 0
        took = time.perf_counter() - t0
        row = {"processes": ranks.world_size, "threads": threads, "steps": steps,
               "tokens_per_s": tokens / took, "step_ms": 1000 * took / steps,
               "params": model.num_params()}
        if ranks.is_writer and out is not None:
            out.write_text(json.dumps(row))
    return row


def _cfg_args(quick: bool) -> list[str]:
    return ["--quick"] if quick else []


def measure(nproc: int, steps: int, quick: bool) -> dict[str, Any]:
    """The DDP row: ``torchrun --nproc_per_node nproc`` running :func:`worker`."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "row.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", "-m", "benchmarks.ddp_speed", "--worker",
               "--steps", str(steps), "--out", str(out), *_cfg_args(quick)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        subprocess.run(cmd, check=True, env=env, capture_output=True)
        return json.loads(out.read_text())


def main(quick: bool = False, nproc: int = 2) -> list[dict[str, Any]]:
    cfg = TrainConfig(**QUICK) if quick else TrainConfig()  # type: ignore[arg-type]
    steps = 8 if quick else 40
    rows = [worker(cfg, steps, 1, None), worker(cfg, steps, nproc, None),
            measure(nproc, steps, quick)]
    print(machine())
    print(f"config: {cfg.n_layer}L {cfg.n_head}H {cfg.n_embd}W ctx {cfg.context} "
          f"global batch {cfg.batch_size}, {rows[0]['params']:,} params, {steps} timed steps")
    for r in rows:
        what = ("DDP (gloo)" if r["processes"] > 1 else "one process")
        print(f"{what:>12}  {r['processes']} process(es) × {r['threads']} thread(s)  "
              f"{r['tokens_per_s']:>10,.0f} tokens/s  {r['step_ms']:7.1f} ms/step")
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny model, a few steps")
    ap.add_argument("--nproc", type=int, default=2, help="DDP processes")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=8, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        c = TrainConfig(**QUICK) if a.quick else TrainConfig()  # type: ignore[arg-type]
        worker(c, a.steps, 1, a.out)
    else:
        main(a.quick, a.nproc)
