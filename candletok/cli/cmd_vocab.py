"""``candletok fit`` (learn a vocabulary from bars) and ``candletok inspect`` (show one)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from candletok.cli.app import app, console, fail, table
from candletok.cli.cmd_data import inspect_dir
from candletok.core.errors import TokenizerError
from candletok.data.sources import load_bars
from candletok.tokenize.quality import entropy_bits
from candletok.tokenize.registry import load_tokenizer, make_tokenizer, schemes

DEFAULT_OUT = Path("vocab.json")


def _parse_bins(spec: str) -> dict[str, int]:
    """``"9,13,3,3"`` or ``"9x13x3x3[x5]"`` -> gap/body/upper/lower[/vol] bin counts."""
    parts = [p for p in spec.replace("x", ",").replace("·", ",").split(",") if p.strip()]
    try:
        nums = [int(p) for p in parts]
    except ValueError as exc:
        raise TokenizerError(
            f"--bins {spec!r} is not a list of integers; write e.g. 9,13,3,3."
        ) from exc
    if len(nums) not in (4, 5):
        raise TokenizerError("--bins takes 4 or 5 counts: gap,body,upper,lower[,vol].")
    names = ("gap_bins", "body_bins", "upper_bins", "lower_bins", "vol_bins")
    return dict(zip(names, nums, strict=False))


def tokenizer_params(scheme: str, k: int | None = None, bins: str | None = None,
                     seed: int = 0) -> tuple[str, dict[str, object]]:
    """``--scheme``, ``--k``, ``--bins`` and ``--seed`` as (scheme, parameters) for
    :func:`candletok.tokenize.registry.make_tokenizer`; any case of the scheme is fine."""
    scheme = scheme.strip().lower()
    if scheme not in schemes():
        raise TokenizerError(f"Unknown --scheme {scheme!r}; use {' or '.join(sorted(schemes()))}.")
    if scheme == "bins" and k is not None:
        raise TokenizerError("--k sets the kmeans vocabulary size; with --scheme bins use --bins.")
    if scheme == "kmeans" and bins is not None:
        raise TokenizerError("--bins sets the bins counts; with --scheme kmeans use --k.")
    if k is not None and k < 1:
        raise TokenizerError(f"--k must be at least 1, not {k}.")
    if scheme == "bins":
        return scheme, dict(_parse_bins(bins)) if bins else {}
    return scheme, {**({"k": k} if k is not None else {}), "seed": seed}


@app.command()
def fit(
    symbols: Annotated[list[str], typer.Argument(help="Symbols whose bars train the vocab.")],
    scheme: Annotated[str, typer.Option(help="Tokenizer scheme: bins or kmeans.")] = "bins",
    source: Annotated[str, typer.Option(help="auto, yahoo, sample, synthetic or a path.")] = "auto",
    interval: Annotated[str, typer.Option(help="Bar interval, e.g. 1d, 1h, 5m.")] = "1d",
    start: Annotated[str | None, typer.Option(help="First date (YYYY-MM-DD).")] = None,
    end: Annotated[str | None, typer.Option(help="Last date (YYYY-MM-DD).")] = None,
    out: Annotated[Path, typer.Option(help="Vocab file to write.")] = DEFAULT_OUT,
    k: Annotated[int | None, typer.Option("--k", help="kmeans: number of clusters.")] = None,
    bins: Annotated[str | None, typer.Option(help="bins: counts gap,body,upper,lower[,vol].")]
    = None,
    seed: Annotated[int, typer.Option(help="kmeans: random seed.")] = 0,
) -> None:
    """Fit a vocabulary on these bars (fit on the training period only: use --end)."""
    scheme, params = tokenizer_params(scheme, k=k, bins=bins, seed=seed)
    tok = make_tokenizer(scheme, **params)
    with console.status(f"loading {len(symbols)} symbol(s) from {source}"):
        bars = load_bars(symbols, source=source, interval=interval, start=start, end=end)
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
