"""``candletok fit`` (learn a vocabulary from bars) and ``candletok inspect`` (show one)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from candletok.cli.app import app, console, fail, table
from candletok.cli.cmd_data import inspect_dir, print_word_rules
from candletok.cli.options import DATE_FORMAT_HELP, parse_bins, tokenizer_params
from candletok.core.atomic import refuse_existing
from candletok.data.feeds import source_help
from candletok.data.sources import load_bars
from candletok.tokenize.quality import entropy_bits
from candletok.tokenize.registry import load_tokenizer, make_tokenizer

__all__ = ["fit", "inspect", "parse_bins", "tokenizer_params"]  # parsing lives in options

DEFAULT_OUT = Path("vocab.json")


@app.command()
def fit(
    symbols: Annotated[list[str], typer.Argument(help="Symbols whose bars train the vocab.")],
    scheme: Annotated[str, typer.Option(help="Tokenizer scheme: bins or kmeans.")] = "bins",
    source: Annotated[str, typer.Option(help=source_help(short=True))] = "auto",
    interval: Annotated[str | None, typer.Option(
        help="Bar interval, e.g. 1d, 1h, 5m (default: daily; a file's own).")] = None,
    start: Annotated[str | None, typer.Option(help="First date (YYYY-MM-DD).")] = None,
    end: Annotated[str | None, typer.Option(help="Last date (YYYY-MM-DD).")] = None,
    out: Annotated[Path, typer.Option(help="Vocab file to write.")] = DEFAULT_OUT,
    k: Annotated[int | None, typer.Option("--k", help="kmeans: number of clusters.")] = None,
    bins: Annotated[str | None, typer.Option(help="bins: counts gap,body,upper,lower[,vol].")]
    = None,
    seed: Annotated[int, typer.Option(help="kmeans: random seed.")] = 0,
    date_format: Annotated[str | None, typer.Option("--date-format", help=DATE_FORMAT_HELP)]
    = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace an existing --out vocab file (and its .txt).")] = False,
) -> None:
    """Fit a vocabulary on these bars (fit on the training period only: use --end)."""
    scheme, params = tokenizer_params(scheme, k=k, bins=bins, seed=seed)
    if out.suffix.lower() != ".txt":  # a .txt name is refused by save, with its reason
        refuse_existing([out, out.with_suffix(".txt")], overwrite)
    tok = make_tokenizer(scheme, **params)
    with console.status(f"loading {len(symbols)} symbol(s) from {source}"):
        bars = load_bars(symbols, source=source, interval=interval, start=start, end=end,
                         date_format=date_format)
    with console.status(f"fitting {scheme} on {bars.height:,} bars"):
        tok.fit(bars)
    tok.save(out)
    counts = tok.counts if tok.counts is not None else np.zeros(tok.n_candle_tokens)
    n = int(counts.sum())
    console.print(
        table(
            f"Fitted {scheme} -> {out} (and {out.with_suffix('.txt').name})",
            ["symbols", "bars", "candles", "vocab", "candle tokens", "used", "bits/candle",
             "fingerprint"],
            [(len(set(bars["symbol"].to_list())), bars.height, n, tok.vocab_size,
              tok.n_candle_tokens, int((counts > 0).sum()), entropy_bits(counts),
              tok.fingerprint)],
        )
    )
    for note in tok.notes():
        console.print(f"note: {note}", highlight=False)


@app.command()
def inspect(
    path: Annotated[Path, typer.Argument(help="A vocab.json file or a dataset folder.")],
    rows: Annotated[int, typer.Option(help="Vocabulary rows to show (0 = all).")] = 40,
    sort: Annotated[str, typer.Option(help="Order rows by share or token.")] = "share",
) -> None:
    """Summarize a vocabulary: its settings and a table of tokens in words."""
    if sort not in ("share", "token"):
        raise fail(f"Unknown --sort {sort!r}; use share or token.")
    if rows < 0:
        raise fail(f"--rows must be 0 (all) or more, not {rows}.")
    if path.is_dir():
        inspect_dir(path)
        return
    if not path.exists():
        if path.suffix.lower() == ".json":
            raise fail(f"No vocab file at {path}; write one with `candletok fit` (or give a "
                       "dataset folder from `candletok encode`).")
        raise fail(f"{path} does not exist; give a dataset folder written by `candletok "
                   "encode` or a vocab.json written by `candletok fit`.")
    tok = load_tokenizer(path)
    console.print(
        f"[bold]{path}[/]: scheme {tok.scheme}, {tok.vocab_size} tokens "
        f"({tok.n_candle_tokens} candles + {tok.N_SPECIAL} specials), "
        f"fingerprint {tok.fingerprint}"
    )
    params = ", ".join(f"{k}={v}" for k, v in tok._params().items())
    console.print(f"params: {params}")
    console.print("features: " + ", ".join(f"{k}={v}" for k, v in tok.features.to_dict().items())
                  + f"  ({', '.join(tok.feature_names)}, in volatility units)")
    print_word_rules(tok)
    for note in tok.notes():
        console.print(f"note: {note}", highlight=False)
    df = tok.token_table()
    cand = df.filter(df["kind"] == "candle")
    if "share" in df.columns and sort == "share":
        cand = cand.sort("share", descending=True)
        used = int((cand["count"] > 0).sum())
        console.print(f"fit counts: {int(cand['count'].sum()):,} candles, {used} tokens used, "
                      f"{entropy_bits(cand['count'].to_numpy()):.2f} bits/candle")
    shown = cand if rows <= 0 else cand.head(rows)
    cols = ["token", *tok.feature_names] + (["share"] if "share" in df.columns else [])
    console.print(
        table(
            f"Vocabulary ({shown.height} of {cand.height} candle tokens"
            + (", most frequent first)" if "share" in df.columns and sort == "share" else ")"),
            [*cols, "meaning"],
            [
                (*(r[c] if c != "share" else f"{r[c]:.2%}" for c in cols), r["meaning"])
                for r in shown.iter_rows(named=True)
            ],
        )
    )
