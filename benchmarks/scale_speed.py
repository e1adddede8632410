"""Scale-out benchmark (issue 16): the local engine against the Ray engine, and reading bars
through ``load_bars`` against a plain Polars read of the same file.

    python -m benchmarks.scale_speed                # small: 50 symbols x 2,000 bars
    python -m benchmarks.scale_speed --full         # 1,000 symbols x 10,000 bars (10M)
    python -m benchmarks.scale_speed --symbols 200 --bars 5000 --no-ray

Both engines read the same bars folder (one Parquet file per symbol, the layout
``candletok download --out DIR/`` writes; its generation is not timed) and write a dataset;
the script checks that the two datasets hold the same bytes. Peak memory is sampled every
50 ms as the proportional set size (PSS: shared pages such as Ray's object store split
between the processes that map them, so the sum counts them once) of this process plus
every process under it -- for Ray the raylet, the GCS and all workers. Ray's start-up
(``ray.init`` and a 2-symbol build that starts the workers and their imports) is timed
apart from the build. On a 2-core machine Ray has two workers and pays for task
scheduling, serialization and the object store, so it may well be slower than the local
engine there: the point of the engine is a cluster, where the per-core figures scale.

The read comparison times the best of three calls of each, on a file of ``--read-bars``
bars (default 1M, 100 symbols) written as CSV and as Parquet with canonical columns, and a
folder of one Parquet file per symbol. Target: ``load_bars`` within 2x of the plain read.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from benchmarks._util import best_of, machine
from candletok.data.sources import load_bars
from candletok.data.synthetic import synthetic_bars
from candletok.dataset.build import BuildConfig
from candletok.engines import build


def _tree_mib() -> float:
    """PSS (else RSS) of this process and all its descendants, in MiB."""
    import psutil

    me = psutil.Process(os.getpid())
    total = 0
    for p in [me, *me.children(recursive=True)]:
        try:
            try:
                total += p.memory_full_info().pss
            except (psutil.AccessDenied, AttributeError):
                total += p.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


def peak_during(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(seconds, peak MiB of the process tree, result) of one call of ``fn``."""
    peak = _tree_mib()
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_mib())
            time.sleep(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.perf_counter()
    try:
        value = fn()
    finally:
        seconds = time.perf_counter() - t0
        stop.set()
        th.join()
    return seconds, max(peak, _tree_mib()), value


def write_folder(root: Path, n_symbols: int, n_bars: int) -> tuple[list[str], int]:
    """Synthetic bars as a bars folder, ``symbol=X/part-0.parquet``, 100 symbols at a time."""
    syms = [f"S{i:05d}" for i in range(n_symbols)]
    rows = 0
    for i in range(0, n_symbols, 100):
        bars = synthetic_bars(syms[i : i + 100], n_bars=n_bars, seed=i)
        rows += bars.height
        for (sym,), part in bars.group_by("symbol"):
            (root / f"symbol={sym}").mkdir(parents=True)
            part.write_parquet(root / f"symbol={sym}" / "part-0.parquet")
    return syms, rows


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "manifest.json"}


def bench_engines(work: Path, n_symbols: int, n_bars: int, ray_too: bool) -> list[dict[str, Any]]:
    folder = work / "bars"
    syms, candles = write_folder(folder, n_symbols, n_bars)
    out: list[dict[str, Any]] = []
    engines = ["local", "ray"] if ray_too else ["local"]
    for engine in engines:
        startup = 0.0
        if engine == "ray":
            import ray

            def start() -> None:  # Ray up, and its workers started by a 2-symbol build
                ray.init(num_cpus=os.cpu_count(), include_dashboard=False,
                         log_to_driver=False)
                build(BuildConfig(symbols=syms[:2], out=work / "warm", source=str(folder)),
                      "ray")

            startup, _, _ = peak_during(start)
        cfg = BuildConfig(symbols=syms, out=work / engine, source=str(folder), group_size=64,
                          overwrite=True)
        seconds, peak, res = peak_during(lambda cfg=cfg, engine=engine: build(cfg, engine))
        encoded = sum(s.candles for s in res.stats)
        out.append({"engine": engine, "candles": candles, "encoded": encoded,
                    "seconds": seconds, "per_s": candles / seconds, "peak_mib": peak,
                    "startup_s": startup})
        if engine == "ray":
            import ray

            ray.shutdown()
    if ray_too:
        same = digests(work / "local") == digests(work / "ray")
        for r in out:
            r["same_bytes"] = same
    return out


def bench_writer(dataset: Path) -> dict[str, Any]:
    """The serial part of either engine: the shard writer on the driver, alone.

    Re-writes the local engine's rows (every split, 64 symbols at a time, as the engines
    hand them over) through :class:`ShardWriter` with its background write thread. The
    Ray engine encodes on the workers but writes here, so this rate bounds it on a cluster.
    """
    from concurrent.futures import ThreadPoolExecutor

    from candletok.dataset.writer import ShardWriter

    parts = {s: pl.read_parquet(dataset / s / "*.parquet") for s in ("train", "val", "test")}
    rows = sum(df.height for df in parts.values())
    chunks = {s: [g for _, g in df.group_by((pl.col("symbol").rank("dense") - 1) // 64,
                                             maintain_order=True)]
              for s, df in parts.items()}
    out = dataset.parent / "rewrite"

    def run() -> None:
        with ThreadPoolExecutor(1) as pool:
            for s, groups in chunks.items():
                w = ShardWriter(out, s, 1_000_000, "bench", pool=pool,
                                expected_rows=parts[s].height)
                for g in groups:
                    w.add(g)
                w.close()

    t0 = time.perf_counter()
    run()
    seconds = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    return {"rows": rows, "seconds": seconds, "per_s": rows / seconds}


def bench_read(work: Path, n_bars: int) -> list[dict[str, Any]]:
    n_symbols = 100
    bars = synthetic_bars([f"R{i:03d}" for i in range(n_symbols)], n_bars=n_bars // n_symbols,
                          seed=1)
    csv, pq, folder = work / "bars.csv", work / "bars.parquet", work / "read-folder"
    bars.write_csv(csv)
    bars.write_parquet(pq)
    for (sym,), part in bars.group_by("symbol"):
        (folder / f"symbol={sym}").mkdir(parents=True)
        part.write_parquet(folder / f"symbol={sym}" / "part-0.parquet")
    cases = [
        ("CSV file", lambda: pl.read_csv(csv), csv),
        ("Parquet file", lambda: pl.read_parquet(pq), pq),
        ("Parquet folder (1 file per symbol)",
         lambda: pl.scan_parquet(folder / "**" / "*.parquet", hive_partitioning=False).collect(),
         folder),
    ]
    out = []
    for name, plain, path in cases:
        load_bars([], source=str(path))  # warm the page cache and the first-call costs
        plain()
        t_plain = best_of(plain)
        t_load = best_of(lambda path=path: load_bars([], source=str(path)))
        out.append({"what": name, "rows": bars.height, "plain_s": t_plain, "load_s": t_load,
                    "ratio": t_load / t_plain})
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="1,000 symbols x 10,000 bars")
    ap.add_argument("--symbols", type=int, default=50)
    ap.add_argument("--bars", type=int, default=2_000, help="bars per symbol")
    ap.add_argument("--read-bars", type=int, default=1_000_000)
    ap.add_argument("--no-ray", action="store_true", help="time the local engine only")
    args = ap.parse_args(argv)
    if args.full:
        args.symbols, args.bars = 1_000, 10_000
    ray_too = not args.no_ray
    if ray_too:
        try:
            import ray  # noqa: F401
        except ImportError:
            print("Ray is not installed (pip install 'candletok[ray]'): local engine only.")
            ray_too = False
    work = Path(tempfile.mkdtemp(prefix="candletok-scale-"))
    try:
        print(f"machine: {machine()}")
        t0 = time.perf_counter()
        engines = bench_engines(work, args.symbols, args.bars, ray_too)
        print(f"\nEngines: {args.symbols:,} symbols x {args.bars:,} bars, bins, "
              "read from a bars folder")
        print(f"{'engine':<8}{'candles':>12}{'seconds':>10}{'candles/s':>14}"
              f"{'peak MiB':>11}{'start-up s':>12}")
        for r in engines:
            print(f"{r['engine']:<8}{r['candles']:>12,}{r['seconds']:>10.2f}"
                  f"{r['per_s']:>14,.0f}{r['peak_mib']:>11,.0f}{r['startup_s']:>12.1f}")
        if ray_too:
            print("same dataset bytes from both engines:", engines[0]["same_bytes"])
        wr = bench_writer(work / "local")
        print(f"shard writer alone (the driver's serial part): {wr['rows']:,} rows in "
              f"{wr['seconds']:.2f} s = {wr['per_s']:,.0f} rows/s")
        reads = bench_read(work, args.read_bars)
        print(f"\nReading {args.read_bars:,} bars: load_bars (read + canonical + checks) "
              "vs plain Polars read, best of 3 (target <= 2x)")
        print(f"{'what':<38}{'plain s':>9}{'load_bars s':>13}{'ratio':>8}")
        for r in reads:
            print(f"{r['what']:<38}{r['plain_s']:>9.3f}{r['load_s']:>13.3f}{r['ratio']:>7.2f}x")
        print(f"\nwhole run {time.perf_counter() - t0:.0f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
