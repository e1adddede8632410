"""``candletok encode`` and ``candletok decode``: bars to a token dataset folder and back."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from candletok.cli.app import app, console, err_console, fail, flag_wording, table
from candletok.cli.configopts import config_option
from candletok.cli.options import DATE_FORMAT_HELP, STRICT_HELP, bars_loader, tokenizer_params
from candletok.core.atomic import refuse_existing, write_parquet_atomic
from candletok.data.feeds import source_help
from candletok.dataset.build import BuildConfig, EncodeResult
from candletok.dataset.manifest import decode_dataset, inspect_dataset
from candletok.engines import ENGINES, build
from candletok.tokenize.registry import load_tokenizer


@contextmanager
def encode_progress() -> Iterator[Callable[[str, int, int], None]]:
    """A transient progress bar per stage (load, fit, encode) for ``build_dataset``."""
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=True,
        disable=not err_console.is_terminal,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def tick(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(f"{stage:>6}", total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield tick


# POINT_MASSES in a trader's words (columns of the point-mass table)
MASS_LABELS: dict[str, str] = {
    "gap": "open = prev close", "body": "close = open", "upper": "no upper wick",
    "lower": "no lower wick", "flat": "flat bar O=H=L=C",
}


def print_point_masses(stats: dict[str, dict[str, Any]], notes: list[str]) -> None:
    """The share of candles per split where nothing happened in some part of the candle
    (open at the previous close, no wick, ...), then the vocabulary's notes: what it
    represents exactly, which features carry no information, which bins merged. Why: a
    data set whose open equals the previous close on most days must say so next to
    every number built on it."""
    rows = [(s, *(f"{v.get(k, 0.0):.1%}" for k in MASS_LABELS))
            for s, st in stats.items() if (v := st.get("point_masses"))]
    if rows:
        console.print(table("Point masses (share of candles)", ["split", *MASS_LABELS.values()],
                            rows))
    for n in notes:
        console.print(f"note: {n}", highlight=False)


def print_encode(result: EncodeResult) -> None:
    """The vocabulary line and the per-split summary table of an encode run."""
    m = result.manifest
    console.print(
        f"[bold]{m['scheme']}[/] vocab {m['vocab_size']} tokens, fingerprint {m['fingerprint']}"
        f"  ·  val from {m['boundaries']['val_from'][:10]}, test from "
        f"{m['boundaries']['test_from'][:10]}"
    )
    console.print(
        table(
            f"Dataset {result.root}",
            ["split", "symbols", "candles", "tokens used", "bits/candle",
             "close err med bps", "close err p95 bps", "OHLC err p95 bps", "files"],
            [
                (s.split, s.symbols, s.candles, s.tokens_used, s.bits_per_candle,
                 s.close_err_median_bps, s.close_err_p95_bps, s.ohlc_err_p95_bps,
                 f"{s.path}/")
                for s in result.stats
            ],
        )
    )
    print_point_masses({s.split: {"point_masses": s.point_masses} for s in result.stats},
                       result.notes)
    sampled = [s for s in result.stats if 0 < s.err_candles < s.candles]
    if sampled:
        console.print("error columns measured on a systematic sample: " + ", ".join(
            f"{s.split} {s.err_candles:,} of {s.candles:,} candles" for s in sampled))
    if result.errors:
        console.print(table("Symbols that failed (skipped)", ["symbol", "error"],
                            [(sym, flag_wording(e)) for sym, e in result.errors.items()]))
    empty = [s.split for s in result.stats if s.candles == 0]
    if empty:
        err_console.print(
            f"[bold yellow]warning:[/] no candles in {' or '.join(empty)}: no bars fall in "
            "those dates (val from / test from above); `candletok train` needs val candles "
            "to pick and score a model.", highlight=False)


@app.command()
def encode(
    symbols: list[str] = typer.Argument(..., help="Symbols to encode, e.g. AAPL MSFT."),
    scheme: str = config_option(BuildConfig, "scheme"),
    k: int | None = typer.Option(None, "--k", help="kmeans: number of clusters."),
    bins: str | None = typer.Option(None, "--bins",
                                    help="bins: counts gap,body,upper,lower[,vol]."),
    seed: int = config_option(BuildConfig, "seed"),
    vocab: Path | None = config_option(BuildConfig, "vocab"),
    source: str = config_option(BuildConfig, "source", help=source_help()),
    interval: str | None = config_option(BuildConfig, "interval"),
    start: str | None = config_option(BuildConfig, "start"),
    end: str | None = config_option(BuildConfig, "end"),
    out: Path = config_option(BuildConfig, "out", default=Path("data")),
    val_from: str | None = config_option(BuildConfig, "val_from"),
    test_from: str | None = config_option(BuildConfig, "test_from"),
    shard_rows: int = config_option(BuildConfig, "shard_rows"),
    group_size: int = config_option(BuildConfig, "group_size"),
    strict: bool = config_option(BuildConfig, "strict"),
    strict_bars: bool = typer.Option(False, "--strict-bars/--repair-bars", help=STRICT_HELP),
    date_format: str | None = typer.Option(None, "--date-format", help=DATE_FORMAT_HELP),
    overwrite: bool = config_option(BuildConfig, "overwrite"),
    engine: str = typer.Option(
        "local", "--engine", help="local (this machine) or ray (Ray Data; candletok[ray])."),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="Ray cluster for --engine ray, e.g. auto (default: local)."),
) -> None:
    """Split bars by time, fit the vocabulary on train, and write Parquet token shards."""
    scheme, params = tokenizer_params(scheme, k=k, bins=bins, seed=seed)
    if vocab is not None and (k is not None or bins is not None):
        raise fail("--k and --bins set a vocabulary to fit; with --vocab the vocabulary is "
                   "given, so leave them out.")
    if engine not in ENGINES:
        raise fail(f"Unknown --engine {engine!r}; use local or ray.")
    if ray_address and engine != "ray":
        raise fail("--ray-address needs --engine ray.")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise fail(f"{out} already exists; pass --overwrite to replace it.")
    with encode_progress() as tick:
        cfg = BuildConfig.from_options(
            symbols, out, scheme=scheme, vocab=vocab, source=source, interval=interval,
            start=start, end=end, val_from=val_from, test_from=test_from,
            shard_rows=shard_rows, group_size=group_size, strict=strict, overwrite=overwrite,
            seed=seed, tokenizer_params=params,
        )
        result = build(cfg, engine=engine, ray_address=ray_address, progress=tick,
                       loader=bars_loader(strict_bars=strict_bars, date_format=date_format))
    print_encode(result)


@app.command()
def decode(
    root: Path = typer.Argument(..., help="A dataset folder written by `candletok encode`."),
    split: str = typer.Option("test", "--split", help="train, val (or validation) or test."),
    out: Path = typer.Option(Path("bars.parquet"), "--out", help="Parquet file to write."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
) -> None:
    """Rebuild bars from a dataset split's tokens, each candle anchored on the real close
    of the bar before it: the decoded open, high, low and close are the token's, not the
    stored bar's (how faithful the vocabulary is)."""
    refuse_existing(out, overwrite)
    bars = decode_dataset(root, split)
    write_parquet_atomic(bars, out)
    rows = (
        bars.group_by("symbol", maintain_order=True)
        .agg(n=pl.len(), first=pl.col("ts").min(), last=pl.col("ts").max())
        .iter_rows()
    )
    console.print(table(f"Decoded {split} -> {out}", ["symbol", "bars", "first", "last"],
                        [(s, n, str(a)[:10], str(b)[:10]) for s, n, a, b in rows]))


def print_word_rules(tok: Any) -> None:
    """The thresholds behind the token words and the search alphabet's symbols."""
    from candletok.search.alphabet import COARSE
    from candletok.tokenize.words import thresholds_text

    how = "" if tok is None or tok.token_bounds() is not None else \
        " (k-means tokens are not boxes: their words describe each centroid)"
    console.print(f"words: {thresholds_text()}{how}", highlight=False)
    console.print(f"search alphabet (similar --mode exact, motifs): {COARSE.size} symbols; "
                  f"{COARSE.rules()}", highlight=False)


def inspect_dir(root: Path) -> None:
    """Print a dataset folder's manifest summary after verifying every shard's checksum."""
    m = inspect_dataset(root)
    console.print(
        f"[bold]{root}[/]: {m['format']}, scheme {m['scheme']}, vocab {m['vocab_size']}, "
        f"fingerprint {m['fingerprint']}, interval {m['interval']}, source {m['source']}"
    )
    b = m["boundaries"]
    console.print(
        f"time range {b['first'][:10]} .. {b['last'][:10]}; val from {b['val_from'][:10]}, "
        f"test from {b['test_from'][:10]}; {len(m['symbols'])} symbols"
    )
    stats = m.get("stats", {})
    console.print(
        table(
            "Splits (all shard checksums verified)",
            ["split", "symbols", "candles", "shards", "tokens used", "bits/candle",
             "close err med bps", "close err p95 bps"],
            [
                (s, len(set(sp["symbols"])), sp["rows"], len(sp["shards"]),
                 stats.get(s, {}).get("tokens_used", 0),
                 _f(stats.get(s, {}).get("bits_per_candle")),
                 _f(stats.get(s, {}).get("close_err_median_bps")),
                 _f(stats.get(s, {}).get("close_err_p95_bps")))
                for s, sp in m["splits"].items()
            ],
        )
    )
    vocab = root / str(m.get("vocab", "vocab.json"))
    tok = load_tokenizer(vocab) if vocab.exists() else None
    print_point_masses(stats, tok.notes() if tok is not None else [])
    print_word_rules(tok)
    if m.get("errors"):
        console.print(table("Symbols that failed", ["symbol", "error"],
                            [(sym, flag_wording(e)) for sym, e in m["errors"].items()]))


def _f(v: float | None) -> float:
    return float("nan") if v is None else float(v)
