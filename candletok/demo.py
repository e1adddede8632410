"""The whole pipeline on the bundled sample, offline, in about two minutes.

``candletok demo`` is the first thing a new user runs, so it shows every stage once with
settings small enough for a laptop CPU: fit a vocabulary on the early years of the real
sample, write the time-split dataset, train a small CandleGPT, score it against the
baselines, forecast AAPL's next candle, check that forecast's calibration on the test
years, draw a fan of sampled continuations, and score every cheap forecaster and
CandleGPT against the base rate with ``candletok evaluate``'s harness (h = 1 only: the
sampled h > 1 paths and the pattern-search analogues cost minutes, so the demo leaves them
to ``candletok evaluate``) with its reliability diagram. Every file goes under one
folder, and a ``summary.md`` there records the tables exactly as printed.

The demo vocabulary differs from the library default on purpose: a daily sample of four
stocks holds ~12,000 training candles, too few for the default 1,053 price-only tokens to
carry anything a model can learn beyond their frequencies (measured: the model and every
n-gram stay within 0.02 bits of the unigram). Relative volume is the part of a candle that
is predictable from its past (busy days cluster), so the demo adds four relative-volume
bins and uses coarser price bins to keep the vocabulary near the same size (5*5*3*3*4 =
900 candle tokens). Chosen on the val split among three such settings (see docs/model.md).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from candletok.core.atomic import atomic_path
from candletok.core.errors import CandletokError
from candletok.data.sample import load_sample
from candletok.dataset.build import EncodeResult, build_dataset
from candletok.dataset.manifest import open_dataset, read_split
from candletok.evaluation.calibrate import direction_caveat, load_calibration
from candletok.evaluation.evalplot import plot_evaluation
from candletok.evaluation.evaluate import EvalReport, evaluate_forecasts
from candletok.evaluation.history import load_history
from candletok.model.train import Progress, TrainConfig, TrainResult, resolve_device, train
from candletok.predict.continuation import Continuation, continue_series
from candletok.predict.predict import Calibration, Prediction, measured_check, predict_next
from candletok.predict.predictor import Predictor
from candletok.report.page import write_report

DEMO_SYMBOLS = ("AAPL", "IBM", "MSFT", "GOOG")
DEMO_TOKENIZER: dict[str, Any] = {
    "gap_bins": 5, "body_bins": 5, "upper_bins": 3, "lower_bins": 3, "vol_bins": 4,
}
MARKER = ".candletok-demo"


@dataclass
class DemoConfig:
    """What the demo runs. The defaults are the documented demo; tests shrink them."""

    out: Path = Path("candletok-demo")
    symbols: tuple[str, ...] = DEMO_SYMBOLS
    scheme: str = "bins"
    tokenizer_kwargs: dict[str, Any] = field(default_factory=lambda: dict(DEMO_TOKENIZER))
    val_from: str = "2011-01-01"  # fit on 2000-2010, as docs/tokens.md's quality table
    test_from: str = "2012-01-01"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=300, eval_every=25))
    predict_symbol: str = "AAPL"
    horizon: int = 20
    samples: int = 100
    device: str = "auto"
    seed: int = 0
    eval_horizons: tuple[int, ...] = (1,)  # the evaluate harness; h > 1 samples paths (slow)
    eval_boot: int = 1000  # bootstrap resamples of every interval
    report_calibrate: bool = True  # the report's analogue P(up) calibrated on val


@dataclass
class DemoResult:
    config: DemoConfig
    encode: EncodeResult
    train: TrainResult
    prediction: Prediction
    calibration: Calibration
    continuation: Continuation
    files: list[tuple[str, Path]]
    evaluation: EvalReport | None = None
    eval_seconds: float = 0.0
    report_seconds: float = 0.0


EncodeProgress = Callable[[str, int, int], None]


def _prepare(out: Path) -> None:
    """Claim ``out`` for the demo: new, empty, or an earlier demo's folder (replaced)."""
    if out.exists() and not out.is_dir():
        raise CandletokError(f"{out} is a file; give a folder as out= instead.")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise CandletokError(
            f"{out} already holds files that the demo did not write; pass an empty or new "
            "folder as out= instead."
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by `candletok demo`; safe to delete\n", encoding="utf-8")


def run_demo(
    cfg: DemoConfig | None = None,
    encode_progress: EncodeProgress | None = None,
    train_progress: Progress | None = None,
) -> DemoResult:
    """Run every stage on the bundled sample and return what each produced."""
    cfg = cfg or DemoConfig()
    cfg.train.check()  # bad settings fail before anything is written
    resolve_device(cfg.device)
    out = Path(cfg.out)
    _prepare(out)
    data, model_path, chart = out / "data", out / "model.pt", out / "fan.png"
    reliability, report = out / "reliability.png", out / "report.html"
    for stale in (model_path, chart, out / "summary.md", reliability,
                  out / "model.calibration.json", report):
        stale.unlink(missing_ok=True)
    if data.exists():
        shutil.rmtree(data)
    enc = build_dataset(
        list(cfg.symbols), data, scheme=cfg.scheme, source="sample", val_from=cfg.val_from,
        test_from=cfg.test_from, seed=cfg.seed, tokenizer_kwargs=dict(cfg.tokenizer_kwargs),
        progress=encode_progress,
    )
    res = train(data, cfg.train, out=model_path, device=cfg.device, progress=train_progress)
    model = res.model
    if model is None:  # train() always returns the loaded best model; keep mypy honest
        raise CandletokError("Training returned no model.")
    model.eval()
    tok = open_dataset(data)[1]
    # Forecast the candle after the sample's last bar for this symbol, from its own bars.
    bars = load_sample([cfg.predict_symbol])
    cont = continue_series(model, data, cfg.predict_symbol, n=cfg.horizon,
                           samples=cfg.samples, seed=cfg.seed)
    tick = encode_progress or (lambda stage, done, total: None)
    tick("evaluate", 0, 1)
    t0 = time.perf_counter()
    rep = evaluate_forecasts(data, model_path, split="test", horizons=cfg.eval_horizons,
                             analogues=(), n_boot=cfg.eval_boot, seed=cfg.seed,
                             device=resolve_device(cfg.device))
    plot_evaluation(rep, reliability)
    cal = measured_check(rep.calibration)  # evaluate's own direction row, not a second loop
    if cal is None:
        raise CandletokError("evaluate recorded no test check of the model's P(close up).")
    eval_seconds = time.perf_counter() - t0
    # P(close up) and the range from the forecaster evaluate just scored (shown = scored)
    predictor = Predictor(model, tok, load_history(data), load_calibration(model_path),
                          model_path, data)
    pred = predict_next(model, tok, bars, predictor)
    # The fan carries what evaluate measured of direction at its horizon (or that it did not).
    cont.caveat = direction_caveat(load_calibration(model_path), cfg.horizon)
    cont.plot(chart)
    tick("evaluate", 1, 1)
    tick("report", 0, 1)
    t0 = time.perf_counter()
    # the fan already sampled (the one fan.png draws) and answers at the evaluated h only
    write_report(data, cfg.predict_symbol, report, model=model_path, seed=cfg.seed,
                 fan_horizon=cfg.horizon, samples=cfg.samples, evaluation=rep.to_dict(),
                 calibrate=cfg.report_calibrate, answer_horizons=cfg.eval_horizons,
                 continuation=cont)
    report_seconds = time.perf_counter() - t0
    tick("report", 1, 1)
    files = [
        ("dataset (Parquet shards + manifest)", data),
        ("vocabulary", data / "vocab.json"),
        ("model checkpoint", model_path),
        ("fan chart", chart),
        ("summary", out / "summary.md"),
        ("reliability diagram and range chart", reliability),
        ("calibration maps (fit on val)", Path(rep.calibration_file or
                                               out / "model.calibration.json")),
        ("interactive report (HTML, opens offline)", report),
    ]
    result = DemoResult(cfg, enc, res, pred, cal, cont, files, rep, eval_seconds,
                        report_seconds)
    with atomic_path(out / "summary.md") as tmp:
        tmp.write_text(summary_markdown(result), encoding="utf-8")
    return result


def _md_table(header: list[str], rows: list[tuple[Any, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def summary_markdown(r: DemoResult) -> str:
    """The demo's tables as Markdown, written beside its files (and pasted in the README)."""
    t, p, c = r.train, r.prediction, r.calibration
    test_rows = read_split(r.encode.root, "test").height
    parts = [
        "# candletok demo",
        "",
        f"Symbols {', '.join(r.config.symbols)} from the bundled sample; vocab "
        f"`{r.config.scheme}` {r.encode.manifest['vocab_size']} tokens "
        f"({r.config.tokenizer_kwargs}); train < {r.config.val_from} <= val < "
        f"{r.config.test_from} <= test ({test_rows:,} test candles).",
        "",
        f"CandleGPT {t.n_params:,} parameters, {t.step} steps on {t.device}, "
        f"{t.tokens_per_s:,.0f} tokens/s.",
        "",
        "## Bits per candle (lower is better)",
        "",
        _md_table(["model", "val", "test"],
                  [(s.name, f"{s.val:.4f}", f"{s.test:.4f}") for s in t.table]),
        "",
        t.summary,
        "",
        f"## Next candle for {p.symbol} after {p.last_ts:%Y-%m-%d}",
        "",
        _md_table(["", "forecast"], p.rows()),
        "",
        _md_table(["token", "prob", "candle"],
                  [(x.token, f"{x.prob:.2%}", x.words) for x in p.top]),
        "",
        f"Calibration of the {c.probability} P(close up) against the real next close on "
        f"{c.split}, as evaluate scored it ({c.n:,} candles): Brier {c.brier:.4f} vs "
        f"{c.brier_base:.4f} for the base rate ({c.base_rate:.1%} up in {c.base_split}), "
        f"skill {c.skill:+.3f}{_interval(c.skill_interval)}.",
        "",
        f"![fan chart]({r.files[3][1].name})",
        "",
        f"Beside the fan: {r.continuation.caveat}.",
        "",
        f"Browse every match, the fan and the verdicts in the interactive report: "
        f"[{r.files[7][1].name}]({r.files[7][1].name}) (one HTML file, opens offline; "
        f"written in {r.report_seconds:.1f} s).",
        "",
    ]
    if r.evaluation is not None:
        parts += evaluation_markdown(r.evaluation, r.files[5][1].name)
    return "\n".join(parts)


def _interval(iv: tuple[float, float] | None) -> str:
    return "" if iv is None else f" [{iv[0]:+.3f}, {iv[1]:+.3f}]"


def _iv(e: Any, digits: int = 4, signed: bool = False) -> str:
    """A value with its 95% interval (:meth:`Estimate.text`), ``-`` for none."""
    return "-" if e is None else e.text(digits, signed)


def forecasters_run(rep: EvalReport) -> list[str]:
    """The forecasters an evaluation scored, in the harness's order (base rate, the
    volatility baselines, then the learned ones)."""
    rows = rep.direction[:1] + rep.range + rep.direction + rep.quantiles
    return list(dict.fromkeys(r.forecaster for r in rows))


def evaluation_markdown(rep: EvalReport, image: str) -> list[str]:
    """The evaluate tables the demo ran (direction, range, bits) as Markdown lines."""
    hs = ", ".join(str(h) for h in rep.horizons)
    names = ", ".join(forecasters_run(rep))
    refs = tuple(rep.references.get("range") or ("EWMA", "HistVol20"))  # declared roles
    parts = [
        f"## How good are the forecasts? (`candletok evaluate`, {rep.split}, h = {hs})",
        "",
        f"Forecasters run: {names}; calibration maps fit on val. Not run in the demo: "
        "h > 1 (CandleGPT's sampled paths) and the pattern-search analogues "
        "(`candletok evaluate` runs them). Intervals: 95% block bootstrap over dates.",
        "",
        "P(close up at t+h), Brier skill against the base rate:",
        "",
        _md_table(["forecaster", "h", "n", "Brier [95%]", "skill vs base [95%]", "ECE",
                   "calibration", "verdict"],
                  [(r.forecaster, r.horizon, f"{r.n:,}", _iv(r.brier),
                    "-" if r.reference else _iv(r.skill, signed=True),
                    f"{r.ece.value:.4f}", r.calibration, r.verdict) for r in rep.direction]),
        "",
        "The next candle's range ln(H/L), QLIKE (lower is better):",
        "",
        _md_table(["forecaster", "n", "QLIKE [95%]", *(f"skill vs {k} [95%]" for k in refs),
                   "verdict"],
                  [(r.forecaster, f"{r.n:,}", _iv(r.qlike, 3),
                    *(_iv(r.skill.get(k), 3, True) if k in r.skill else "-" for k in refs),
                    r.verdict) for r in rep.range]),
        "",
    ]
    if rep.bits:
        parts += ["Bits per candle on the same candles:", "",
                  _md_table(["forecaster", "n", "bits [95%]", "minus the n-gram [95%]"],
                            [(b.forecaster, f"{b.n:,}", _iv(b.bits, 3),
                              "-" if b.diff is None else _iv(b.diff, 3, True))
                             for b in rep.bits]), ""]
    parts += [f"![reliability diagram and range chart]({image})", ""]
    return parts
