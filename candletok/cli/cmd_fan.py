"""``candletok generate`` and ``predict --at``: the fans, today's and a replayed past one's
with the real bars that followed drawn over it."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from candletok.cli.app import app, console, emit_json, fail, table
from candletok.core.atomic import refuse_existing
from candletok.core.display import time_text
from candletok.core.errors import ModelError


@app.command()
def generate(
    model_path: Path = typer.Option(..., "--model", help="Checkpoint from `candletok train`."),
    dataset: Path = typer.Option(..., "--dataset", help="Dataset folder (its test split)."),
    symbol: str = typer.Option(..., "--symbol", help="Symbol whose test series to continue."),
    n: int = typer.Option(20, "--n", help="Candles to generate."),
    samples: int = typer.Option(100, "--samples", help="Sampled continuations."),
    temperature: float = typer.Option(1.0, "--temperature", help="Sampling temperature."),
    plot: Path | None = typer.Option(None, "--plot", help="Write a candlestick PNG here."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace an existing --plot file."),
    calendar_exchange: str = typer.Option(
        "auto", "--calendar-exchange", help="Exchange calendar of the future bars' times (a "
        "MIC such as XNYS, XLON, XTKS; auto: from the symbol, e.g. .L -> XLON, bare ticker -> "
        "XNYS, FX and crypto -> none; none: the series' own weekly grid)."),
    as_json: bool = typer.Option(False, "--json", help="Print the fan as JSON: each future "
                                 "bar's time (ISO 8601) with the 10/50/90% closes."),
    at: str | None = typer.Option(
        None, "--at", help="Replay a past origin: continue from the last bar at or before "
        "this date or time (YYYY-MM-DD or ISO), reading no bar after it; the real bars that "
        "followed are drawn over the fan and listed beside its quantiles in --json."),
) -> None:
    """Continue a symbol's real test series (or, with --at, its series up to that date)
    with sampled candles and summarize the fan."""
    from candletok.evaluation.calibrate import load_calibration
    from candletok.model.checkpoint import load_model
    from candletok.predict.continuation import continue_series
    from candletok.tokenize.exchange import resolve_exchange

    if seed < 0:
        raise fail(f"--seed must be 0 or more, not {seed}.")
    exchange = resolve_exchange(symbol, calendar_exchange) or "none"  # a typo fails first
    if plot is not None:
        refuse_existing(plot, overwrite)

    model = load_model(model_path, device=device)
    cont = continue_series(model, dataset, symbol, n=n, samples=samples,
                           temperature=temperature, seed=seed,
                           calibration=load_calibration(model_path), exchange=exchange, at=at)
    if as_json:
        if plot is not None:
            cont.plot(plot)
        emit_json(cont.to_dict())
        return
    console.print(table(
        f"{symbol}: {samples} sampled continuations of {n} candles after "
        f"{time_text(cont.last_ts, cont.interval)}", ["quantity", "value"], cont.summary()))
    if cont.realized is not None:
        console.print(cont.realized_text(), highlight=False)
    if cont.future is not None:
        console.print(f"future bars' times: {cont.future.source}"
                      + (f" ({cont.future.note})" if cont.future.note else ""), highlight=False)
    if plot is not None:
        cont.plot(plot)
        console.print(f"chart written to {plot} ({cont.caveat})", highlight=False)


def predict_at(symbols: list[str], model_path: Path, dataset: Path | None,
               source: str | None, at: str, device: str, as_json: bool, horizon: int = 10,
               plot: Path | None = None, overwrite: bool = False) -> None:
    """``predict --at``: the :class:`~candletok.predict.predictor.Predictor`'s answer
    after the last bar at or before ``at``: h = 1 in the table, and horizons 1..``horizon``
    as a fan of close quantiles with the real closes that followed beside them (``--json``)
    and drawn over it (``--plot``; one file per symbol after the first: ``NAME-SYMBOL.png``)."""
    from candletok.predict.predictor import Predictor
    from candletok.predict.replay import replay

    if horizon < 1:
        raise ModelError("--horizon must be at least 1.")
    outs = [] if plot is None else _plot_paths(plot, symbols)
    for f in outs:
        refuse_existing(f, overwrite)
    pred = Predictor.from_checkpoint(model_path, dataset, device=device)
    reps = replay(pred, symbols, at, horizon, source)
    answers = [r.answers[0] for r in reps]  # h = 1
    for r, f in zip(reps, outs, strict=False):
        r.plot(f)
    if as_json:
        emit_json({"at": at, "answers": [a.to_dict() for a in answers],
                   "replays": [r.to_dict() for r in reps],
                   "units": {"p_*, base_rate": "probability as a fraction 0..1",
                             "range, range_raw": "ln(high / low) of the next candle",
                             "quantiles": "forward log return ln(close[t+h] / close[t])",
                             "replays.bars.close_*": "forecast close quantiles at t+h; "
                             "realized_close: the real close then (null past the data)"}})
        return
    for a, r in zip(answers, reps, strict=True):
        p_up = (f"{a.p_up:.1%}  (calibrated, map {a.calibration})" if a.p_up is not None
                else f"none: {a.p_up_reason}")
        q = a.quantiles
        real = r.realized_close[0]
        rows = [("last bar seen", time_text(a.origin, pred.facts.interval)),
                ("last close", f"{a.last_close:g}"),
                (f"P(close up in {a.horizon} bar{'s' * (a.horizon > 1)}), raw",
                 "-" if a.p_up_raw is None else f"{a.p_up_raw:.1%}"),
                ("P(close up), calibrated", p_up),
                ("base rate", f"{a.base_rate:.1%} ({a.base_rate_name})"),
                ("expected high-low range",
                 "-" if a.range_pct is None else f"{a.range_pct:.2f}%"),
                ("return 10% / 50% / 90%", " / ".join(
                    "-" if q[k] is None else f"{100 * q[k]:+.2f}%"
                    for k in ("q10", "q50", "q90"))),
                ("return 5% / 95%", " / ".join(
                    "-" if q[k] is None else f"{100 * q[k]:+.2f}%" for k in ("q05", "q95"))),
                *_interval_rows(a.intervals),
                ("what happened next", "not in the data" if real is None else
                 f"close {real:g} ({100 * math.log(real / a.last_close):+.2f}%)"),
                ("measured", f"{a.val_skill}; {a.test_skill}")]
        who = (a.forecaster if set(a.sources.values()) <= {a.forecaster}
               else "the forecasters chosen on val")
        console.print(table(f"{a.symbol}: what {who} said after "
                            f"{time_text(a.origin, pred.facts.interval)}",
                            ["", "forecast"], rows))
        for said in a.chosen:
            console.print(said, highlight=False)
        console.print(r.outcome_text(), highlight=False)
        for note in a.notes:
            console.print(f"[bold yellow]{note}[/]", highlight=False)
    for f in outs:
        console.print(f"chart written to {f}", highlight=False)


def _interval_rows(iv: dict[str, float | None]) -> list[tuple[str, str]]:
    """The conformal intervals (fit on val by `evaluate`) as table rows; none without."""
    rows = []
    for c in ("80", "90"):
        lo, hi = iv.get(f"lo{c}"), iv.get(f"hi{c}")
        if lo is not None and hi is not None:
            rows.append((f"return {c}% interval (conformal)",
                         f"{100 * lo:+.2f}% to {100 * hi:+.2f}%"))
    for c in ("80", "90"):
        lo, hi = iv.get(f"range_lo{c}"), iv.get(f"range_hi{c}")
        if lo is not None and hi is not None:
            rows.append((f"range {c}% interval (conformal)",
                         f"{100 * math.expm1(lo):.2f}% to {100 * math.expm1(hi):.2f}%"))
    return rows


def _plot_paths(plot: Path, symbols: list[str]) -> list[Path]:
    """One chart per symbol: ``plot`` for the first, ``plot`` with ``-SYMBOL`` for the rest."""
    return [plot if i == 0 else plot.with_name(f"{plot.stem}-{s.strip().upper()}{plot.suffix}")
            for i, s in enumerate(symbols)]
