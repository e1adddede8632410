"""``candletok evaluate``: every forecaster replayed point in time, scored with intervals."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import typer

from candletok.cli.app import STATE, app, console, fail, table
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


def narrow_tables(wide: bool) -> bool:
    """Whether the tables drop their secondary columns: on a terminal unless ``--wide``,
    so that they fit 80 columns without a cut cell; a pipe or a file keeps every column
    (its width is unbounded), and so do the csv, json and markdown formats."""
    return not wide and STATE["format"] == "table" and console.is_terminal


def _table(title: str, cols: Sequence[tuple[str, bool]], rows: Iterable[Sequence[Any]],
           narrow: bool) -> Any:
    """A table of the columns ``(header, shown when narrow)``: every one when not
    ``narrow``, else the ones marked."""
    keep = [i for i, (_, short) in enumerate(cols) if short or not narrow]
    return table(title, [cols[i][0] for i in keep],
                 [tuple(r[i] for i in keep) for r in rows])


def print_report(rep: Any, wide: bool = True) -> None:
    """The tables (direction, range, quantiles, distribution scores, stop and target
    odds, bits), the reliability of the learned forecasters, and the notes. Not ``wide``
    on a terminal: each table's main columns only (:func:`narrow_tables`)."""
    n = narrow_tables(wide)
    origins = ", ".join(f"h={h}: {rep.origins[h]:,} (dropped {rep.dropped[h]})"
                        for h in rep.horizons)
    console.print(f"[bold]{rep.split}[/] split from {rep.split_from.get(rep.split, '?')} · "
                  f"forecast origins {origins} · intervals: 95% block bootstrap over dates",
                  highlight=False)
    console.print(_table(
        "P(close up at t+h): Brier score, skill vs the base rate (calibrated on val)",
        [("forecaster", True), ("h", True), ("n", True), ("Brier", False),
         ("skill vs base [95%]", True), ("raw skill", False), ("ECE [95%]", False),
         ("DM p", False), ("MCS 10%", False), ("calibration", False), ("verdict", True)],
        [(r.forecaster, r.horizon, r.n, _iv(r.brier),
          *(("-", "-") if r.reference else
            (_iv(r.skill, True), _num(r.skill_raw.value, "+.4f"))),
          _iv(r.ece), _p(r.dm), _mcs(r), r.calibration, r.verdict) for r in rep.direction], n))
    refs = list(rep.references.get("range", [])) or sorted(
        {k for r in rep.range for k in r.skill})
    first = refs[:1]  # narrow: the skill against the first declared reference only
    console.print(_table(
        "next candle's range ln(H/L): QLIKE (lower is better), skill vs each declared range "
        "reference, DM p-values in the same order, MCS (10%) of QLIKE",
        [("forecaster", True), ("n", False), ("QLIKE [95%]", True), ("MSE x1e4", False),
         *((f"skill vs {k} [95%]", k in first) for k in refs), ("DM p", False),
         ("MCS 10%", False), ("verdict", True)],
        [(r.forecaster, r.n, _iv(r.qlike, digits=3), _num(1e4 * r.mse.value, ".3f"),
          *(_iv(r.skill.get(k), True, 3) for k in refs),
          " ".join(_p(r.dm.get(k)) for k in refs), _mcs(r), r.verdict) for r in rep.range],
        n))
    console.print(_table(
        "forward log return quantiles (10/50/90%): pinball loss and 80% interval coverage",
        [("forecaster", True), ("h", True), ("n", True), ("pinball x1e3", False),
         ("skill vs base [95%]", True), ("coverage [95%]", False), ("verdict", True)],
        [(r.forecaster, r.horizon, r.n, f"{1e3 * r.pinball.value:.4f}",
          "-" if r.reference else _iv(r.skill, True),
          _iv(r.coverage, digits=3), r.verdict) for r in rep.quantiles], n))
    console.print(_table(
        "forward return distribution: CRPS (lower is better) and skill vs the base rate's, "
        "interval coverage with Christoffersen p-values (uncond./indep./cond.), MCS (10%) of "
        "CRPS",
        [("forecaster", True), ("h", True), ("n", False), ("CRPS x1e3 [95%]", True),
         ("CRPS skill vs base [95%]", True), ("80% cover [95%]", True), ("p 80%", False),
         ("90% cover [95%]", False), ("p 90%", False), ("MCS 10%", False)],
        [(r.forecaster, r.horizon, r.n,
          "-" if r.crps is None else _iv(_milli(r.crps), digits=3),
          "-" if r.reference or r.crps_skill is None else _iv(r.crps_skill, True, 3),
          _iv(r.coverage, digits=3), _ct(r.tests.get("80")), _iv(r.coverage90, digits=3),
          _ct(r.tests.get("90")), _mcs(r)) for r in rep.quantiles], n))
    if rep.odds:
        print_odds_scores(rep.odds, n)
    if rep.intervals:
        console.print(_table(
            "80% and 90% intervals before and after conformal calibration on val (return: "
            "the forecaster's own, then widened; range: no interval before), with "
            "Christoffersen's conditional-coverage p",
            [("forecaster", True), ("h", True), ("of", True), ("method", False),
             ("n", False), ("80% before", False), ("80% after", True),
             ("90% before", False), ("90% after", True)],
            [(r.forecaster, r.horizon, r.what, r.method, r.n,
              *(_cov(r.before, r.before_p, c) if b else _cov(r.after, r.after_p, c)
                for c in ("80", "90") for b in (True, False)))
             for r in rep.intervals], n))
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


def print_odds_scores(rows: Sequence[Any], narrow: bool) -> None:
    """The stop and target odds' Brier scores beside the random walk's, and the
    reliability of the model's calibrated odds at the longest horizon."""
    console.print(_table(
        "stop/target odds: P(+k vol units first) ('target') and P(-k first) ('stop') "
        "within h bars, Brier score beside the random walk's on the same origins, skill vs "
        "the random walk (its own row: vs the train frequency), calibrated on val",
        [("forecaster", True), ("event", True), ("k", True), ("h", True), ("n", False),
         ("Brier", True), ("walk", True), ("train freq", False),
         ("skill [95%]", True), ("raw skill", False), ("mean P / seen", False),
         ("calibration", False), ("verdict", True)],
        [(r.forecaster, r.event, f"{r.k:g}", r.horizon, r.n, f"{r.brier.value:.4f}",
          f"{r.brier_walk:.4f}", f"{r.brier_base:.4f}", _iv(r.skill, True, 3),
          "-" if r.skill_raw is None else _num(r.skill_raw.value, "+.3f"),
          f"{r.mean_p:.3f} / {r.observed:.3f}", r.calibration, r.verdict) for r in rows],
        narrow))
    learned = [r for r in rows if not r.reference and r.reliability]
    if learned:
        h = max(r.horizon for r in learned)
        for r in (r for r in learned if r.horizon == h and r.k == learned[0].k):
            console.print(table(
                f"reliability of {r.forecaster}'s {r.event} odds, k={r.k:g}, h={h} "
                f"({r.calibration})", ["bin", "mean forecast", "observed", "count"],
                [(f">= {lo:.1f}", f"{mp:.3f}", f"{of:.3f}", c)
                 for lo, mp, of, c in r.reliability]))
def _cov(cover: dict[str, Any], p: dict[str, Any], c: str) -> str:
    """``81.2% (p 0.43)``: a coverage and its conditional-coverage p; ``-`` without."""
    v, q = cover.get(c), p.get(c)
    if v is None:
        return "-"
    return f"{v:.1%}" + ("" if q is None or not math.isfinite(q) else f" (p {q:.2f})")


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
    odds: str = typer.Option("1,2", "--odds", help="Score the stop and target odds for these "
                             "multiples k of the volatility unit at every --horizon "
                             "(none: skip them)."),
    calendar_exchange: str = typer.Option(
        "auto", "--calendar-exchange", help="Exchange calendar of CandleGPT's sampled bars' "
        "times (a MIC such as XNYS; auto: from each symbol; none: the weekly grid)."),
    wide: bool = typer.Option(False, "--wide", help="Every column of every table on a "
                              "terminal too (by default a terminal gets the main columns, "
                              "to fit 80 columns; a pipe always gets them all)."),
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
    from candletok.predict.odds import parse_ks
    from candletok.tokenize.exchange import resolve_exchange

    ks = [] if odds.strip().lower() == "none" else parse_ks(odds)
    resolve_exchange("", calendar_exchange)  # a typo fails before any work
    rep = evaluate_forecasts(dataset, model, split=split, horizons=parse_horizons(horizon),
                             samples=samples, subsample=subsample, analogues=modes,
                             analogue_subsample=analogue_subsample, seed=seed, device=device,
                             keep_forecasts=forecasts is not None, odds=ks,
                             calendar_exchange=calendar_exchange, compare=compare)
    if forecasts is not None:
        write_forecasts(rep.forecasts, forecasts, overwrite)
    if plot is not None:
        from candletok.evaluation.evalplot import plot_evaluation

        plot_evaluation(rep, plot)
    if as_json:
        console.print_json(json.dumps(rep.to_dict()))
        return
    print_report(rep, wide)
    if rep.calibration_file:
        console.print(f"calibration maps (fit on val) saved to {rep.calibration_file}",
                      highlight=False)
    if plot is not None:
        console.print(f"chart written to {plot}", highlight=False)
    if forecasts is not None:
        console.print(f"{rep.forecasts.height:,} forecasts written to {forecasts}",
                      highlight=False)
