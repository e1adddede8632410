"""``candletok similar`` and ``candletok motifs``: parse, call the library, print."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import typer

from candletok.cli.app import app, console, fail, table
from candletok.cli.options import parse_horizons
from candletok.core.atomic import refuse_existing
from candletok.core.display import format_price, significant, time_format
from candletok.search.alphabet import ALPHABETS, DEFAULT_ALPHABET
from candletok.search.modes import MODES, mode_help
from candletok.search.motifs import MotifResult, motifs
from candletok.search.plot import plot_similar
from candletok.search.similar import SearchSpec, SimilarResult, similar


def _pct(v: float | None, signed: bool = True) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:+.2f}%" if signed else f"{v:.2f}%"


def _prob(p: float, lo: float, hi: float) -> str:
    if not math.isfinite(p):
        return "-"
    return f"{p:.0%} [{lo:.0%}-{hi:.0%}]"


def _p(v: float) -> str:
    return "-" if not math.isfinite(v) else f"{v:.2g}"


def _alphabet(name: str) -> str:
    v = name.strip().lower()
    if v not in ALPHABETS:
        raise fail(f"Unknown --alphabet {name!r}; use {' or '.join(ALPHABETS)}.")
    return v


def print_similar(res: SimilarResult, cal: Any = None) -> None:
    """Header, query, outcome tables with the base rate, verdicts, the calibrated
    analogue P(up) when ``cal`` (an AnalogueCalibration) is given, then the matches."""
    s = res.summary
    how = f"answered with the last {s['window']}" if s["backed_off"] else ""
    console.print(
        f"[bold]{s['symbol']}[/]: last {s['last']} candles to {res.when(s['T'])} (T) · "
        f"mode {s['mode']}{' · ' + how if how else ''} · {s['index_candles']:,} candles of "
        f"{s['symbols']} symbols searched · query from {s['origin']}", highlight=False)
    tok = res._tok
    q = res.query
    toks = s["query_tokens"]
    first_used = len(toks) - s["window"]  # a back-off matches only the last candles
    words = [(tok.describe(t) if tok else str(t)) + ("" if i >= first_used else "  (not matched)")
             for i, t in enumerate(toks)]
    d = s.get("price_decimals", 2)
    syms = s.get("query_symbols")  # what exact matched: the coarse alphabet's symbols
    console.print(table(
        "query candles (the stored bars)",
        ["time (UTC)" if s.get("intraday") else "date", "open", "high", "low", "close",
         "token", "candle", *(["symbol matched"] if syms else [])],
        [(r["ts"].strftime(res.time_format),
          *(format_price(r[c], d) for c in ("open", "high", "low", "close")), t, w,
          *([syms[i]] if syms else []))
         for i, (r, t, w) in enumerate(zip(q.iter_rows(named=True), toks, words,
                                           strict=True))]))
    if syms:
        console.print(f"· symbols: {s['alphabet_rules']}", highlight=False)
    if cal is not None:  # the answer's verdict first: the same search replayed on val
        print_calibration(cal, res.time_format)
    o = res.outcomes
    rows = []
    for h in s["horizons"]:
        m = o.filter((pl.col("horizon") == h) & (pl.col("who") == "matches")).row(0, named=True)
        b = o.filter((pl.col("horizon") == h) & (pl.col("who") == "base")).row(0, named=True)
        rows.append((h, m["n"], m["truncated"], f"{m['n_eff']:.1f}",
                     _prob(m["p_up"], m["p_lo"], m["p_hi"]),
                     _prob(b["p_up"], b["p_lo"], b["p_hi"]), _p(m["p_value"])))
    console.print(table(
        f"raw: P(close up after h bars): {s['matches']} matches (zone {s['zone']} bars, "
        f"cross-symbol rho {s['rho']:.2f}) vs base rate",
        ["h", "matches", "truncated", "eff. n", "P(up) [95% CI]", "base P(up) [95% CI]",
         "raw binomial p"], rows))
    rrows = []
    for r in o.iter_rows(named=True):
        rrows.append((r["horizon"], r["who"], r["n"], _pct(100 * math.expm1(r["mean_log"])
                                                           if math.isfinite(r["mean_log"])
                                                           else float("nan")),
                      _pct(r["q10_pct"]), _pct(r["q50_pct"]), _pct(r["q90_pct"]),
                      f"{r['q10_vol']:+.2f} / {r['q50_vol']:+.2f} / {r['q90_vol']:+.2f}"
                      if math.isfinite(r["q50_vol"]) else "-"))
    console.print(table("forward return (geometric mean; 10/50/90% quantiles)",
                        ["h", "", "n", "geo mean", "q10", "q50", "q90", "q10/q50/q90 in vol units"],
                        rrows))
    if res.forecast is not None and res.forecast.height:
        _print_forecast(console, res)
    nr = {r["who"]: r for r in res.next_range.iter_rows(named=True)}
    console.print(
        f"next candle's range: median {_pct(nr['matches']['median_pct'], False)} "
        f"({nr['matches']['median_vol']:.2f} vol units) after the matches vs "
        f"{_pct(nr['base']['median_pct'], False)} ({nr['base']['median_vol']:.2f}) base",
        highlight=False)
    for w in res.words:
        console.print(f"· {w}", highlight=False)
    if res.matches.height:
        hs = s["horizons"]
        m = MODES.get(s["mode"]) if s["mode"] in MODES else None
        same = s.get("same_tokens", m is not None and m.same_tokens)
        exact = same and s["origin"] == "dataset"  # one distance
        mrows = [(r["rank"], r["symbol"], res.when(r["start"]), res.when(r["end"]),
                  *([] if exact else [significant(r["distance"])]),
                  *[_pct(None if r[f"fwd_{h}"] is None else 100 * math.expm1(r[f"fwd_{h}"]))
                    for h in hs]) for r in res.matches.iter_rows(named=True)]
        title = ("most recent matches" if m is not None and m.by_recency
                 else "nearest matches")
        console.print(table(f"{title} (of {s['matches']})",
                            ["#", "symbol", "from", "to", *([] if exact else ["distance"]),
                             *[f"+{h} bar{'s' if h > 1 else ''}" for h in hs]], mrows))


def _print_forecast(console: Any, res: Any) -> None:
    """The analogue forecast as ``evaluate`` scores it (``res.forecast``, one function
    for both: search/forecast.py), in the words of its two val choices."""
    f = res.forecast
    r0 = f.row(0, named=True)
    how = (("distance-weighted" if r0["weighted"] else "equally weighted") + " matches, "
           + (f"returns in vol units x this query's scale ({100 * r0['scale']:.2f}%)"
              if r0["rescaled"] else "raw returns"))
    rows = [(r["horizon"], f"{r['n_eff']:.1f}", _prob(r["p_up"], r["p_lo"], r["p_hi"]),
             _pct(r["q10_pct"]), _pct(r["q50_pct"]), _pct(r["q90_pct"]),
             _pct(r["range_pct"], False)) for r in f.iter_rows(named=True)]
    console.print(table(f"analogue forecast, as evaluate scores it ({how})",
                        ["h", "eff. n", "P(up) [95% CI]", "q10", "q50", "q90",
                         "next range (mean)"], rows))


def _when(iso: str, fmt: str) -> str:
    """ISO text as a bar time in ``fmt`` (the text itself when it is not a time)."""
    try:
        return datetime.fromisoformat(iso).strftime(fmt)
    except ValueError:
        return iso


def _frac(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.1%}"


def _skill(s: dict[str, float] | None) -> str:
    if not s or s.get("value") is None:
        return "-"
    if s.get("lo") is None or s.get("hi") is None:
        return f"{s['value']:+.3f}"
    return f"{s['value']:+.3f} [{s['lo']:+.3f}, {s['hi']:+.3f}]"


def print_calibration(cal: Any, time_format: str = "%Y-%m-%d") -> None:
    """The analogue P(close up) per horizon: raw (shrunk), calibrated on val, the base
    rate and the val skill with its interval; then the verdicts in words."""
    rows = [(h.horizon, _frac(h.matches_p_up), f"{h.n_eff:.1f}", _frac(h.p_up_raw),
             _frac(h.p_up_calibrated), _frac(h.base_rate), _skill(h.val_skill),
             f"{h.calibration} (n={h.val_n})" if h.val_n else h.calibration)
            for h in cal.horizons]
    if cal.val_origins_asked:
        part = "all of val" if cal.cut == "all" else f"val up to {_when(cal.cut, time_format)}"
        how = (f"map fit on {part}: "
               f"the same search replayed point in time at {cal.val_origins_asked:,} seeded "
               f"val origins (seed {cal.seed}, of {max(cal.val_origins_available.values()):,})")
    else:
        how = "no map fit on val"
    console.print(table(
        f"calibrated P(close up after h bars) · {how}",
        ["h", "matches' P(up)", "eff. n", f"raw analogue P(up) (prior {cal.prior:g})",
         "calibrated P(up)", "base rate (train)", "val skill vs base [95%]", "map"], rows))
    for h in cal.horizons:
        console.print(f"· {h.words}", highlight=False)
    for n in cal.notes:
        console.print(f"· {n}", highlight=False)
    if cal.cache:
        src = (f"read from {cal.cache}" if cal.from_cache else
               f"fit in {cal.fit_seconds:.1f} s and cached in {cal.cache}")
        console.print(f"· calibration {src}", highlight=False)


@app.command("similar")
def similar_cmd(
    symbol: str = typer.Argument(..., help="Symbol whose last candles are the query."),
    dataset: Path = typer.Option(..., "--dataset", help="Dataset folder to search."),
    last: int = typer.Option(5, "--last", help="Candles in the query window."),
    mode: str = typer.Option("exact", "--mode", help=mode_help()),
    model: Path | None = typer.Option(None, "--model", help="Checkpoint for --mode model."),
    top: int = typer.Option(20, "--top", help="Neighbours (nearest/model); matches listed."),
    horizon: str = typer.Option("1,5,10", "--horizon", help="Forward horizons in bars."),
    at: str | None = typer.Option(None, "--at", help="Ask as of this date (YYYY-MM-DD)."),
    source: str | None = typer.Option(None, "--source",
                                      help="Load the query bars from here, not the dataset."),
    min_matches: int = typer.Option(10, "--min-matches",
                                    help="exact: back off to fewer candles below this."),
    plot: Path | None = typer.Option(None, "--plot", help="Write a chart (PNG)."),
    matches: int | None = typer.Option(None, "--matches", help="Match panels the --plot "
                                       "draws (default: every listed match, up to --top)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    device: str = typer.Option("cpu", "--device", help="Device for --mode model."),
    approximate: bool = typer.Option(False, "--approximate",
                                     help="--mode model: faiss HNSW (needs candletok[search])."),
    alphabet: str = typer.Option(DEFAULT_ALPHABET, "--alphabet",
                                 help="exact: match coarse symbols (gap x body x range) "
                                      "or the vocabulary's tokens."),
    no_calibrate: bool = typer.Option(False, "--no-calibrate",
                                      help="Skip the calibrated P(up) (no val replay)."),
    val_origins: int = typer.Option(200, "--val-origins",
                                    help="Val origins replayed to fit the calibration map."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace an existing --plot file."),
) -> None:
    """What followed the windows of history most like SYMBOL's last candles."""
    if plot is not None:
        refuse_existing(plot, overwrite)
    if mode not in MODES:
        raise fail(f"Unknown --mode {mode!r}; use {MODES.choices()}.")
    if MODES.get(mode).needs_model and model is None:
        raise fail(f"--mode {mode} needs a trained checkpoint: --model FILE.")
    if last < 1 or top < 1 or min_matches < 0:
        raise fail("--last and --top must be at least 1 and --min-matches at least 0.")
    if val_origins < 1:
        raise fail("--val-origins must be at least 1.")
    if matches is not None and matches < 0:
        raise fail(f"--matches must be 0 or more, not {matches}.")
    alphabet = _alphabet(alphabet)
    spec = SearchSpec(mode=mode, last=last, top=top, min_matches=min_matches,
                      horizons=parse_horizons(horizon), model=model, device=device,
                      approximate=approximate, alphabet=alphabet)
    cal = None
    if no_calibrate:  # the search alone: no forecast module, no val replay
        res = similar(dataset, symbol, spec, at=at, source=source)
        body = {**res.to_dict(), "calibration": None}
    else:
        from candletok.evaluation.simcal import calibrated_similar

        both = calibrated_similar(dataset, symbol, spec, at=at, source=source,
                                  val_origins=val_origins)
        res, cal = both.result, both.calibration
        body = both.to_dict()
    if as_json:
        print(json.dumps(body, indent=2))
    else:
        print_similar(res, cal)
    if plot is not None:
        path = plot_similar(res, plot, n_matches=matches)
        if not as_json:
            console.print(f"chart: {path}", highlight=False)


def print_motifs(res: MotifResult) -> None:
    """The base rate, then one row per motif with P(up) per horizon and its q-value."""
    s = res.summary
    hs = s["horizons"]
    console.print(
        f"[bold]{s['top']} most frequent {s['n']}-candle motifs[/] among {s['windows']:,} "
        f"windows ({s['distinct']:,} distinct) to "
        f"{_when(s['T'], time_format(s.get('interval')))} · outcomes thinned with a "
        f"{s['zone']}-bar zone · Benjamini-Hochberg over {s['tests']} tests", highlight=False)
    base = {r["horizon"]: r for r in res.base.iter_rows(named=True)}
    head = ["#", "count", "used", "motif (oldest → newest)",
            *[f"+{h} bar{'s' if h > 1 else ''}: P(up), q" for h in hs]]
    rows = [("", "", "", "base rate (every window)",
             *[_prob(base[h]["p_up"], base[h]["p_lo"], base[h]["p_hi"]) for h in hs])]
    for r in res.motifs.iter_rows(named=True):
        cells = [f"{_prob(r[f'p_up_{h}'], r[f'p_lo_{h}'], r[f'p_hi_{h}'])}\nq = {_p(r[f'q_{h}'])}"
                 if r[f"n_{h}"] else "-" for h in hs]
        rows.append((r["rank"], r["count"], r["matches"], r["words"].replace(" → ", "\n→ "),
                     *cells))
    console.print(table("motifs", head, rows))
    for w in res.words:
        console.print(f"· {w}", highlight=False)


@app.command("motifs")
def motifs_cmd(
    dataset: Path = typer.Argument(..., help="Dataset folder written by `candletok encode`."),
    n: int = typer.Option(3, "--n", help="Candles per motif (1-8)."),
    top: int = typer.Option(20, "--top", help="How many of the most frequent motifs."),
    horizon: str = typer.Option("1,5,10", "--horizon", help="Forward horizons in bars."),
    at: str | None = typer.Option(None, "--at", help="Use only bars up to this date."),
    alphabet: str = typer.Option(DEFAULT_ALPHABET, "--alphabet",
                                 help="Count coarse symbols (gap x body x range) or the "
                                      "vocabulary's tokens."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """The most frequent n-candle motifs in words, with what followed them."""
    if not 1 <= n <= 8:
        raise fail("--n must be between 1 and 8 candles.")
    if top < 1:
        raise fail("--top must be at least 1.")
    alphabet = _alphabet(alphabet)
    res = motifs(dataset, n=n, top=top, horizons=parse_horizons(horizon), at=at,
                 alphabet=alphabet)
    if as_json:
        print(json.dumps(res.to_dict(), indent=2))
    else:
        print_motifs(res)


@app.command("train-search")
def train_search_cmd(
    model: Path = typer.Option(..., "--model",
                               help="Checkpoint the search model sits beside (m.pt -> "
                                    "m.search.pt)."),
    dataset: Path = typer.Option(..., "--dataset", help="Dataset folder to train on."),
    last: int = typer.Option(5, "--last", help="Candles in a window (similar's --last)."),
    horizon: str = typer.Option("1,5,10", "--horizon", help="Forward horizons in bars."),
    calendar: str = typer.Option("auto", "--calendar",
                                 help="Calendar inputs: auto (chosen on val), on or off."),
    embed: str = typer.Option("auto", "--embed",
                              help="Embedding: auto (chosen on val), hidden or outcomes."),
    epochs: int = typer.Option(15, "--epochs", help="Epochs per candidate (best on val)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the initial weights and batches."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace an existing search model."),
) -> None:
    """Train the search model for --mode learned on the train split, chosen on val."""
    from candletok.core.atomic import sha256_file
    from candletok.search.retrieval import search_model_path
    from candletok.search.retrieval_train import SearchTrainConfig, train_search

    if not model.is_file():
        raise fail(f"No checkpoint at {model}; train one first (candletok train).")
    out = search_model_path(model)
    if out == model:
        raise fail("--model is the checkpoint (m.pt); the search model is written beside it.")
    refuse_existing(out, overwrite)
    cfg = SearchTrainConfig(window=last, horizons=parse_horizons(horizon), calendar=calendar,
                            embed=embed, epochs=epochs, seed=seed)
    res = train_search(dataset, out, cfg, facts={"checkpoint": model.name,
                                                 "checkpoint_sha256": sha256_file(model)})
    f = res.model.facts
    rows = [(r["candidate"], "-" if r.get("val_loss") is None else f"{r['val_loss']:.4f}",
             f"{r['mse']:.4f}", f"{r['mse_return']:.4f}", f"{r['mse_range']:.4f}")
            for r in res.table]
    console.print(table(f"val: {cfg.k}-nearest train windows' mean outcome, squared error "
                        "(standardized; lower is better)",
                        ["space", "val loss (heads)", "all", "returns", "ranges"], rows))
    cal = ("" if f.get("calendar_p") is None else
           f" (calendar inputs {'kept' if res.model.calendar else 'left out'}: one-sided "
           f"p = {f['calendar_p']:.2f} that they help, 0.05 needed)")
    console.print(f"chosen on val: {f['chosen_on_val']}{cal}; "
                  f"{f['trained_on']['train_windows']:,} train and "
                  f"{f['trained_on']['val_windows']:,} val windows, {res.seconds:.1f} s",
                  highlight=False)
    console.print(f"search model: {res.path}  (use: similar --mode learned --model {model})",
                  highlight=False)
