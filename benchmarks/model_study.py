"""How the model's defaults were chosen (issue 15): train CandleGPT under a few settings,
choose on val, report test, and score the next-range forecast against EWMA and HistVol20.

    python -m benchmarks.model_study                 # both studies (about 45 min on 2 cores)
    python -m benchmarks.model_study --only size     # size/regularization on the sample
    python -m benchmarks.model_study --only calendar # with/without calendar inputs
    python -m benchmarks.model_study --only arch     # CandleGPT against the CandleLSTM
    python -m benchmarks.model_study --only levels   # with/without level inputs (issue 22)

Datasets (built in a temporary folder, offline):

* ``sample-kmeans``: AAPL, MSFT, IBM, GOOG from the bundled sample, ``kmeans`` vocabulary,
  train < 2011 <= val < 2012 <= test (the README's Usage dataset; ~10k train candles).
* ``sample-demo``: the same symbols and dates with the demo's volume-aware ``bins``
  vocabulary 5,5,3,3,4.
* ``synthetic-1h``: six synthetic symbols, 6,000 hourly bars each (the generator has an
  intraday U-shaped volatility profile), default ``bins``, default 80/10/10 time cuts.
* ``synthetic-1h-small``: the same generator, four symbols of 3,000 hourly bars (the arch
  study's hourly set: its default runs take a quarter of synthetic-1h's).

``size`` trains the default configuration with three seeds and one-factor changes of
dropout, weight decay, width, depth, context and learning rate on ``sample-kmeans``;
every figure is bits per candle next to the best baseline (unigram or smoothed n-gram,
chosen on val). ``calendar`` trains each dataset with calendar inputs on and off (two
seeds on the daily sets, one on the hourly one) and, on ``synthetic-1h``, runs
``evaluate_forecasts`` at h=1 for the next-range QLIKE skill and Diebold-Mariano p-value
against EWMA and HistVol20 (on test).

``arch`` trains CandleGPT and the CandleLSTM baseline (``TrainConfig(arch="lstm")``: about
the same parameter count, the same tokens, calendar inputs and loop) with the defaults on
each dataset (``--seeds`` seeds on the daily sets, ``--hourly-seeds`` on the hourly one),
and scores both in one ``evaluate_forecasts`` run at h=1 on test: bits per candle, the
next-range QLIKE skill against every range reference (EWMA first) with DM p-values, and
the 80% and 90% coverage of the next return's intervals with CRPS.
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
    if "synthetic-1h-small" in which:  # the hourly set at half the length, for short runs
        bars = work / "h1s.parquet"
        synthetic_bars(list("ABCD"), n_bars=3000, interval="1h", seed=0).write_parquet(bars)
        out["synthetic-1h-small"] = work / "synthetic-1h-small"
        build(BuildConfig(symbols=list("ABCD"), out=out["synthetic-1h-small"],
                          source=str(bars), interval="1h"))
    return out


def train_one(ds: Path, out: Path, **over: Any) -> dict[str, Any]:
    """Train with ``over`` on top of the defaults; the model's and best baseline's bits."""
    from candletok.model.train import train

    t0 = time.perf_counter()
    r = train(ds, TrainConfig(**over), out=out)
    rows = {row.name: (row.val, row.test) for row in r.table}
    base = {k: v for k, v in rows.items() if k not in (r.model_name, "uniform")}
    best = min(base, key=lambda k: base[k][0])  # chosen on val, as train() does
    (val, test), (bval, btest) = rows[r.model_name], base[best]
    return {"val": val, "test": test, "base": best, "base_val": bval, "base_test": btest,
            "dval": val - bval, "dtest": test - btest, "best_step": r.best_step,
            "steps": r.step, "params": r.n_params, "seconds": time.perf_counter() - t0}


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


def arch_scores(ds: Path, gpt: Path, lstm: Path) -> dict[str, dict[str, Any]]:
    """Both models in one ``evaluate_forecasts`` run at h=1 on test (analogues off): per
    model its bits, QLIKE skill and DM p against every range reference, CRPS and the 80%
    and 90% coverage of the next return's intervals (with Christoffersen's cond. p)."""
    from candletok.evaluation.evaluate import evaluate_forecasts

    rep = evaluate_forecasts(ds, str(gpt), split="test", horizons=(1,), analogues=(),
                             n_boot=500, save_calibration_map=False, compare=[str(lstm)])
    out: dict[str, dict[str, Any]] = {}
    for name in ("CandleGPT", "CandleLSTM"):
        rng = next(r for r in rep.range if r.forecaster == name)
        q = next(r for r in rep.quantiles if r.forecaster == name and r.horizon == 1)
        bits = next((b for b in rep.bits if b.forecaster == name), None)
        out[name] = {
            "bits": None if bits is None else bits.bits.value,
            "qlike": rng.qlike.value,
            "range": {ref: {"skill": e.value, "lo": e.lo, "hi": e.hi,
                            "p": rng.dm[ref].p_value} for ref, e in rng.skill.items()},
            "crps": None if q.crps is None else q.crps.value,
            "cover80": q.coverage.value,
            "cover90": None if q.coverage90 is None else q.coverage90.value,
            "p_cc80": q.tests["80"].p_cc if "80" in q.tests else None,
            "p_cc90": q.tests["90"].p_cc if "90" in q.tests else None}
    base = next(r for r in rep.quantiles if r.forecaster == "base rate" and r.horizon == 1)
    out["base rate"] = {"crps": None if base.crps is None else base.crps.value,
                        "cover80": base.coverage.value,
                        "cover90": None if base.coverage90 is None else base.coverage90.value}
    return out


def arch_study(sets: dict[str, Path], work: Path, seeds: int, hourly_seeds: int) -> None:
    """CandleGPT against CandleLSTM, defaults otherwise: daily seed 0 first, then the
    hourly set, then the further daily seeds (so the first answers come first)."""
    hourly = [n for n in sets if n.startswith("synthetic-1h")]
    order = [(n, 0) for n in sets if n not in hourly]
    order += [(n, s) for s in range(hourly_seeds) for n in hourly]
    order += [(n, s) for s in range(1, seeds) for n in sets if n not in hourly]
    rows: list[tuple[str, dict[str, Any]]] = []
    for name, seed in order:
        ds, pts = sets[name], {}
        for arch in ("gpt", "lstm"):
            pts[arch] = work / f"{name}-{arch}-{seed}.pt"
            r = train_one(ds, pts[arch], arch=arch, seed=seed)
            rows.append((f"{name} {arch} seed {seed}", r))
            print(f"  {rows[-1][0]}: {json.dumps(r)}", flush=True)
        sc = arch_scores(ds, pts["gpt"], pts["lstm"])
        print(f"  {name} seed {seed} evaluate (test, h=1): {json.dumps(sc)}", flush=True)
        for model, s in sc.items():
            if model == "base rate":
                print(f"{name} seed {seed} base rate: CRPS {s['crps']:.6f}, 80% cover "
                      f"{s['cover80']:.3f}, 90% cover {s['cover90']:.3f}", flush=True)
                continue
            refs = ", ".join(f"vs {k} {v['skill']:+.3f} [{v['lo']:+.3f}, {v['hi']:+.3f}] "
                             f"p={v['p']:.2g}" for k, v in s["range"].items())
            print(f"{name} seed {seed} {model}: QLIKE {s['qlike']:.4f} ({refs}); CRPS "
                  f"{s['crps']:.6f}; 80% cover {s['cover80']:.3f} (p_cc {s['p_cc80']:.2f}), "
                  f"90% cover {s['cover90']:.3f} (p_cc {s['p_cc90']:.2f})", flush=True)
    print_rows("CandleGPT against CandleLSTM (bits per candle)", rows)


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
    ap.add_argument("--only", choices=["size", "calendar", "arch", "levels"], default=None)
    ap.add_argument("--sets", default="sample-kmeans,sample-demo,synthetic-1h",
                    help="datasets of the arch study, comma-separated")
    ap.add_argument("--steps", type=int, default=None, help="levels: steps per run (smoke)")
    ap.add_argument("--seeds", type=int, default=2, help="seeds per calendar setting, daily")
    ap.add_argument("--hourly-seeds", type=int, default=1,
                    help="seeds per calendar setting on synthetic-1h (its runs are long)")
    args = ap.parse_args(argv)
    print(f"machine: {machine()}")
    work = Path(tempfile.mkdtemp(prefix="candletok-model-study-"))
    t0 = time.perf_counter()
    try:
        want = (["sample-kmeans"] if args.only == "size" else args.sets.split(",")
                if args.only == "arch" else ["sample-kmeans", "synthetic-1h"]
                if args.only == "levels" else ["sample-kmeans", "sample-demo", "synthetic-1h"])
        sets = datasets(work, want)
        if args.only in (None, "size"):
            size_study(sets["sample-kmeans"], work)
        if args.only in (None, "calendar"):
            calendar_study(sets, work, args.seeds, args.hourly_seeds)
        if args.only in (None, "arch"):
            arch_study(sets, work, args.seeds, args.hourly_seeds)
        if args.only == "levels":
            levels_study(sets, work, args.seeds, args.hourly_seeds, args.steps)
        print(f"\nwhole run {time.perf_counter() - t0:.0f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
