"""Training throughput of the default CandleGPT config on this machine.

    python -m benchmarks.train_speed          # default config, 60 timed steps
    python -m benchmarks.train_speed --quick  # seconds: 8 timed steps

Prints tokens/s (input tokens per optimizer step, padding included, over wall time) and the
share of step time spent waiting on data (sampling the windows and moving them to the
device), on a synthetic token dataset of the bundled vocabulary size.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import numpy as np
import torch

from benchmarks._util import machine
from candletok.core.ids import N_SPECIAL, series_with_bos
from candletok.model.checkpoint import resolve_device
from candletok.model.gpt import CandleGPT
from candletok.model.runtime import torch_threads
from candletok.model.train import RunState, TrainConfig, WindowSampler, train_step


class _Series:
    """Random-token series: throughput does not depend on what the tokens mean. Offers
    what :class:`~candletok.model.train.WindowSampler` reads of a split."""

    def __init__(self, n_series: int, length: int, vocab: int) -> None:
        rng = np.random.default_rng(0)
        self._s = [rng.integers(N_SPECIAL, vocab, length) for _ in range(n_series)]
        self.tokens, self.bounds = series_with_bos(self._s)

    def series(self) -> list[np.ndarray]:
        return self._s


def bench(cfg: TrainConfig, device: str, steps: int, vocab: int = 1057) -> dict[str, Any]:
    """Time ``steps`` of :func:`candletok.model.train.train_step`, the library's own step
    (after 3 untimed warm-up steps)."""
    dev = resolve_device(device)
    cfg = dataclasses.replace(cfg, steps=steps + 3)
    torch.manual_seed(0)
    model = CandleGPT(cfg.gpt_config(vocab, n_features=4)).to(dev)
    opt = model.configure_optimizer(cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2))
    data = _Series(50, 5000, vocab)
    run = RunState(cfg, model.config, model, opt, data)  # type: ignore[arg-type]
    sampler = WindowSampler(data, cfg.context)  # type: ignore[arg-type]
    t_data = t_total = 0.0
    tokens = 0
    model.train()
    with torch_threads(cfg.threads, dev) as threads:
        for step in range(steps + 3):  # 3 warm-up steps are not timed
            _, wait, took, n = train_step(run, sampler, dev)
            if step >= 3:
                t_data += wait
                t_total += took
                tokens += n
    return {
        "device": str(dev),
        "config": f"{cfg.n_layer}L {cfg.n_head}H {cfg.n_embd}W ctx {cfg.context} "
                  f"batch {cfg.batch_size}",
        "params": model.num_params(),
        "threads": threads,
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
