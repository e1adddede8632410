"""``candletok download``: load bars from any source and write one canonical Parquet file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from candletok.cli.app import app, console, err_console, table
from candletok.core.atomic import write_parquet_atomic
from candletok.core.errors import CandletokError
from candletok.data.files import write_bars_folder
from candletok.data.sources import is_path_source, load_bars, normalize_symbols

DEFAULT_OUT = Path("bars.parquet")


def _source_label(source: str) -> str:
    return Path(source).name if is_path_source(source) else source.lower()


@app.command()
def download(
    symbols: Annotated[list[str], typer.Argument(help="Symbols to load, e.g. AAPL MSFT.")],
    source: str = typer.Option(
        "auto", "--source", help="auto, yahoo, sample, synthetic or a CSV/Parquet path."
    ),
    interval: str = typer.Option("1d", "--interval", help="1m 2m 5m 15m 30m 1h 90m 1d 1wk 1mo."),
    start: str | None = typer.Option(None, "--start", help="First date (YYYY-MM-DD), inclusive."),
    end: str | None = typer.Option(None, "--end", help="End date (YYYY-MM-DD), exclusive."),
    out: Annotated[Path, typer.Option(
        "--out", help="Parquet file to write, or a folder (DIR/): one file per symbol.",
    )] = DEFAULT_OUT,
    seed: int = typer.Option(0, "--seed", help="Seed of --source synthetic."),
    bars: int | None = typer.Option(None, "--bars", help="Bars per symbol (synthetic)."),
) -> None:
    """Download or generate bars, validate them, and write them as one Parquet file."""
    syms = normalize_symbols(symbols)
    if not syms:
        raise CandletokError("Give at least one symbol, e.g. candletok download AAPL.")
    label = _source_label(source)
    frames: list[pl.DataFrame] = []
    if len(syms) == 1:
        frames.append(load_bars(syms, source=source, interval=interval, start=start, end=end,
                                seed=seed, n_bars=bars))
    else:
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=err_console, transient=True,
        ) as progress:
            task = progress.add_task("loading", total=len(syms))
            for sym in syms:  # one symbol at a time so the bar moves; each is cached
                progress.update(task, description=f"loading {sym}")
                frames.append(load_bars([sym], source=source, interval=interval, start=start,
                                        end=end, seed=seed, n_bars=bars))
                progress.advance(task)
    df = pl.concat(frames, how="vertical").sort("symbol", "ts")
    folder = out.is_dir() or not out.suffix  # --out DIR/ (typer drops the slash)
    if folder:  # DIR/symbol=SYM/part-0.parquet, read back by --source DIR/
        write_bars_folder(df, out)
    else:
        write_parquet_atomic(df, out)
    summary = df.group_by("symbol", maintain_order=True).agg(
        pl.len().alias("bars"), pl.col("ts").min().alias("first"), pl.col("ts").max().alias("last")
    )
    fmt = "%Y-%m-%d %H:%M" if interval.lower() not in ("1d", "1wk", "1mo") else "%Y-%m-%d"
    console.print(
        table(
            f"{df.height:,} bars -> {out}{'/ (one file per symbol)' if folder else ''}",
            ["symbol", "bars", "first", "last", "source"],
            [
                (r["symbol"], r["bars"], r["first"].strftime(fmt), r["last"].strftime(fmt),
                 label)
                for r in summary.iter_rows(named=True)
            ],
        )
    )
