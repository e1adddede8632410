"""``candletok evaluate``: every forecaster replayed point in time, scored with intervals."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer

from candletok.cli.app import app, console, fail, table
from candletok.cli.options import parse_horizons
from candletok.search.modes import MODES


def _mode_words() -> list[str]:
    """The registered modes for --analogues' help (with what each needs)."""
    return [f"{m.name} (needs --model)" if m.needs_model else m.name for m in MODES.items()]


def _iv(e: Any, signed: bool = False, digits: int = 4) -> str:
    """A value with its 95% interval (:meth:`Estimate.text`), ``-`` for none."""
    return "-" if e is None else e.text(digits, signed)


def _num(v: float, spec: str) -> str:
    """A number, or "undefined" where it is not one (a skill against a reference that
    never errs: data without variation)."""
    return format(v + 0.0, spec) if math.isfinite(v) else "undefined"


def _p(dm: Any) -> str:
    return "-" if dm is None or not math.isfinite(dm.p_value) else f"{dm.p_value:.3f}"


def _mcs(r: Any) -> str:
    """``in`` / ``out`` of the 10% Model Confidence Set with its p-value, ``-`` when the
    forecaster was not in the comparison (a subsample)."""
    if r.mcs is None:
        return "-"
    return f"{'in' if r.mcs else 'out'} ({r.mcs_p:.2f})"


def _ct(t: Any) -> str:
    """Christoffersen p-values: unconditional coverage / independence / both."""
    if t is None:
        return "-"
    return "/".join("-" if not math.isfinite(v) else f"{v:.2f}"
                    for v in (t.p_uc, t.p_ind, t.p_cc))


def print_report(rep: Any) -> None:
    """The tables (direction, range, quantiles, distribution scores, bits), the reliability
    of the learned forecasters, and the notes."""
    origins = ", ".join(f"h={h}: {rep.origins[h]:,} (dropped {rep.dropped[h]})"
                        for h in rep.horizons)
    console.print(f"[bold]{rep.split}[/] split from {rep.split_from.get(rep.split, '?')} · "
                  f"forecast origins {origins} · intervals: 95% block bootstrap over dates",
                  highlight=False)
    console.print(table(
        "P(close up at t+h): Brier score, skill vs the base rate (calibrated on val)",
        ["forecaster", "h", "n", "Brier", "skill vs base [95%]", "raw skill", "ECE [95%]",
         "DM p", "MCS 10%", "calibration", "verdict"],
        [(r.forecaster, r.horizon, r.n, _iv(r.brier),
          *(("-", "-") if r.reference else
            (_iv(r.skill, True), _num(r.skill_raw.value, "+.4f"))),
          _iv(r.ece), _p(r.dm), _mcs(r), r.calibration, r.verdict) for r in rep.direction]))
    refs = list(rep.references.get("range", [])) or sorted(
        {k for r in rep.range for k in r.skill})
    console.print(table(
        "next candle's range ln(H/L): QLIKE (lower is better), skill vs each declared range "
        "reference, DM p-values in the same order, MCS (10%) of QLIKE",
        ["forecaster", "n", "QLIKE [95%]", "MSE x1e4", *(f"skill vs {k} [95%]" for k in refs),
         "DM p", "MCS 10%", "verdict"],
        [(r.forecaster, r.n, _iv(r.qlike, digits=3), _num(1e4 * r.mse.value, ".3f"),
          *(_iv(r.skill.get(k), True, 3) for k in refs),
          " ".join(_p(r.dm.get(k)) for k in refs), _mcs(r), r.verdict) for r in rep.range]))
    console.print(table(
        "forward log return quantiles (10/50/90%): pinball loss and 80% interval coverage",
        ["forecaster", "h", "n", "pinball x1e3", "skill vs base [95%]", "coverage [95%]",
         "verdict"],
        [(r.forecaster, r.horizon, r.n, f"{1e3 * r.pinball.value:.4f}",
          "-" if r.reference else _iv(r.skill, True),
          _iv(r.coverage, digits=3), r.verdict) for r in rep.quantiles]))
    console.print(table(
        "forward return distribution: CRPS (lower is better) and skill vs the base rate's, "
        "interval coverage with Christoffersen p-values (uncond./indep./cond.), MCS (10%) of "
        "CRPS",
        ["forecaster", "h", "n", "CRPS x1e3 [95%]", "CRPS skill vs base [95%]",
         "80% cover [95%]", "p 80%", "90% cover [95%]", "p 90%", "MCS 10%"],
        [(r.forecaster, r.horizon, r.n,
          "-" if r.crps is None else _iv(_milli(r.crps), digits=3),
          "-" if r.reference or r.crps_skill is None else _iv(r.crps_skill, True, 3),
          _iv(r.coverage, digits=3), _ct(r.tests.get("80")), _iv(r.coverage90, digits=3),
          _ct(r.tests.get("90")), _mcs(r)) for r in rep.quantiles]))
    if rep.bits:
        console.print(table(
            "bits per candle (next token; lower is better)",
            ["forecaster", "n", "bits [95%]", "minus the n-gram [95%]"],
            [(b.forecaster, b.n, _iv(b.bits, digits=3),
              _iv(b.diff, True, 3) if b.diff is not None else "-") for b in rep.bits]))
    for r in rep.direction:
        if r.horizon == 1 and not r.reference and r.reliability:
            console.print(table(
                f"reliability of {r.forecaster}, h=1 ({r.calibration})",
                ["bin", "mean forecast", "observed", "count"],
                [(f">= {lo:.1f}", f"{mp:.3f}", f"{of:.3f}", n) for lo, mp, of, n in
                 r.reliability]))
    for note in rep.notes:
        console.print(f"· {note}", highlight=False)
    for note in degenerate_notes(rep):
        console.print(f"· {note}", highlight=False)


def degenerate_notes(rep: Any) -> list[str]:
    """Sentences for scores that are undefined because the split has no variation, so
    that a reader sees why a skill reads "undefined" instead of a number."""
    out = []
    if any(r.forecaster != "base rate" and not math.isfinite(r.skill_raw.value)
           for r in rep.direction):
        out.append("P(close up) skill is undefined: the base rate never errs on this split "
                   "(the closes do not vary in direction), so there is nothing to beat.")
    if rep.range and all(r.n == 0 for r in rep.range):
        out.append("range scores are undefined: no origin has a next candle with a non-zero "
                   "range (the data have no variation).")
    return out


def _milli(e: Any) -> Any:
    """The estimate times 1000, for a loss printed in thousandths."""
    from candletok.evaluation.scores import Estimate

    return Estimate(1e3 * e.value, 1e3 * e.lo, 1e3 * e.hi)


@app.command("evaluate")
def evaluate_cmd(
    dataset: Path = typer.Argument(..., help="Dataset folder written by `candletok encode`."),
    model: Path | None = typer.Option(None, "--model", help="Checkpoint from `candletok "
                                      "train` (without it: the baselines only)."),
    compare: list[Path] = typer.Option(
        [], "--compare", help="Another checkpoint to score in the same tables (repeatable), "
        "e.g. the LSTM baseline of `candletok train --arch lstm`; --model stays the answer "
        "whose calibration `predict` reads."),
    split: str = typer.Option("test", "--split", help="val or test."),
    horizon: str = typer.Option("1,5,10", "--horizon", help="Horizons in bars, e.g. 1,5,10."),
    plot: Path | None = typer.Option(None, "--plot", help="Write the reliability diagram "
                                     "and the range chart to this PNG."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    samples: int = typer.Option(32, "--samples", help="Sampled paths per origin for "
                                "CandleGPT's h > 1 forecasts."),
    subsample: int = typer.Option(100, "--subsample", help="Origins sampled per split for "
                                  "CandleGPT's h > 1 forecasts."),
    analogues: str = typer.Option("all", "--analogues",
                                  help="Pattern-search analogues to score: "
                                  f"{', '.join(_mode_words())}, all (every registered "
                                  "mode) or none."),
    analogue_subsample: int = typer.Option(300, "--analogue-subsample",
                                           help="Origins searched per split for the exact "
                                           "and nearest analogues."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampling and the bootstrap."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    forecasts: Path | None = typer.Option(
        None, "--forecasts", help="Write every origin's forecast to this .parquet or .csv "
        "file: one row per symbol, origin (the last bar seen, as `predict --at` takes it), "
        "forecaster and horizon, with p_up_raw, p_up (calibrated), range and quantiles."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace an existing --plot or --forecasts file."),
) -> None:
    """Score every forecaster against the base rate and the volatility baselines."""
    from candletok.core.atomic import refuse_existing
    from candletok.evaluation.evaluate import evaluate_forecasts
    from candletok.evaluation.forecastfile import check_forecasts_path, write_forecasts

    if plot is not None:
        refuse_existing(plot, overwrite)
    if forecasts is not None:
        check_forecasts_path(forecasts, overwrite)

    if split.strip().lower() not in ("val", "validation", "test"):
        raise fail(f"--split takes val or test, not {split!r}.")
    if seed < 0:
        raise fail(f"--seed must be 0 or more, not {seed}.")
    if samples < 1 or subsample < 1 or analogue_subsample < 1:
        raise fail("--samples, --subsample and --analogue-subsample must be at least 1.")
    text = analogues.replace(" ", "").lower()
    # "all" is read now, not when the CLI was imported: a mode registered since is scored
    modes = [] if text == "none" else list(MODES.names()) if text == "all" else [
        m for m in text.split(",") if m]
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise fail(f"--analogues takes {', '.join(MODES.names())}, all or none, not "
                   f"{', '.join(bad)}.")
    rep = evaluate_forecasts(dataset, model, split=split, horizons=parse_horizons(horizon),
                             samples=samples, subsample=subsample, analogues=modes,
                             analogue_subsample=analogue_subsample, seed=seed, device=device,
                             keep_forecasts=forecasts is not None, compare=compare)
    if forecasts is not None:
        write_forecasts(rep.forecasts, forecasts, overwrite)
    if plot is not None:
        from candletok.evaluation.evalplot import plot_evaluation

        plot_evaluation(rep, plot)
    if as_json:
        console.print_json(json.dumps(rep.to_dict()))
        return
    print_report(rep)
    if rep.calibration_file:
        console.print(f"calibration maps (fit on val) saved to {rep.calibration_file}",
                      highlight=False)
    if plot is not None:
        console.print(f"chart written to {plot}", highlight=False)
    if forecasts is not None:
        console.print(f"{rep.forecasts.height:,} forecasts written to {forecasts}",
                      highlight=False)
