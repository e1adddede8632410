"""Live inference benchmark (issue "Live and fast", item A): the default CandleGPT on CPU,
with the KV cache (:meth:`CandleGPT.forward_step`) beside a full recomputation, in one run.

    python -m benchmarks.live_speed            # per-bar updates + 100 paths x 20 bars
    python -m benchmarks.live_speed --quick    # seconds: fewer bars and paths

Rows:

- per-bar ``update``: the next-candle logits after each new bar of one stream, p50 and
  p99 over the bars. Cached: one :meth:`forward_step` of the new token. Full: the forward
  of the last ``context`` tokens, what the model computed before. Bars that still fit the
  context and bars past it are reported apart: the position embedding is learned and
  absolute, so past the context every token changes position with each bar and the cache
  must recompute the window (see :class:`candletok.model.gpt.KVCache`) -- it then costs
  what the full forward does, by design: the full forward is the truth.
- sampled paths: ``generate`` of ``--paths`` x ``--bars`` continuations with and without
  the cache, from prompts of 24 tokens (the evaluate harness's ``sample_context``),
  ``context - bars`` (the longest that keeps every path within the context) and
  ``context`` (``candletok predict``'s continuation, which starts at the limit). The
  seed is the same, and the paths are checked identical.

- ``Predictor.update``: the whole answer after each new bar (features, scale, token, the
  cached model step, the token table, the calibrated answer) of the default model size
  trained one step on synthetic bars, beside ``Predictor.predict`` on all bars so far (the
  full recomputation it must equal), p50 and p99 over ``--updates`` bars after a
  ``--history``-bar history. Bars whose window slides (one in ``context // 2``: the
  window's first half context recomputed in one forward) are reported apart too.

Targets (the issue): update p99 <= 5 ms; paths >= 5x faster with the cache.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch

from benchmarks._util import machine
from candletok.core.ids import BOS, N_SPECIAL
from candletok.model.config import TrainConfig
from candletok.model.gpt import CandleGPT

VOCAB = 1057  # the bundled vocabulary's size, as benchmarks/train_speed.py uses


def default_model(seed: int = 0) -> CandleGPT:
    """The default training config's model (random weights: speed does not depend on
    them), final LayerNorm gain one as a trained model has."""
    torch.manual_seed(seed)
    m = CandleGPT(TrainConfig().gpt_config(VOCAB, n_features=4))
    torch.nn.init.ones_(m.transformer.ln_f.weight)
    return m.eval()


def _pct(ms: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(ms), q)) if ms else float("nan")


@torch.no_grad()
def updates(m: CandleGPT, bars: int, seed: int = 0) -> list[dict[str, Any]]:
    """Per-bar latency of the next-candle logits over one stream of ``bars`` bars."""
    ctx = m.config.context
    g = torch.Generator().manual_seed(seed)
    stream = torch.randint(N_SPECIAL, m.config.vocab_size, (1, bars), generator=g)
    stream[0, 0] = BOS
    cached: list[float] = []
    full: list[float] = []
    cache = None
    worst = 0.0
    for t in range(bars):
        t0 = time.perf_counter()
        a, cache = m.forward_step(stream[:, t:t + 1], None, cache)
        t1 = time.perf_counter()
        b = m(stream[:, max(0, t + 1 - ctx):t + 1])[0][:, -1:]
        t2 = time.perf_counter()
        cached.append(1e3 * (t1 - t0))
        full.append(1e3 * (t2 - t1))
        worst = max(worst, float((a - b).abs().max()))
    rows = []
    for what, sl in ((f"update, bars 1-{min(bars, ctx)} (within the context)", slice(0, ctx)),
                     (f"update, bars {ctx + 1}-{bars} (past the context)", slice(ctx, bars))):
        skip = 1 if sl.start == 0 else 0  # the first call of each warms up
        c, f = cached[sl][skip:], full[sl][skip:]
        if not c:
            continue
        rows.append({"what": what, "n": len(c), "cached_p50_ms": _pct(c, 50),
                     "cached_p99_ms": _pct(c, 99), "full_p50_ms": _pct(f, 50),
                     "full_p99_ms": _pct(f, 99), "max_abs_diff": worst})
    return rows


@torch.no_grad()
def sample_paths(m: CandleGPT, n_paths: int, n_bars: int, prompt: int, seed: int = 0,
          repeat: int = 1) -> dict[str, Any]:
    """``n_paths`` x ``n_bars`` sampled continuations of one ``prompt``-token history, with
    and without the cache (best of ``repeat``), and whether they are the same paths."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(N_SPECIAL, m.config.vocab_size, (1, prompt), generator=g)
    idx[0, 0] = BOS
    idx = idx.repeat(n_paths, 1)
    out: dict[str, Any] = {"what": f"{n_paths} paths x {n_bars} bars, prompt {prompt}"}
    got = {}
    for use_cache in (True, False):
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            got[use_cache] = m.generate(idx, n_bars, generator=torch.Generator().manual_seed(1),
                                        use_cache=use_cache)
            best = min(best, time.perf_counter() - t0)
        out["cached_s" if use_cache else "full_s"] = best
    out["speedup"] = out["full_s"] / out["cached_s"]
    out["same_paths"] = bool(torch.equal(got[True], got[False]))
    return out


def predictor_updates(history: int = 400, n: int = 200, full_every: int = 1,
                      seed: int = 0) -> dict[str, Any]:
    """``Predictor.update`` per bar against ``Predictor.predict`` on all bars so far, the
    default model size (one training step on synthetic bars: speed needs no skill), and
    the largest difference between the two answers."""
    import tempfile
    from pathlib import Path

    from candletok.data.synthetic import synthetic_bars
    from candletok.dataset.build import build_dataset
    from candletok.model.train import train
    from candletok.predict.incremental import window_start
    from candletok.predict.predictor import Predictor

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_dataset(["AAA", "BBB"], root / "ds", source="synthetic")
        cfg = TrainConfig(steps=1, eval_every=1, eval_windows=2, warmup_steps=1)
        train(root / "ds", cfg, out=root / "m.pt", device="cpu")
        p = Predictor.from_checkpoint(root / "m.pt", root / "ds")
        bars = synthetic_bars(["ZZZ"], n_bars=history + n, seed=seed + 7)
        p.start(bars.head(history))
        ctx = p.model.config.context
        ups, slides, full, diff = [], [], [], 0.0
        for i in range(history, history + n):
            row = bars.row(i, named=True)
            t0 = time.perf_counter()
            got = p.update(row)[0]
            ms = 1e3 * (time.perf_counter() - t0)
            q = i  # the new candle's position after the BOS (bar 0 only anchors)
            (slides if window_start(q, ctx) != window_start(q - 1, ctx) else ups).append(ms)
            if (i - history) % full_every == 0:
                t0 = time.perf_counter()
                ref = p.predict(bars.head(i + 1))[0]
                full.append(1e3 * (time.perf_counter() - t0))
                diff = max(diff, abs(got.p_up_raw - ref.p_up_raw),  # type: ignore[operator]
                           abs(got.range_raw - ref.range_raw))  # type: ignore[operator]
    every = ups + slides
    return {"n": len(every), "history": history, "p50_ms": _pct(every, 50),
            "p99_ms": _pct(every, 99), "step_p50_ms": _pct(ups, 50),
            "slide_n": len(slides), "slide_p50_ms": _pct(slides, 50),
            "slide_max_ms": max(slides) if slides else float("nan"),
            "full_n": len(full), "full_p50_ms": _pct(full, 50), "full_p99_ms": _pct(full, 99),
            "max_abs_diff": diff, "context": ctx}


QUICK = {"paths": 10, "bars": 5, "stream": 140, "repeat": 1, "history": 60,
         "n_updates": 0, "full_every": 6}  # seconds: a smoke run (no Predictor section)
FULL = {"paths": 100, "bars": 20, "stream": 256, "repeat": 3, "history": 400,
        "n_updates": 200, "full_every": 1}  # the sizes


def run(paths: int = 100, bars: int = 20, stream: int = 256, threads: int = 1,
        repeat: int = 3, history: int = 400, n_updates: int = 200,
        full_every: int = 1) -> dict[str, Any]:
    """Both sections' rows, and the model and machine they come from."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        m = default_model()
        ctx = m.config.context
        ups = updates(m, stream)
        prompts = sorted({min(24, ctx), max(1, ctx - bars), ctx})
        pts = [sample_paths(m, paths, bars, p, repeat=repeat) for p in prompts]
        pred = predictor_updates(history, n_updates, full_every) if n_updates > 0 else None
    finally:
        torch.set_num_threads(old)
    cfg = m.config
    return {"updates": ups, "paths": pts, "predictor": pred,
            "config": f"CandleGPT {cfg.n_layer}L {cfg.n_head}H {cfg.n_embd}W ctx {ctx} "
                      f"vocab {cfg.vocab_size}, CPU, {threads} thread(s)"}


def markdown(res: dict[str, Any]) -> str:
    """The two tables, side by side figures with and without the cache."""
    lines = [res["config"] + "\n",
             "| per-bar update | bars | cached p50 | cached p99 | full p50 | full p99 |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in res["updates"]:
        lines.append(f"| {r['what']} | {r['n']} | {r['cached_p50_ms']:.2f} ms | "
                     f"{r['cached_p99_ms']:.2f} ms | {r['full_p50_ms']:.2f} ms | "
                     f"{r['full_p99_ms']:.2f} ms |")
    diff = max(r["max_abs_diff"] for r in res["updates"])
    lines += ["", f"Largest |cached - full| logit over the stream: {diff:.1e}.", "",
              "| sampled paths | with cache | without | speedup | same paths |",
              "|---|---:|---:|---:|---|"]
    for r in res["paths"]:
        lines.append(f"| {r['what']} | {r['cached_s']:.3f} s | {r['full_s']:.3f} s | "
                     f"{r['speedup']:.1f}x | {'yes' if r['same_paths'] else 'NO'} |")
    u = res.get("predictor")
    if u:
        lines += ["", f"Predictor.update after a {u['history']}-bar history (context "
                  f"{u['context']}) beside Predictor.predict on all bars so far:", "",
                  "| per-bar answer | bars | p50 | p99 |", "|---|---:|---:|---:|",
                  f"| update (every bar) | {u['n']} | {u['p50_ms']:.2f} ms | "
                  f"{u['p99_ms']:.2f} ms |",
                  f"| update, window slides (max {u['slide_max_ms']:.2f} ms) | "
                  f"{u['slide_n']} | {u['slide_p50_ms']:.2f} ms | |",
                  f"| predict (full recomputation) | {u['full_n']} | {u['full_p50_ms']:.2f} ms"
                  f" | {u['full_p99_ms']:.2f} ms |", "",
                  f"Largest |update - predict| over P(up) and the range: "
                  f"{u['max_abs_diff']:.1e}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paths", type=int, default=FULL["paths"])
    ap.add_argument("--bars", type=int, default=FULL["bars"], help="bars per sampled path")
    ap.add_argument("--stream", type=int, default=FULL["stream"],
                    help="bars in the update stream")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--repeat", type=int, default=FULL["repeat"],
                    help="calls per path figure (best kept)")
    ap.add_argument("--history", type=int, default=FULL["history"],
                    help="bars before the Predictor.update figures")
    ap.add_argument("--updates", type=int, default=FULL["n_updates"],
                    help="Predictor.update calls timed (0: skip that section)")
    ap.add_argument("--full-every", type=int, default=1,
                    help="time Predictor.predict on every k-th update only")
    ap.add_argument("--quick", action="store_true", help="seconds: a smoke run")
    a = ap.parse_args(argv)
    sizes = QUICK if a.quick else {"paths": a.paths, "bars": a.bars, "stream": a.stream,
                                   "repeat": a.repeat, "history": a.history,
                                   "n_updates": a.updates, "full_every": a.full_every}
    res = run(sizes["paths"], sizes["bars"], sizes["stream"], a.threads, sizes["repeat"],
              sizes["history"], sizes["n_updates"], sizes["full_every"])
    print(machine())
    print(markdown(res))
    return res


if __name__ == "__main__":
    main()
