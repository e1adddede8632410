"""Bar loading benchmark (issue "Live and fast", item B): ``load_bars`` beside a plain
``pl.read_csv(try_parse_dates=True)`` (or ``pl.read_parquet``) of the same file, in one run.

    python -m benchmarks.load_speed              # the issue's size: 1M daily bars, 400 symbols
    python -m benchmarks.load_speed --quick      # 20k bars: it runs, figures are noise
    python -m benchmarks.load_speed --rows 3000000 --repeat 5

Files: ISO dates (``2024-01-31``), ISO date-times with offsets
(``2024-01-31T15:30:00+02:00``), day-first dates read with ``--date-format %d/%m/%Y``,
each with a symbol column; and the ISO file as Parquet. ``load_bars`` does more than the
plain read -- validation, sorting, UTC conversion, one error naming the column when a
value is bad -- so the ratio is that work's price. Target (the issue): <= 2x the plain
read. Times are the best of ``--repeat`` calls.
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from benchmarks._util import machine, measure
from candletok.data.sources import load_bars

KINDS = ("ISO dates", "ISO date-times with offsets", "--date-format %d/%m/%Y",
         "Parquet (ISO dates)")


def bars_table(rows: int, symbols: int, seed: int = 0) -> pl.DataFrame:
    """``rows`` daily bars (``rows // symbols`` consecutive days per symbol), a symbol
    column first, dates as ``pl.Date``."""
    per = max(1, rows // symbols)
    rng = np.random.default_rng(seed)
    n = per * symbols
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    days = pl.date_range(date(1990, 1, 1), date(1990, 1, 1) + timedelta(days=per - 1),
                         eager=True)
    return pl.DataFrame({
        "symbol": np.repeat([f"S{i:04d}" for i in range(symbols)], per),
        "date": pl.concat([days] * symbols),
        "open": close, "high": close * 1.01, "low": close * 0.99, "close": close,
        "volume": rng.integers(1, 10_000, n).astype(np.float64),
    })


def write_files(df: pl.DataFrame, folder: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Each kind's file and the ``load_bars`` keywords it needs."""
    stamp = pl.col("date").cast(pl.Datetime("us")).dt.strftime("%Y-%m-%dT%H:%M:%S") + "+02:00"
    out: dict[str, tuple[Path, dict[str, Any]]] = {}
    for kind, frame, ext, kw in (
        (KINDS[0], df, "csv", {}),
        (KINDS[1], df.with_columns(stamp.alias("date")), "csv", {}),
        (KINDS[2], df.with_columns(pl.col("date").dt.strftime("%d/%m/%Y")), "csv",
         {"date_format": "%d/%m/%Y"}),
        (KINDS[3], df, "parquet", {}),
    ):
        path = folder / f"bars{len(out)}.{ext}"
        if ext == "csv":
            frame.write_csv(path)
        else:
            frame.write_parquet(path)
        out[kind] = (path, kw)
    return out


def run(rows: int, symbols: int, repeat: int) -> list[dict[str, Any]]:
    """One row per kind: candletok's and the plain read's best seconds and their ratio."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, (path, kw) in write_files(bars_table(rows, symbols), Path(tmp)).items():
            if path.suffix == ".csv":
                plain = measure(lambda p=path: pl.read_csv(p, try_parse_dates=True), repeat)
            else:
                plain = measure(lambda p=path: pl.read_parquet(p), repeat)
            ours = measure(lambda p=path, k=kw: load_bars([], source=str(p), **k), repeat)
            n = ours.value.height
            out.append({"kind": kind, "rows": n, "candletok_s": ours.seconds,
                        "plain_s": plain.seconds, "ratio": ours.seconds / plain.seconds,
                        "candletok_per_s": n / ours.seconds, "plain_per_s": n / plain.seconds})
    return out


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| file | bars | load_bars | plain read | load_bars / plain |",
             "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['kind']} | {r['rows']:,} | {r['candletok_s']:.3f} s "
                     f"({r['candletok_per_s'] / 1e6:.2f}M/s) | {r['plain_s']:.3f} s "
                     f"({r['plain_per_s'] / 1e6:.2f}M/s) | {r['ratio']:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="bars per file (issue: 1M)")
    ap.add_argument("--symbols", type=int, default=400, help="symbols per file")
    ap.add_argument("--repeat", type=int, default=3, help="calls per figure (best is kept)")
    ap.add_argument("--quick", action="store_true", help="20k bars, one call: a smoke run")
    a = ap.parse_args(argv)
    rows, repeat = (20_000, 1) if a.quick else (a.rows, a.repeat)
    out = run(rows, a.symbols, repeat)
    print(f"load_bars vs plain read, {machine()}")
    print(table(out))
    return out


if __name__ == "__main__":
    main()
