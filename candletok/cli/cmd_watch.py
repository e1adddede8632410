"""``candletok watch``: the answer refreshed at every bar close (parsing and printing only;
the loop is :class:`candletok.predict.live.Watcher`)."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from candletok.cli.app import (
    INTERRUPTED_EXIT,
    TERMINATED_EXIT,
    app,
    console,
    err_console,
    json_value,
)
from candletok.core.display import time_text
from candletok.core.errors import ModelError
from candletok.core.horizons import check_horizons

if TYPE_CHECKING:  # importing the loop loads torch
    from candletok.predict.live import Clock, WatchEvent


def make_clock(stop: Any) -> Clock:
    """The clock a run reads (tests replace this with a fake one)."""
    from candletok.predict.live import SystemClock

    return SystemClock(stop)


def event_line(ev: WatchEvent, interval: str) -> str:
    """One bar's answers on one line: the bar, then per horizon P(up) calibrated (raw), the
    base rate beside it, and at h = 1 the expected range; then the odds and analogues."""
    head = f"{time_text(ev.ts, interval)}  {ev.symbol}  close {ev.close:g}"
    return "  ".join([head, *answer_cells(ev), *extra_cells(ev)])


def answer_cells(ev: WatchEvent) -> list[str]:
    """Per horizon: P(up) calibrated (raw), the base rate beside it, at h = 1 the range."""
    parts = []
    for a in ev.answers:
        p = "-" if a.p_up is None else f"{a.p_up:.1%}"
        raw = "-" if a.p_up_raw is None else f"{a.p_up_raw:.1%}"
        cell = f"h={a.horizon}: P(up) {p} (raw {raw}, base {a.base_rate:.1%})"
        if a.horizon == 1 and a.range_pct is not None:
            cell += f" range {a.range_pct:.2f}%"
        elif a.horizon == 1 and a.range_raw is not None:  # no fitted constant: the raw one
            cell += f" range {100 * math.expm1(a.range_raw):.2f}% (raw)"
        parts.append(cell)
    return parts


def extra_cells(ev: WatchEvent) -> list[str]:
    """The odds and analogues of one bar, one cell each, where they were asked for."""
    from candletok.predict.watchextras import analogue_cell, odds_cell

    cells = [] if ev.odds is None else [odds_cell(ev.odds)]
    return cells + ([] if ev.analogues is None else [analogue_cell(ev.analogues)])


def event_json(ev: WatchEvent) -> str:
    """One bar's answers as one JSON line (probabilities as fractions)."""
    doc: dict[str, Any] = {"event": ev.kind, "symbol": ev.symbol, "ts": ev.ts.isoformat(),
                           "close": ev.close, "answers": [a.to_dict() for a in ev.answers]}
    if ev.odds is not None:
        doc["odds"] = [r.to_dict() for r in ev.odds]
    if ev.analogues is not None:
        doc["analogues"] = ev.analogues
    return json.dumps(doc, allow_nan=False, default=json_value)


def _table(last: dict[str, Any], interval: str) -> Any:
    from rich.table import Table

    t = Table(title="candletok watch (Ctrl-C stops)")
    odds = any(ev.odds is not None for ev in last.values())
    analogues = any(ev.analogues is not None for ev in last.values())
    for c in ("symbol", "last bar", "close", "answers", *["odds"] * odds,
              *["analogues"] * analogues):
        t.add_column(c)
    for sym, ev in last.items():
        t.add_row(sym, time_text(ev.ts, interval), f"{ev.close:g}",
                  "  ".join(answer_cells(ev)), *extra_cells(ev))
    return t


@app.command()
def watch(
    symbols: list[str] = typer.Argument(..., help="Symbols to follow, e.g. AAPL MSFT."),
    model_path: Path = typer.Option(..., "--model", help="Checkpoint from `candletok train`."),
    dataset: Path | None = typer.Option(None, "--dataset", help="The dataset the model was "
                                        "trained on (default: the one it records)."),
    interval: str | None = typer.Option(None, "--interval",
                                        help="Bar interval (default: the model's own)."),
    source: str = typer.Option("yahoo", "--source", help="yahoo (cached, polled), or a "
                               "file or folder that another process appends to."),
    horizon: str = typer.Option("1", "--horizon", help="Horizons in bars, e.g. 1,5."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per bar."),
    max_bars: int | None = typer.Option(None, "--max-bars",
                                        help="Stop after this many new bars."),
    poll: float = typer.Option(60.0, "--poll", help="Seconds between polls while a bar is "
                               "late (and the first network back-off)."),
    grace: float = typer.Option(30.0, "--grace", help="Seconds after a bar's close before "
                                "the first poll for it."),
    exchange: str = typer.Option("auto", "--exchange", help="Exchange calendar of the bar "
                                 "times (a MIC such as XNYS; auto: from each symbol; none: "
                                 "the series' weekly grid)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    odds: str | None = typer.Option(
        None, "--odds", help="Stop and target odds for these multiples k of the volatility "
        "unit, e.g. 1,2: P(+k before -k) within the longest --horizon, from sampled paths "
        "beside the random walk, as `predict --odds` gives them."),
    samples: int = typer.Option(500, "--samples", help="Sampled paths behind the --odds."),
    analogues: bool = typer.Option(True, "--analogues/--no-analogues", help="With "
                                   "--dataset: the nearest analogues per bar (`similar`'s "
                                   "matches, base rate and calibrated P(up))."),
) -> None:
    """Follow symbols bar by bar: the calibrated answer at every bar close (one line per
    bar in a pipe, an updating table in a terminal)."""
    import signal

    from candletok.data.sources import is_path_source, normalize_symbols
    from candletok.model.runtime import stop_on_sigint
    from candletok.predict.live import SourceFeed, Watcher, YahooFeed
    from candletok.predict.predictor import Predictor
    from candletok.predict.watchextras import AnalogueAsk, OddsAsk

    syms = normalize_symbols(symbols)
    hs = check_horizons(horizon)
    odds_ask = None
    if odds is not None:
        from candletok.predict.odds import parse_ks

        if samples < 1:
            raise ModelError("--samples must be at least 1.")
        odds_ask = OddsAsk(tuple(parse_ks(odds)), max(hs), samples, exchange)
    ana_ask = AnalogueAsk(dataset, tuple(hs)) if dataset is not None and analogues else None
    pred = Predictor.from_checkpoint(model_path, dataset, device=device)
    iv = interval or pred.facts.interval or "1d"
    feed = (SourceFeed(source, iv) if is_path_source(source) or source != "yahoo"
            else YahooFeed(iv))
    live = sys.stdout.isatty() and not as_json
    last: dict[str, Any] = {}
    with stop_on_sigint() as stop:
        w = Watcher(pred, syms, iv, feed, make_clock(stop), horizons=hs, exchange=exchange,
                    grace=grace, poll=poll, stop=stop, odds=odds_ask, analogues=ana_ask)
        if live:
            from rich.live import Live

            with Live(console=console, auto_refresh=False) as screen:
                def show(ev: WatchEvent) -> None:
                    last[ev.symbol] = ev
                    screen.update(_table(last, iv), refresh=True)

                res = w.run(show, max_bars=max_bars)
        else:
            out: Callable[[WatchEvent], str] = (
                event_json if as_json else lambda ev: event_line(ev, iv))

            def line(ev: WatchEvent) -> None:
                sys.stdout.write(out(ev) + "\n")
                sys.stdout.flush()

            res = w.run(line, max_bars=max_bars)
    err_console.print(f"watch: {res.bars} new bar{'s' * (res.bars != 1)}, {res.polls} "
                      f"polls, {res.errors} failed", highlight=False)
    if res.reason == "stopped":
        raise typer.Exit(TERMINATED_EXIT if stop.signum == signal.SIGTERM
                         else INTERRUPTED_EXIT)
