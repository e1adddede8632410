"""``candletok report``: parse, call :func:`candletok.report.page.write_report`, print."""

from __future__ import annotations

from pathlib import Path

import typer

from candletok.cli.app import app, console, fail
from candletok.cli.options import parse_horizons
from candletok.core.atomic import refuse_existing
from candletok.search.modes import MODES, mode_help
from candletok.search.spec import SearchSpec


@app.command("report")
def report_cmd(
    symbol: str = typer.Argument(..., help="Symbol of the dataset to report on."),
    dataset: Path = typer.Option(..., "--dataset", help="Dataset folder (candletok encode)."),
    out: Path = typer.Option(..., "--out", help="The HTML file to write (self-contained)."),
    model: Path | None = typer.Option(None, "--model",
                                      help="Checkpoint: adds the forecast fan and verdicts."),
    at: str | None = typer.Option(None, "--at", help="Report as of this date (YYYY-MM-DD): "
                                  "the real bars after it are drawn over the fan."),
    evaluation: Path | None = typer.Option(
        None, "--evaluation", help="What `candletok evaluate --json` printed, saved to a "
        "file: the full verdict tables and reliability diagrams."),
    last: int = typer.Option(5, "--last", help="Candles in the search's query window."),
    mode: str = typer.Option("exact", "--mode", help=mode_help()),
    top: int = typer.Option(20, "--top", help="Neighbours (nearest/model); exact lists all."),
    horizon: str = typer.Option("1,5,10", "--horizon", help="Forward horizons in bars."),
    fan: int = typer.Option(20, "--fan", help="Bars of the model's sampled fan."),
    samples: int = typer.Option(200, "--samples", help="Sampled paths of the fan."),
    recent: int = typer.Option(120, "--recent", help="Recent bars in the price chart."),
    no_calibrate: bool = typer.Option(False, "--no-calibrate",
                                      help="Skip the analogues' calibration on val."),
    val_origins: int = typer.Option(200, "--val-origins",
                                    help="Val origins replayed to calibrate the analogues."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampled paths."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
) -> None:
    """One self-contained HTML page: bars, every match, outcomes, forecast and verdicts."""
    from candletok.report.page import write_report

    refuse_existing(out, overwrite)
    if mode not in MODES:
        raise fail(f"Unknown --mode {mode!r}; use {MODES.choices()}.")
    if MODES.get(mode).needs_model and model is None:
        raise fail(f"--mode {mode} needs a trained checkpoint: --model FILE.")
    if last < 1 or top < 1 or fan < 1 or samples < 1 or recent < 2 or val_origins < 1:
        raise fail("--last, --top, --fan, --samples and --val-origins must be at least 1 "
                   "and --recent at least 2.")
    if out.suffix.lower() not in (".html", ".htm"):
        raise fail(f"--out must be an .html file, not {out.name!r}.")
    spec = SearchSpec(mode=mode, last=last, top=top, horizons=parse_horizons(horizon),
                      model=model)
    path, d = write_report(dataset, symbol, out, overwrite=overwrite, model=model, at=at,
                           spec=spec, recent=recent, fan_horizon=fan, samples=samples,
                           seed=seed, calibrate=not no_calibrate, val_origins=val_origins,
                           evaluation=evaluation)
    parts = [f"{len(d.matches)} matches"]
    parts.append("a fan of sampled paths" if d.fan is not None else "no model: no fan")
    parts.append("the evaluate tables" if d.evaluation is not None else
                 "the saved verdicts" if d.calibration is not None else "no evaluation")
    console.print(f"report of {d.symbol} at {d.T.strftime(d.time_format)}: "
                  f"{', '.join(parts)} · {path}", highlight=False)
