"""Dataset benchmarks (issue 4): `encode` end to end to shards, and TokenDataset reads.

    python -m benchmarks.dataset_speed          # full: 1,000 symbols x 10,000 daily bars
    python -m benchmarks.dataset_speed --quick  # seconds

Targets: encode >= 2M candles/s with peak memory under 4 GiB; TokenDataset through a
DataLoader (batch 64, context 128) >= 5M tokens/s.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl
from torch.utils.data import DataLoader

from benchmarks._util import measure
from candletok.data.synthetic import synthetic_bars
from candletok.dataset.build import build_dataset
from candletok.dataset.torchdata import TokenDataset


def bench_encode(n_symbols: int, n_bars: int, work: Path, scheme: str = "bins") -> dict[str, Any]:
    gen: list[float] = []

    def loader(symbols: list[str], **_: Any) -> pl.DataFrame:
        t = time.perf_counter()
        bars = synthetic_bars(symbols, n_bars=n_bars, interval="1d", seed=0)
        gen.append(time.perf_counter() - t)
        return bars

    syms = [f"S{i:05d}" for i in range(n_symbols)]
    out = work / f"ds-{scheme}"
    m = measure(lambda: build_dataset(syms, out, scheme=scheme, loader=loader, group_size=100,
                                      overwrite=True))
    candles = sum(s.candles for s in m.value.stats)
    # The loader runs on the main thread inside build_dataset, so subtracting its time
    # leaves the encode work itself (the source is a generator here, not a file).
    work_s = m.seconds - sum(gen)
    return {
        "stage": f"encode end to end ({scheme}, synthetic load included)",
        "size": f"{n_symbols:,} x {n_bars:,}",
        "candles": candles,
        "seconds": m.seconds,
        "per_s": candles / m.seconds,
        "unit": "candles/s",
        "peak_rss_mib": m.peak_rss_mib,
        "target": ">= 2M candles/s, < 4 GiB",
        "root": out,
        "note": f"synthetic generation {sum(gen):.2f} s of {m.seconds:.2f} s; without it "
                f"{candles / work_s / 1e6:.2f}M candles/s",
    }


def bench_loader(root: Path, batches: int, workers: int) -> dict[str, Any]:
    ds = TokenDataset(root, "train", context=128)
    dl = DataLoader(ds, batch_size=64, shuffle=True, num_workers=workers, drop_last=True)

    def run() -> int:
        n = 0
        for i, (x, _y) in enumerate(dl):
            n += x.numel()
            if i + 1 >= batches:
                break
        return n

    run()  # warm the page cache and workers
    m = measure(run)
    return {
        "stage": f"TokenDataset via DataLoader (batch 64, ctx 128, {workers} workers)",
        "size": f"{len(ds):,} windows",
        "candles": m.value,
        "seconds": m.seconds,
        "per_s": m.value / m.seconds,
        "unit": "tokens/s",
        "peak_rss_mib": m.peak_rss_mib,
        "target": ">= 5M tokens/s",
    }


def main(quick: bool = False) -> list[dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix="candletok-bench-"))
    try:
        n_sym, n_bars = (50, 2_000) if quick else (1_000, 10_000)
        enc = bench_encode(n_sym, n_bars, work)
        rows = [enc]
        for workers in (0, 2):
            rows.append(bench_loader(enc["root"], 30 if quick else 600, workers))
        for r in rows:
            r.pop("root", None)
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def print_rows(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        print(
            f"{r['stage']:<62} {r['size']:>16} {r['per_s'] / 1e6:8.2f}M {r['unit']:<10}"
            f" peak {r['peak_rss_mib']:7.0f} MiB   target {r['target']}"
        )
        if r.get("note"):
            print(f"{'':<62} {r['note']}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    print_rows(main(quick=ap.parse_args().quick))
