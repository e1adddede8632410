"""``candletok train``, ``candletok generate`` and ``candletok predict``."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from candletok.cli.app import (
    INTERRUPTED_EXIT,
    TERMINATED_EXIT,
    app,
    console,
    emit_json,
    err_console,
    fail,
    fmt_bits,
    table,
)
from candletok.cli.configopts import config_option
from candletok.core.display import time_text
from candletok.core.errors import ModelError
from candletok.core.times import IntervalError
from candletok.data.feeds import source_help
from candletok.model.config import ARCHS, TrainConfig
from candletok.tokenize.base import Tokenizer

if TYPE_CHECKING:  # torch loads only when a model command runs, not for --help
    from candletok.evaluation.calibrate import CalibratedProbability
    from candletok.model.gpt import CandleGPT
    from candletok.model.train import (
        StepInfo,
        TrainResult,
    )
    from candletok.predict.latest import BaseRate
    from candletok.predict.odds import OddsRow
    from candletok.predict.predict import Calibration, Prediction


def stopped_exit(res: TrainResult) -> int:
    """The exit code of a run: 0, or what a shell reports for the signal that stopped it."""
    import signal

    if not res.interrupted:
        return 0
    return TERMINATED_EXIT if res.stop_signal == signal.SIGTERM else INTERRUPTED_EXIT


def print_scores(res: TrainResult) -> None:
    """The model next to every baseline, and the verdict."""
    rows = [(r.name, fmt_bits(r.val), fmt_bits(r.test),
             ", ".join(f"{k}={v:g}" for k, v in r.params.items())) for r in res.table]
    console.print(table("bits per candle (lower is better)",
                        ["model", "val", "test", "smoothing"], rows))
    style = "green" if res.beats_best_ngram else "bold yellow"
    console.print(f"[{style}]{res.summary}[/]", highlight=False)


def _val_label(i: StepInfo) -> str:
    """What the progress "val" is: the last periodic evaluation while training, the table's
    (best weights, every val window) once done."""
    if i.phase != "done":
        return "val"
    return "val (best weights)" if i.best_step is None else f"val (step {i.best_step} weights)"


@contextmanager
def train_bar(steps: int) -> Iterator[Callable[[StepInfo], None]]:
    """A live bar for ``train`` on a terminal: step, loss, val bits/candle and tokens/s."""
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}  {task.fields[vlabel]} {task.fields[val]} "
                   "bits/candle  {task.fields[rate]} tok/s"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, transient=False,
    ) as bar:
        task = bar.add_task("train", total=steps, loss="-", val="-", rate="-", vlabel="val")

        def progress(i: StepInfo) -> None:
            desc = {"train": "train", "eval": "val", "baselines": "baselines", "done": "done"}
            bar.update(task, completed=i.step, total=i.steps, description=desc[i.phase],
                       loss=f"{i.loss_bits:.3f}", val=fmt_bits(i.val_bpc),
                       rate=f"{i.tokens_per_s:,.0f}", vlabel=_val_label(i))

        yield progress


def plain_line(i: StepInfo) -> str | None:
    """The log line for a pipe or a log file: one per evaluation boundary and one at the
    end, None for every other step."""
    from candletok.model.train import describe_stop
    if i.phase == "done":
        return (f"done step {i.step}/{i.steps} ({describe_stop(i.stop_reason or 'steps')}) "
                f"{_val_label(i)} {fmt_bits(i.val_bpc)} bits/candle")
    if not i.boundary:
        return None
    return (f"step {i.step}/{i.steps} loss {i.loss_bits:.3f} val "
            f"{fmt_bits(i.val_bpc)} bits/candle tok/s {i.tokens_per_s:,.0f}")


@contextmanager
def train_progress(steps: int) -> Iterator[Callable[[StepInfo], None]]:
    """A live bar when stdout is a terminal; plain lines on stdout otherwise (a pipe, a
    log file, CI), where a redrawn bar would arrive as one truncated line at the end."""
    if console.is_terminal:
        with train_bar(steps) as progress:
            yield progress
        return

    def log(i: StepInfo) -> None:
        line = plain_line(i)
        if line is not None:
            console.print(line, highlight=False, soft_wrap=True)

    yield log


def print_train(res: TrainResult, out: Path) -> None:
    """One line on the run, then the model-vs-baselines table and its verdict."""
    from candletok.model.train import describe_stop
    threads = (f" ({res.threads} thread{'s' if res.threads != 1 else ''})"
               if res.device == "cpu" and res.threads else "")
    why = "" if res.stop_reason == "steps" else f" ({describe_stop(res.stop_reason)})"
    if res.processes > 1:
        threads += f" × {res.processes} processes"
    cal = f"calendar inputs ({res.calendar})" if res.calendar else "no calendar inputs"
    console.print(
        f"{res.model_name} {res.n_params:,} parameters · {cal} · {res.step}/{res.steps} "
        f"steps{why} on {res.device}{threads} · {res.tokens_per_s:,.0f} tokens/s · data wait "
        f"{res.data_wait_share:.1%} · saved {out}",
        highlight=False,
    )
    print_scores(res)


def print_prediction(pr: Prediction, cp: CalibratedProbability | None = None,
                     base: BaseRate | None = None) -> None:
    """The forecast table and the five most likely next candles. With ``cp`` (what
    ``candletok evaluate`` fit on val), P(close up) is the calibrated number with its val
    skill, or the raw number marked as such with the reason; ``base`` is the answer's one
    base rate, named by its split. What the forecast cannot vouch for (a symbol the model
    never saw, facts an old checkpoint lacks) follows in words."""
    rows = pr.rows()
    if cp is not None:
        rows = [(k, _p_up_text(cp) if k == "P(next close above this close)" else
                 f"{v}  (raw; not evaluated)" if k.startswith("P(") else v) for k, v in rows]
    if base is not None:
        at = next(i for i, (k, _) in enumerate(rows) if k.startswith("P(next close")) + 1
        rows.insert(at, ("base rate", base.text()))
    console.print(table(f"{pr.symbol}: next candle after {time_text(pr.last_ts, pr.interval)}",
                        ["", "forecast"], rows))
    console.print(table("5 most likely next candles", ["token", "prob", "candle"],
                        [(c.token, f"{c.prob:.2%}", c.words) for c in pr.top]))
    for note in pr.notes:
        console.print(f"[bold yellow]{note}[/]", highlight=False)


def _p_up_text(cp: CalibratedProbability) -> str:
    if not cp.calibrated or cp.value is None:
        return f"{cp.raw:.1%}  (raw, uncalibrated)"
    return f"{cp.value:.1%}  (calibrated, {cp.skill_text()}; map {cp.kind}; raw {cp.raw:.1%})"


def print_calibration(cal: Calibration) -> None:
    """Reliability table and Brier score of P(close up) against the base rate, as
    ``candletok evaluate`` scored them."""
    console.print(table(
        f"calibration of the {cal.probability} P(close up) on {cal.split}, as evaluate "
        f"scored it ({cal.n:,} candles, outcome: the real next close)",
        ["bin", "mean predicted", "observed", "count"],
        [(f">= {lo:.1f}", f"{mp:.3f}", f"{of:.3f}", cnt) for lo, mp, of, cnt in cal.table],
    ))
    verdict = "better" if cal.brier < cal.brier_base else "NOT better"
    iv = "" if cal.skill_interval is None else (
        f" [{cal.skill_interval[0]:+.3f}, {cal.skill_interval[1]:+.3f}]")
    skill = (f"skill {cal.skill:+.3f}{iv}" if math.isfinite(cal.skill) else
             "skill undefined: the closes never vary in direction, the base rate never errs")
    console.print(f"Brier {cal.brier:.4f} vs {cal.brier_base:.4f} for the base rate "
                  f"({cal.base_rate:.1%} up in {cal.base_split}): {verdict} than always "
                  f"saying the base rate ({skill}).", highlight=False)


@app.command("train")
def train_cmd(
    dataset: Path = typer.Argument(..., help="Dataset folder written by `candletok encode`."),
    steps: int | None = config_option(TrainConfig, "steps"),
    arch: str = config_option(TrainConfig, "arch"),
    context: int = config_option(TrainConfig, "context"),
    layers: int = config_option(TrainConfig, "n_layer"),
    heads: int = config_option(TrainConfig, "n_head"),
    width: int = config_option(TrainConfig, "n_embd"),
    lr: float = config_option(TrainConfig, "lr"),
    batch: int = config_option(TrainConfig, "batch_size"),
    dropout: float = config_option(TrainConfig, "dropout"),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    out: Path = typer.Option(Path("model.pt"), "--out", help="Checkpoint to write."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run saved at --out."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace an existing --out checkpoint with a new run."),
    # None: not given (a resumed run keeps its saved value; a new one gets TrainConfig's)
    eval_every: int | None = config_option(TrainConfig, "eval_every"),
    patience: int | None = config_option(TrainConfig, "patience", default=None),
    threads: int | None = config_option(TrainConfig, "threads", default=None),
    seed: int = config_option(TrainConfig, "seed"),
    nproc: int = typer.Option(
        1, "--nproc", help="Processes (DDP via torchrun: gloo on CPU, nccl with one GPU "
        "each); --batch is the global batch and must be a multiple of it."),
    calendar: str | None = config_option(TrainConfig, "calendar", default=None),
    calendar_tz: str | None = config_option(TrainConfig, "calendar_tz"),
    levels: bool = config_option(TrainConfig, "levels", flags=("--levels/--no-levels",)),
) -> None:
    """Train CandleGPT (or the LSTM baseline), then score it against the baselines."""
    from candletok.model.ddp import forwarded_args, is_distributed, launch, process_group
    from candletok.model.train import check_out, resume_config, train
    if device not in ("auto", "cpu", "cuda"):
        raise fail(f"Unknown --device {device!r}; use auto, cpu or cuda.")
    if calendar is not None and calendar not in ("auto", "on", "off"):
        raise fail(f"Unknown --calendar {calendar!r}; use auto, on or off.")
    if nproc < 1:
        raise fail(f"--nproc must be at least 1, not {nproc}.")
    if arch not in ARCHS:
        raise fail(f"Unknown --arch {arch!r}; use {' or '.join(ARCHS)}.")
    check_out(out, resume=resume, overwrite=overwrite)  # before torchrun starts any rank
    if nproc > 1:
        if is_distributed():
            raise fail("--nproc starts torchrun itself; under torchrun leave it out.")
        err_console.print(f"starting {nproc} processes with torchrun", highlight=False)
        code = launch(nproc, forwarded_args(sys.argv), sys.executable)
        if code:
            raise typer.Exit(code)
        return
    changes = {"steps": steps, "eval_every": eval_every, "patience": patience,
               "threads": threads}
    if resume:
        cfg = resume_config(out, **changes)
        err_console.print(f"resuming {out} with its saved configuration"
                          + (f", now for {steps} steps" if steps else ""), highlight=False)
    else:
        given = {k: v for k, v in {**changes, "calendar": calendar,
                                    "calendar_tz": calendar_tz}.items() if v is not None}
        cfg = TrainConfig(arch=arch, context=context, n_layer=layers, n_head=heads,
                          n_embd=width, lr=lr, batch_size=batch, dropout=dropout, seed=seed,
                          levels=levels, **given)
    cfg.check()
    with process_group(device) as ranks:
        if not ranks.is_writer:  # the other ranks train silently; rank 0 reports
            res = train(dataset, cfg, out=out, device=device, resume=resume, ranks=ranks)
            raise typer.Exit(stopped_exit(res))
        with train_progress(cfg.steps or 0) as progress:
            res = train(dataset, cfg, out=out, device=device, resume=resume,
                        progress=progress, ranks=ranks)
    print_train(res, out)
    if res.interrupted:
        err_console.print(f"stopped at step {res.step}; continue with `candletok train "
                          f"{dataset} --out {out} --resume`", highlight=False)
        raise typer.Exit(stopped_exit(res))


def _tokenizer_for(model: CandleGPT, dataset: Path | None) -> Tokenizer:
    """The model's vocabulary: from the dataset (fingerprint-checked) or the checkpoint."""
    from candletok.model.checkpoint import check_fingerprint
    if dataset is not None:
        from candletok.dataset.manifest import open_dataset

        tok = open_dataset(dataset)[1]
    else:
        from candletok.tokenize.registry import loads_tokenizer

        text = model.meta.get("vocab_json")
        if not text:
            raise ModelError("This checkpoint holds no vocabulary; pass --dataset DIR.")
        tok = loads_tokenizer(text)
    check_fingerprint(model.fingerprint, tok, "this vocabulary")
    return tok


@app.command()
def predict(
    symbols: list[str] = typer.Argument(..., help="Symbols to forecast the next candle of."),
    model_path: Path = typer.Option(..., "--model", help="Checkpoint from `candletok train`."),
    source: str | None = typer.Option(None, "--source", help=source_help(short=True)[:-1]
                                      + " (default: the --dataset's own, else auto)."),
    interval: str | None = typer.Option(None, "--interval",
                                        help="Bar interval (default: the model's own)."),
    dataset: Path | None = typer.Option(None, "--dataset",
                                        help="Also check calibration on its test split."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    as_json: bool = typer.Option(False, "--json", help="Print the forecasts as JSON "
                                 "(probabilities and moves as fractions)."),
    odds: str | None = typer.Option(
        None, "--odds", help="Stop and target odds for these multiples k of the volatility "
        "unit (ATR-like), e.g. 1,2: P(+k before -k), P(-k first), P(neither) within "
        "--horizon bars, from sampled paths beside the driftless random walk."),
    horizon: int = typer.Option(10, "--horizon", help="Bars the --odds look ahead, and "
                                "the --at fan's bars."),
    samples: int = typer.Option(500, "--samples", help="Sampled paths behind the --odds."),
    calendar_exchange: str = typer.Option(
        "auto", "--calendar-exchange", help="Exchange calendar of the --odds paths' bar "
        "times (a MIC such as XNYS; auto: from each symbol; none: the weekly grid)."),
    at: str | None = typer.Option(
        None, "--at", help="What the model would have said then: forecast after the last "
        "bar at or before this date or time (YYYY-MM-DD or ISO), reading no bar after it; "
        "the numbers are those `candletok evaluate --forecasts` wrote for that origin "
        "(needs the dataset: --dataset, or the one the checkpoint records)."),
    plot: Path | None = typer.Option(
        None, "--plot", help="With --at: write the fan of the answer over --horizon bars "
        "with the real bars that followed drawn over it (PNG; NAME-SYMBOL.png after the "
        "first symbol)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --plot."),
) -> None:
    """Next-candle probabilities for each symbol's latest bars, in plain words."""
    if at is not None:
        from candletok.cli.cmd_fan import predict_at

        if odds is not None:
            raise ModelError("--odds reads the latest bars; leave it out with --at.")
        predict_at(symbols, model_path, dataset, source, at, device, as_json, horizon, plot,
                   overwrite)
        return
    if plot is not None:
        raise ModelError("--plot draws a replay: give --at DATE (`candletok generate --plot` "
                         "draws the fan after the latest bars).")
    from candletok.evaluation.calibrate import load_calibration
    from candletok.model.checkpoint import load_model, model_interval
    from candletok.predict.latest import (
        answer_cps,
        answer_verdict,
        bars_source,
        forecast_report,
        one_base_rate,
        predict_symbols,
        recorded_check,
    )

    model = load_model(model_path, device=device)
    tok = _tokenizer_for(model, dataset)
    iv = model_interval(model, interval)
    if dataset is not None:
        from candletok.dataset.manifest import read_manifest

        ds_iv = read_manifest(dataset).get("interval")
        trained = model.meta.get("interval")
        if ds_iv and trained and _norm(ds_iv) != _norm(trained):
            raise ModelError(f"The model was trained on {trained} bars but --dataset "
                             f"{dataset} holds {ds_iv} bars; give a dataset of {trained} "
                             "bars.")
    ks = None
    if odds is not None:
        from candletok.predict.odds import parse_ks
        from candletok.tokenize.exchange import resolve_exchange

        ks = parse_ks(odds)  # a bad list (or calendar) fails before any bars are loaded
        for s in symbols:
            resolve_exchange(s, calendar_exchange)
        if horizon < 1 or samples < 1:
            raise ModelError("--horizon and --samples must be at least 1.")
    bars = None
    try:
        if ks is not None:
            from candletok.data.sources import load_bars, normalize_symbols

            bars = load_bars(normalize_symbols(symbols), source=bars_source(source, dataset),
                             interval=iv)
        saved = load_calibration(model_path)
        predictor = None
        if dataset is not None:  # the numbers evaluate scores: its window and token table
            from candletok.evaluation.history import load_history
            from candletok.predict.predictor import Predictor

            predictor = Predictor(model, tok, load_history(dataset), saved, model_path,
                                  dataset)
        preds = predict_symbols(model, tok, symbols, source=bars_source(source, dataset),
                                interval=iv, bars=bars, predictor=predictor)
    except IntervalError as exc:
        if interval is not None or not exc.found:
            raise
        # the interval was the model's, not the user's: say so, not "drop --interval"
        raise ModelError(f"The model was trained on {iv} bars but {exc.what} holds "
                         f"{exc.found} bars; forecast {iv} bars with it, or train a model on "
                         f"{exc.found} bars.") from exc
    odds_by = (_odds_for(model, tok, bars, preds, ks, horizon, samples, calendar_exchange,
                         saved, iv) if ks else None)
    cps = answer_cps(preds, saved, iv)
    base = one_base_rate(model, saved, dataset)
    cal = recorded_check(saved, dataset, model_path) if dataset is not None else None
    verdict = answer_verdict(cps, cal, base)
    if as_json:
        doc = forecast_report(preds, cal, cps, base, verdict)
        if odds_by is not None:
            from candletok.predict.odds import odds_note

            for row, rows in zip(doc["predictions"], odds_by, strict=True):
                row["odds"] = [r.to_dict() for r in rows]
            doc["odds_note"] = odds_note([r for rows in odds_by for r in rows])
        emit_json(doc)
        return
    for i, (pr, cp) in enumerate(zip(preds, cps, strict=True)):
        print_prediction(pr, cp, base)
        if odds_by is not None:
            print_odds(pr, odds_by[i])
    for why in dict.fromkeys(cp.reason for cp in cps if cp.reason):  # each reason once
        console.print(f"P(close up) is uncalibrated: {why}.", highlight=False)
    if cal is not None:
        print_calibration(cal)
    else:
        console.print(verdict, highlight=False)


def _odds_for(model: CandleGPT, tok: Tokenizer, bars: Any, preds: list[Prediction],
              ks: list[float], horizon: int, samples: int, exchange: str = "auto",
              saved: Any = None, iv: str | None = None) -> list[list[OddsRow]]:
    """Per forecast symbol, the stop and target odds of each k from ``samples`` sampled
    continuations of its latest bars (their bars' times from ``exchange``), calibrated
    by the ``saved`` maps where ``evaluate`` scored this k and horizon."""
    import polars as pl

    from candletok.predict.odds import symbol_odds

    return [symbol_odds(model, tok, bars.filter(pl.col("symbol") == pr.symbol), ks, horizon,
                        samples, exchange=exchange, calibration=saved, interval=iv)
            for pr in preds]


def print_odds(pr: Prediction, rows: list[OddsRow]) -> None:
    """The odds table: per k, each outcome from the paths (95% interval) beside the
    random walk's closed form, then what the numbers are and are not."""
    from candletok.predict.odds import calibrated_cell, odds_note

    def cell(r: OddsRow, name: str) -> str:
        lo, hi = r.paths.intervals[name]
        return (f"{float(getattr(r.paths, name)):.1%} [{float(lo):.1%}-{float(hi):.1%}]"
                f"  (walk {float(getattr(r.walk, name)):.1%})")

    h = rows[0].horizon
    console.print(table(
        f"{pr.symbol}: stop and target odds within {h} bars ({rows[0].paths.n_paths} "
        "sampled paths)", ["k", "P(target +k first)", "P(stop -k first)", "P(neither)",
                           "calibrated on val"],
        [(f"{r.k:g}", cell(r, "p_up"), cell(r, "p_down"), cell(r, "p_neither"),
          calibrated_cell(r)) for r in rows]))
    amb = max(float(r.paths.ambiguous or 0.0) for r in rows)
    console.print(
        f"k is in volatility units: {100 * pr.scale:.2f}% of price (the causal scale, an EWMA "
        f"of the log true range); target = last close x exp(+k scale), stop = x exp(-k "
        "scale), touched by a bar's high or low; a bar touching both is split by its "
        f"direction (up bar: low first), {amb:.1%} of paths at most. 'walk' is a driftless "
        "random walk with the same volatility (closed form). " + odds_note(rows),
        highlight=False)


def _norm(interval: str) -> str:
    from candletok.core.times import normalize_interval

    return normalize_interval(interval)
