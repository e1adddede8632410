"""``candletok demo``: the whole pipeline on the bundled sample, offline."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from candletok.cli.app import app, console, err_console, fmt_bits, heading, table
from candletok.cli.cmd_data import print_encode


@app.command()
def demo(
    out: Path = typer.Option(Path("candletok-demo"), "--out",
                             help="Folder for everything the demo writes."),
    steps: int = typer.Option(300, "--steps", help="Training steps (the best-on-val is kept)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    seed: int = typer.Option(0, "--seed", help="Seed for the vocabulary, model and samples."),
) -> None:
    """Fit, encode, train, score, predict and chart on the bundled sample (no network)."""
    # torch loads here, when the demo runs, not when any command starts
    from candletok.cli.cmd_eval import print_report
    from candletok.cli.cmd_model import (
        plain_line,
        print_calibration,
        print_prediction,
        print_train,
    )
    from candletok.demo import DemoConfig, forecasters_run, run_demo
    from candletok.model.train import StepInfo

    cfg = DemoConfig(out=out, device=device, seed=seed)
    cfg.train.steps, cfg.train.seed = steps, seed
    t0 = time.perf_counter()
    err_console.print(f"candletok demo: {', '.join(cfg.symbols)} daily bars from the bundled "
                      f"sample; train < {cfg.val_from} <= val < {cfg.test_from} <= test",
                      highlight=False)
    plain = not err_console.is_terminal  # in a pipe or a log: plain lines, not a live bar
    with Progress(
        TextColumn("[bold]{task.description:>9}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=err_console,
        transient=True, disable=plain,
    ) as bar:  # one live display for every stage (rich allows only one at a time)
        tasks: dict[str, TaskID] = {}

        def tick(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total, info="")
            bar.update(tasks[stage], completed=done, total=total)
            if plain and done == total and stage != "train":
                err_console.print(f"{stage} done ({total:,})", highlight=False)

        def progress(i: StepInfo) -> None:
            tick("train", i.step, i.steps)
            bar.update(tasks["train"], info=f"loss {i.loss:.3f}  val {fmt_bits(i.val_bpc)} "
                                            f"bits/candle  {i.tokens_per_s:,.0f} tok/s  {i.phase}")
            line = plain_line(i) if plain else None  # the same lines as `train` in a log
            if line is not None:
                err_console.print(line, highlight=False, soft_wrap=True)

        res = run_demo(cfg, encode_progress=tick, train_progress=progress)
    heading("1. vocabulary and dataset")
    print_encode(res.encode)
    heading("2. CandleGPT against the baselines")
    print_train(res.train, res.files[2][1])
    heading(f"3. what comes after {cfg.predict_symbol}'s last bar")
    print_prediction(res.prediction)
    print_calibration(res.calibration)
    heading(f"4. {cfg.samples} sampled continuations of {cfg.predict_symbol}")
    console.print(table(f"{cfg.predict_symbol}: {cfg.horizon} candles after "
                        f"{res.continuation.last_ts:%Y-%m-%d}", ["quantity", "value"],
                        res.continuation.summary()))
    if res.evaluation is not None:
        rep = res.evaluation
        heading(f"5. every forecaster against the base rate (candletok evaluate, {rep.split}, "
                f"h = {', '.join(str(h) for h in rep.horizons)})")
        print_report(rep)
        names = ", ".join(forecasters_run(rep))
        console.print(f"forecasters run: {names} ({res.eval_seconds:,.0f} s); not run in the "
                      "demo: h > 1 and the pattern-search analogues (`candletok evaluate "
                      f"{out / 'data'} --model {out / 'model.pt'}` runs them)", highlight=False)
    console.print(f"interactive report ({res.report_seconds:,.1f} s): {res.files[7][1]} "
                  "(one HTML file; open it in a browser, offline)", highlight=False)
    console.print(table(f"files ({time.perf_counter() - t0:,.0f} s in all)", ["what", "where"],
                        [(what, str(p)) for what, p in res.files]))
    err_console.print(f"next: candletok predict AAPL MSFT --model {out / 'model.pt'} --dataset "
                      f"{out / 'data'}   (or candletok --help)", highlight=False)
