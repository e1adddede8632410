"""How the model's defaults were chosen (issue 15): train CandleGPT under a few settings,
choose on val, report test, and score the next-range forecast against EWMA and HistVol20.

    python -m benchmarks.model_study                 # both studies (about 45 min on 2 cores)
    python -m benchmarks.model_study --only size     # size/regularization on the sample
    python -m benchmarks.model_study --only calendar # with/without calendar inputs
    python -m benchmarks.model_study --only levels   # with/without level inputs (issue 22)

Datasets (built in a temporary folder, offline):

* ``sample-kmeans``: AAPL, MSFT, IBM, GOOG from the bundled sample, ``kmeans`` vocabulary,
  train < 2011 <= val < 2012 <= test (the README's Usage dataset; ~10k train candles).
* ``sample-demo``: the same symbols and dates with the demo's volume-aware ``bins``
  vocabulary 5,5,3,3,4.
* ``synthetic-1h``: six synthetic symbols, 6,000 hourly bars each (the generator has an
  intraday U-shaped volatility profile), default ``bins``, default 80/10/10 time cuts.

``size`` trains the default configuration with three seeds and one-factor changes of
dropout, weight decay, width, depth, context and learning rate on ``sample-kmeans``;
every figure is bits per candle next to the best baseline (unigram or smoothed n-gram,
chosen on val). ``calendar`` trains each dataset with calendar inputs on and off (two
seeds on the daily sets, one on the hourly one) and, on ``synthetic-1h``, runs
``evaluate_forecasts`` at h=1 for the next-range QLIKE skill and Diebold-Mariano p-value
against EWMA and HistVol20 (on test). ``levels`` trains ``sample-kmeans`` (``--seeds``)
and ``synthetic-1h`` (``--hourly-seeds``) with the level inputs on and off and scores the
next range at h=1 on val (the choice) and on test (the report) against every reference
(``--steps N`` caps every run at N steps, for a quick or equal-budget comparison).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._util import machine
from candletok.data.synthetic import synthetic_bars
from candletok.dataset.build import BuildConfig
from candletok.engines import build
from candletok.model.config import TrainConfig

SYMBOLS = ["AAPL", "MSFT", "IBM", "GOOG"]
SIZE_VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("default, seed 0", {}),
    ("default, seed 1", {"seed": 1}),
    ("default, seed 2", {"seed": 2}),
    ("dropout 0.1", {"dropout": 0.1}),
    ("dropout 0.3", {"dropout": 0.3}),
    ("weight decay 0", {"weight_decay": 0.0}),
    ("weight decay 0.5", {"weight_decay": 0.5}),
    ("width 32", {"n_embd": 32}),
    ("width 128", {"n_embd": 128}),
    ("1 layer", {"n_layer": 1}),
    ("4 layers", {"n_layer": 4}),
    ("context 64", {"context": 64}),
    ("context 256", {"context": 256}),
    ("lr 3e-4", {"lr": 3e-4}),
    ("lr 3e-3", {"lr": 3e-3}),
]


def datasets(work: Path, which: list[str]) -> dict[str, Path]:
    """Build the named datasets under ``work`` (once each)."""
    out: dict[str, Path] = {}
    cuts = {"val_from": "2011-01-01", "test_from": "2012-01-01"}
    if "sample-kmeans" in which:
        out["sample-kmeans"] = work / "sample-kmeans"
        build(BuildConfig(symbols=SYMBOLS, out=out["sample-kmeans"], source="sample",
                          scheme="kmeans", **cuts))
    if "sample-demo" in which:
        out["sample-demo"] = work / "sample-demo"
        build(BuildConfig(symbols=SYMBOLS, out=out["sample-demo"], source="sample",
                          tokenizer_params={"gap_bins": 5, "body_bins": 5, "upper_bins": 3,
                                            "lower_bins": 3, "vol_bins": 4}, **cuts))
    if "synthetic-1h" in which:
        bars = work / "h1.parquet"
        synthetic_bars(list("ABCDEF"), n_bars=6000, interval="1h", seed=0).write_parquet(bars)
        out["synthetic-1h"] = work / "synthetic-1h"
        build(BuildConfig(symbols=list("ABCDEF"), out=out["synthetic-1h"], source=str(bars),
                          interval="1h"))
    return out


def train_one(ds: Path, out: Path, **over: Any) -> dict[str, Any]:
    """Train with ``over`` on top of the defaults; the model's and best baseline's bits."""
    from candletok.model.train import train

    t0 = time.perf_counter()
    r = train(ds, TrainConfig(**over), out=out)
    rows = {row.name: (row.val, row.test) for row in r.table}
    base = {k: v for k, v in rows.items() if k not in ("CandleGPT", "uniform")}
    best = min(base, key=lambda k: base[k][0])  # chosen on val, as train() does
    (val, test), (bval, btest) = rows["CandleGPT"], base[best]
    return {"val": val, "test": test, "base": best, "base_val": bval, "base_test": btest,
            "dval": val - bval, "dtest": test - btest, "best_step": r.best_step,
            "steps": r.step, "seconds": time.perf_counter() - t0}


def range_scores(ds: Path, model: Path, split: str = "test") -> dict[str, Any]:
    """CandleGPT's next-range QLIKE skill and DM p-value against each reference on
    ``split``."""
    from candletok.evaluation.evaluate import evaluate_forecasts

    rep = evaluate_forecasts(ds, str(model), split=split, horizons=(1,), analogues=(),
                             n_boot=500, save_calibration_map=False)
    row = next(r for r in rep.range if r.forecaster == "CandleGPT")
    return {ref: {"skill": row.skill[ref].value, "lo": row.skill[ref].lo,
                  "hi": row.skill[ref].hi, "p": row.dm[ref].p_value}
            for ref in row.skill}


def print_rows(title: str, rows: list[tuple[str, dict[str, Any]]]) -> None:
    print(f"\n{title}")
    print("| setting | val | test | best baseline (val/test) | model - baseline, val | "
          "test | best step / steps |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for name, r in rows:
        print(f"| {name} | {r['val']:.4f} | {r['test']:.4f} | {r['base']} "
              f"{r['base_val']:.4f}/{r['base_test']:.4f} | {r['dval']:+.4f} | "
              f"{r['dtest']:+.4f} | {r['best_step']} / {r['steps']} |", flush=True)


def size_study(ds: Path, work: Path) -> list[tuple[str, dict[str, Any]]]:
    rows = []
    for name, over in SIZE_VARIANTS:
        rows.append((name, train_one(ds, work / "m.pt", **over)))
        print(f"  {name}: {json.dumps(rows[-1])}", flush=True)
    print_rows("Size and regularization on sample-kmeans (bits per candle)", rows)
    best = min(rows, key=lambda r: r[1]["val"])
    print(f"lowest val: {best[0]} ({best[1]['val']:.4f}; test {best[1]['test']:.4f})")
    return rows


def calendar_study(sets: dict[str, Path], work: Path, seeds: int, hourly_seeds: int) -> None:
    for name, ds in sets.items():
        rows = []
        for seed in range(hourly_seeds if name == "synthetic-1h" else seeds):
            for cal in ("on", "off"):
                model = work / f"{name}-{cal}-{seed}.pt"
                r = train_one(ds, model, calendar=cal, seed=seed)
                if name == "synthetic-1h" and seed == 0:
                    r["range"] = range_scores(ds, model)
                rows.append((f"calendar {cal}, seed {seed}", r))
                print(f"  {name} {rows[-1][0]}: {json.dumps(r)}", flush=True)
        print_rows(f"Calendar inputs on {name} (bits per candle)", rows)
        for label, r in rows:
            for ref, s in r.get("range", {}).items():
                print(f"{label}: next-range QLIKE skill vs {ref} {s['skill']:+.3f} "
                      f"[{s['lo']:+.3f}, {s['hi']:+.3f}], DM p = {s['p']:.2g}")


def levels_study(sets: dict[str, Path], work: Path, seeds: int, hourly_seeds: int,
                 steps: int | None = None) -> None:
    """Level inputs on and off, seeds each; bits and the next range on val and test."""
    for name, ds in sets.items():
        rows = []
        for seed in range(hourly_seeds if name == "synthetic-1h" else seeds):
            for on in (True, False):
                model = work / f"{name}-lv{int(on)}-{seed}.pt"
                r = train_one(ds, model, levels=on, seed=seed,
                              **({"steps": steps} if steps else {}))
                r["range_val"] = range_scores(ds, model, "val")
                r["range_test"] = range_scores(ds, model, "test")
                rows.append((f"levels {'on' if on else 'off'}, seed {seed}", r))
                print(f"  {name} {rows[-1][0]}: {json.dumps(r)}", flush=True)
        print_rows(f"Level inputs on {name} (bits per candle)", rows)
        for label, r in rows:
            for split in ("val", "test"):
                for ref, s in r[f"range_{split}"].items():
                    print(f"{label}, {split}: next-range QLIKE skill vs {ref} "
                          f"{s['skill']:+.3f} [{s['lo']:+.3f}, {s['hi']:+.3f}], "
                          f"DM p = {s['p']:.2g}", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["size", "calendar", "levels"], default=None)
    ap.add_argument("--steps", type=int, default=None, help="levels: steps per run (smoke)")
    ap.add_argument("--seeds", type=int, default=2, help="seeds per calendar setting, daily")
    ap.add_argument("--hourly-seeds", type=int, default=1,
                    help="seeds per calendar setting on synthetic-1h (its runs are long)")
    args = ap.parse_args(argv)
    print(f"machine: {machine()}")
    work = Path(tempfile.mkdtemp(prefix="candletok-model-study-"))
    t0 = time.perf_counter()
    try:
        want = (["sample-kmeans"] if args.only == "size" else
                ["sample-kmeans", "synthetic-1h"] if args.only == "levels" else
                ["sample-kmeans", "sample-demo", "synthetic-1h"])
        sets = datasets(work, want)
        if args.only in (None, "size"):
            size_study(sets["sample-kmeans"], work)
        if args.only in (None, "calendar"):
            calendar_study(sets, work, args.seeds, args.hourly_seeds)
        if args.only == "levels":
            levels_study(sets, work, args.seeds, args.hourly_seeds, args.steps)
        print(f"\nwhole run {time.perf_counter() - t0:.0f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
