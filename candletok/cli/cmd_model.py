"""``candletok train``, ``candletok generate`` and ``candletok predict``."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from candletok.cli.app import app, console, emit_json, err_console, fail, table
from candletok.core.errors import ModelError
from candletok.forecast.predict import Calibration, Prediction
from candletok.model.checkpoint import model_interval
from candletok.model.train import StepInfo, TrainConfig, TrainResult, load_model, train


def _fmt_bits(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.4f}"


def print_scores(res: TrainResult) -> None:
    """The model next to every baseline, and the verdict."""
    rows = [(r.name, _fmt_bits(r.val), _fmt_bits(r.test),
             ", ".join(f"{k}={v:g}" for k, v in r.params.items())) for r in res.table]
    console.print(table("bits per candle (lower is better)",
                        ["model", "val", "test", "smoothing"], rows))
    style = "green" if res.beats_best_ngram else "bold yellow"
    console.print(f"[{style}]{res.summary}[/]", highlight=False)


@contextmanager
def train_progress(steps: int) -> Iterator[Callable[[StepInfo], None]]:
    """A live bar for ``train``: step, loss, val bits/candle and tokens/s."""
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}  val {task.fields[val]} bits/candle  "
                   "{task.fields[rate]} tok/s"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, transient=False,
    ) as bar:
        task = bar.add_task("train", total=steps, loss="-", val="-", rate="-")

        def progress(i: StepInfo) -> None:
            desc = {"train": "train", "eval": "val", "baselines": "baselines", "done": "done"}
            bar.update(task, completed=i.step, total=i.steps, description=desc[i.phase],
                       loss=f"{i.loss:.3f}", val=_fmt_bits(i.val_bpc),
                       rate=f"{i.tokens_per_s:,.0f}")

        yield progress


def print_train(res: TrainResult, out: Path) -> None:
    """One line on the run, then the model-vs-baselines table and its verdict."""
    console.print(
        f"CandleGPT {res.n_params:,} parameters · {res.step}/{res.steps} steps on {res.device} · "
        f"{res.tokens_per_s:,.0f} tokens/s · data wait {res.data_wait_share:.1%} · saved {out}",
        highlight=False,
    )
    print_scores(res)


def print_prediction(pr: Prediction) -> None:
    """The forecast table and the five most likely next candles."""
    console.print(table(f"{pr.symbol}: next candle after {pr.last_ts:%Y-%m-%d}",
                        ["", "forecast"], pr.rows()))
    console.print(table("5 most likely next candles", ["token", "prob", "candle"],
                        [(c.token, f"{c.prob:.2%}", c.words) for c in pr.top]))


def print_calibration(cal: Calibration) -> None:
    """Reliability table and Brier score of P(close up) against the base rate."""
    console.print(table(
        f"calibration of P(close up) on {cal.split} ({cal.n:,} candles, outcome: "
        f"{'the real next close' if cal.outcome == 'close' else 'the token direction'})",
        ["bin", "mean predicted", "observed", "count"],
        [(f">= {lo:.1f}", f"{mp:.3f}", f"{of:.3f}", cnt) for lo, mp, of, cnt in cal.table],
    ))
    verdict = "better" if cal.brier < cal.brier_base else "NOT better"
    console.print(f"Brier {cal.brier:.4f} vs {cal.brier_base:.4f} for the base rate "
                  f"({cal.base_rate:.1%} up): {verdict} than a constant forecast "
                  f"(skill {cal.skill:+.3f}).", highlight=False)


@app.command("train")
def train_cmd(
    dataset: Path = typer.Argument(..., help="Dataset folder written by `candletok encode`."),
    steps: int | None = typer.Option(None, "--steps", help="Optimizer steps (default 1000)."),
    context: int = typer.Option(128, "--context", help="Tokens of context per window."),
    layers: int = typer.Option(2, "--layers", help="Transformer blocks."),
    heads: int = typer.Option(4, "--heads", help="Attention heads."),
    width: int = typer.Option(64, "--width", help="Embedding width (a multiple of heads)."),
    lr: float = typer.Option(1e-3, "--lr", help="Peak learning rate."),
    batch: int = typer.Option(32, "--batch", help="Windows per step."),
    dropout: float = typer.Option(0.2, "--dropout", help="Dropout probability."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    out: Path = typer.Option(Path("model.pt"), "--out", help="Checkpoint to write."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run saved at --out."),
    eval_every: int | None = typer.Option(None, "--eval-every",
                                          help="Steps between val checks and checkpoints."),
    seed: int = typer.Option(0, "--seed", help="Seed for init, dropout and data order."),
) -> None:
    """Train CandleGPT, then score it against uniform, unigram and n-gram baselines."""
    if device not in ("auto", "cpu", "cuda"):
        raise fail(f"Unknown --device {device!r}; use auto, cpu or cuda.")
    defaults = TrainConfig()
    cfg = TrainConfig(
        steps=defaults.steps if steps is None else steps, context=context, n_layer=layers,
        n_head=heads, n_embd=width, lr=lr, batch_size=batch, dropout=dropout, seed=seed,
        eval_every=defaults.eval_every if eval_every is None else eval_every,
    )
    if resume:
        err_console.print(f"resuming {out} with its saved configuration"
                          + (f", now for {steps} steps" if steps else ""), highlight=False)
        if steps is None or eval_every is None:  # keep the saved values unless given
            from candletok.model.train import read_checkpoint

            saved = TrainConfig.from_dict(read_checkpoint(out)["train_config"])
            cfg.steps = saved.steps if steps is None else steps
            cfg.eval_every = saved.eval_every if eval_every is None else eval_every
    cfg.check()
    with train_progress(cfg.steps) as progress:
        res = train(dataset, cfg, out=out, device=device, resume=resume, progress=progress)
    if res.interrupted:
        err_console.print(f"stopped at step {res.step}; continue with `candletok train "
                          f"{dataset} --out {out} --resume`", highlight=False)
    print_train(res, out)


def _tokenizer_for(model: Any, dataset: Path | None) -> Any:
    """The model's vocabulary: from the dataset (fingerprint-checked) or the checkpoint."""
    from candletok.tokenize.registry import load_tokenizer

    if dataset is not None:
        from candletok.dataset.manifest import open_dataset

        tok = open_dataset(dataset)[1]
    else:
        text = model.meta.get("vocab_json")
        if not text:
            raise ModelError("This checkpoint holds no vocabulary; pass --dataset DIR.")
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "vocab.json"
            p.write_text(text, encoding="utf-8")
            tok = load_tokenizer(p)
    from candletok.model.train import check_fingerprint

    check_fingerprint(model.fingerprint, tok, "this vocabulary")
    return tok


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
) -> None:
    """Continue a symbol's real test series with sampled candles and summarize the fan."""
    from candletok.forecast.predict import continue_series

    model = load_model(model_path, device=device)
    cont = continue_series(model, dataset, symbol, n=n, samples=samples,
                           temperature=temperature, seed=seed)
    console.print(table(
        f"{symbol}: {samples} sampled continuations of {n} candles after "
        f"{cont.last_ts:%Y-%m-%d}", ["quantity", "value"], cont.summary()))
    if plot is not None:
        cont.plot(plot)
        console.print(f"chart written to {plot}")


@app.command()
def predict(
    symbols: list[str] = typer.Argument(..., help="Symbols to forecast the next candle of."),
    model_path: Path = typer.Option(..., "--model", help="Checkpoint from `candletok train`."),
    source: str | None = typer.Option(None, "--source", help="auto, yahoo, sample, synthetic "
                                      "or a path (default: the --dataset's own, else auto)."),
    interval: str | None = typer.Option(None, "--interval",
                                        help="Bar interval (default: the model's own)."),
    dataset: Path | None = typer.Option(None, "--dataset",
                                        help="Also check calibration on its test split."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    as_json: bool = typer.Option(False, "--json", help="Print the forecasts as JSON "
                                 "(probabilities and moves as fractions)."),
) -> None:
    """Next-candle probabilities for each symbol's latest bars, in plain words."""
    from candletok.forecast.latest import bars_source, forecast_report, predict_symbols
    from candletok.forecast.predict import calibration

    model = load_model(model_path, device=device)
    tok = _tokenizer_for(model, dataset)
    preds = predict_symbols(model, tok, symbols, source=bars_source(source, dataset),
                            interval=model_interval(model, interval))
    cal = calibration(model, dataset, "test") if dataset is not None else None
    if as_json:
        emit_json(forecast_report(preds, cal))
        return
    for pr in preds:
        print_prediction(pr)
    if cal is not None:
        print_calibration(cal)
