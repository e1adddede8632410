"""``candletok download``: load bars from any source and write one canonical Parquet file;
``candletok sample``: what the bundled sample holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from candletok.cli.app import app, console, err_console, fail, table
from candletok.cli.options import DATE_FORMAT_HELP, STRICT_HELP, bars_loader
from candletok.core.atomic import write_parquet_atomic
from candletok.core.errors import CandletokError
from candletok.core.times import infer_interval
from candletok.data.feeds import source_help
from candletok.data.files import bars_file, write_bars_folder
from candletok.data.sources import is_path_source, normalize_symbols

DEFAULT_OUT = Path("bars.parquet")


def _source_label(source: str) -> str:
    return Path(source).name if is_path_source(source) else source.lower()


def _day_format(interval: str) -> str:
    return "%Y-%m-%d" if interval.lower() in ("1d", "1wk", "1mo") else "%Y-%m-%d %H:%M"


def _bars_interval(df: pl.DataFrame) -> str:
    """The interval the bars show (for how their times are printed), "" when they show
    none of the supported ones (their times are then printed to the minute)."""
    try:
        return infer_interval(df)
    except CandletokError:
        return ""


def print_bars_summary(df: pl.DataFrame, title: str, interval: str, source: str) -> None:
    """One row per symbol: bars, first and last bar, where they came from."""
    summary = df.group_by("symbol", maintain_order=True).agg(
        pl.len().alias("bars"), pl.col("ts").min().alias("first"), pl.col("ts").max().alias("last")
    )
    f = _day_format(interval)
    console.print(table(title, ["symbol", "bars", "first", "last", "source"],
                        [(r["symbol"], r["bars"], r["first"].strftime(f), r["last"].strftime(f),
                          source) for r in summary.iter_rows(named=True)]))


@app.command()
def download(
    symbols: Annotated[list[str], typer.Argument(help="Symbols to load, e.g. AAPL MSFT.")],
    source: str = typer.Option(
        "auto", "--source", help=source_help() + " See `candletok sample` for the sample."
    ),
    interval: str | None = typer.Option(
        None, "--interval", help="1m 2m 5m 15m 30m 1h 90m 1d 1wk 1mo (default: 1d; a "
                                 "file's own, checked when given)."),
    start: str | None = typer.Option(None, "--start", help="First date (YYYY-MM-DD), inclusive."),
    end: str | None = typer.Option(None, "--end", help="End date (YYYY-MM-DD), exclusive."),
    out: Annotated[Path, typer.Option(
        "--out", help="Parquet file to write, or a folder (DIR/): one file per symbol.",
    )] = DEFAULT_OUT,
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace an existing --out file (or symbol files)."),
    seed: int = typer.Option(0, "--seed", help="Seed of --source synthetic."),
    bars: int | None = typer.Option(None, "--bars", help="Bars per symbol (synthetic)."),
    strict_bars: bool = typer.Option(False, "--strict-bars/--repair-bars", help=STRICT_HELP),
    date_format: str | None = typer.Option(None, "--date-format", help=DATE_FORMAT_HELP),
) -> None:
    """Download or generate bars, validate them, and write them as one Parquet file."""
    syms = normalize_symbols(symbols)
    if not syms:
        raise CandletokError("Give at least one symbol, e.g. candletok download AAPL.")
    folder = out.is_dir() or not out.suffix  # --out DIR/ (typer drops the slash)
    there = ([bars_file(out, s) for s in syms if bars_file(out, s).exists()] if folder
             else [out] if out.exists() else [])
    if there and not overwrite:
        raise fail(f"{there[0]} already exists; pass --overwrite to replace it, or --out "
                   "another file.")
    load = bars_loader(strict_bars=strict_bars, date_format=date_format)
    label = _source_label(source)
    frames: list[pl.DataFrame] = []
    if len(syms) == 1:
        frames.append(load(syms, source=source, interval=interval, start=start, end=end,
                           seed=seed, n_bars=bars))
    else:
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=err_console, transient=True,
            disable=not err_console.is_terminal,  # no stray lines in logs
        ) as progress:
            task = progress.add_task("loading", total=len(syms))
            for sym in syms:  # one symbol at a time so the bar moves; each is cached
                progress.update(task, description=f"loading {sym}")
                frames.append(load([sym], source=source, interval=interval, start=start,
                                   end=end, seed=seed, n_bars=bars))
                progress.advance(task)
    df = pl.concat(frames, how="vertical").sort("symbol", "ts")
    if folder:  # DIR/symbol=SYM/part-0.parquet, read back by --source DIR/
        write_bars_folder(df, out)
    else:
        write_parquet_atomic(df, out)
    shown = interval or _bars_interval(df)
    print_bars_summary(df, f"{df.height:,} bars -> {out}"
                       f"{'/ (one file per symbol)' if folder else ''}", shown, label)


@app.command()
def sample() -> None:
    """List the symbols of the bundled sample (real daily bars, usable offline with
    --source sample)."""
    from candletok.data.sample import load_sample

    df = load_sample()
    print_bars_summary(df, "the bundled sample (daily, adjusted)", "1d", "sample")
