"""Training throughput of the default CandleGPT config on this machine.

    python -m benchmarks.train_speed          # default config, 60 timed steps
    python -m benchmarks.train_speed --quick  # seconds: 8 timed steps

Prints tokens/s (input tokens per optimizer step, padding included, over wall time) and the
share of step time spent waiting on data (sampling the windows and moving them to the
device), on a synthetic token dataset of the bundled vocabulary size.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch

from benchmarks._util import machine
from candletok.core.ids import N_SPECIAL
from candletok.model.evaluate import autocast
from candletok.model.gpt import CandleGPT
from candletok.model.train import (
    TrainConfig,
    WindowSampler,
    _threads,
    lr_at,
    resolve_device,
)


class _Series:
    """Random-token series: throughput does not depend on what the tokens mean."""

    def __init__(self, n_series: int, length: int, vocab: int) -> None:
        rng = np.random.default_rng(0)
        self._s = [rng.integers(N_SPECIAL, vocab, length) for _ in range(n_series)]

    def series(self) -> list[np.ndarray]:
        return self._s


def bench(cfg: TrainConfig, device: str, steps: int, vocab: int = 1057) -> dict[str, Any]:
    dev = resolve_device(device)
    torch.manual_seed(0)
    model = CandleGPT(cfg.gpt_config(vocab, n_features=4)).to(dev)
    opt = model.configure_optimizer(cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2))
    sampler = WindowSampler(_Series(50, 5000, vocab), cfg.context)
    t_data = t_total = 0.0
    tokens = 0
    with _threads(cfg.threads, dev):
        for step in range(steps + 3):  # 3 warm-up steps are not timed
            t0 = time.perf_counter()
            x, y = sampler.batch(cfg.seed, step, cfg.batch_size)
            xt, yt = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)
            t1 = time.perf_counter()
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg)
            with autocast(dev):
                _, loss = model(xt, yt)
            assert loss is not None
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            loss.item()
            t2 = time.perf_counter()
            if step >= 3:
                t_data += t1 - t0
                t_total += t2 - t0
                tokens += x.size
    return {
        "device": str(dev),
        "config": f"{cfg.n_layer}L {cfg.n_head}H {cfg.n_embd}W ctx {cfg.context} "
                  f"batch {cfg.batch_size}",
        "params": model.num_params(),
        "threads": torch.get_num_threads(),
        "steps": steps,
        "tokens_per_s": tokens / t_total,
        "step_ms": 1000 * t_total / steps,
        "data_wait_share": t_data / t_total,
    }


def main(quick: bool = False) -> list[dict[str, Any]]:
    cfg = TrainConfig()
    steps = 8 if quick else 60
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = [bench(cfg, d, steps) for d in devices]
    print(machine())
    for r in rows:
        print(f"{r['device']:>5}  {r['config']}  {r['params']:,} params  {r['threads']} threads  "
              f"{r['tokens_per_s']:>12,.0f} tokens/s  {r['step_ms']:7.1f} ms/step  "
              f"data wait {r['data_wait_share']:.2%}")
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few steps only")
    main(ap.parse_args().quick)
