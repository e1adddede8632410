"""The whole pipeline on the bundled sample, offline, in about two minutes.

``candletok demo`` is the first thing a new user runs, so it shows every stage once with
settings small enough for a laptop CPU: fit a vocabulary on the early years of the real
sample, write the time-split dataset, train a small CandleGPT, score it against the
baselines, forecast AAPL's next candle, check that forecast's calibration on the test
years, and draw a fan of sampled continuations. Every file goes under one folder, and a
``summary.md`` there records the tables exactly as printed.

The demo vocabulary differs from the library default on purpose: a daily sample of four
stocks holds ~12,000 training candles, too few for the default 1,053 price-only tokens to
carry anything a model can learn beyond their frequencies (measured: the model and every
n-gram stay within 0.02 bits of the unigram). Relative volume is the part of a candle that
is predictable from its past (busy days cluster), so the demo adds four relative-volume
bins and uses coarser price bins to keep the vocabulary near the same size (5*5*3*3*4 =
900 candle tokens). Chosen on the val split among three such settings (see the README).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from candletok.core.atomic import atomic_path
from candletok.core.errors import CandletokError
from candletok.data.sample import load_sample
from candletok.dataset.build import EncodeResult, build_dataset
from candletok.dataset.manifest import open_dataset, read_split
from candletok.forecast.predict import (
    Calibration,
    Continuation,
    Prediction,
    calibration,
    continue_series,
    predict_next,
)
from candletok.model.train import Progress, TrainConfig, TrainResult, resolve_device, train

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
    val_from: str = "2011-01-01"  # fit on 2000-2010, as the README's quality table
    test_from: str = "2012-01-01"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=300, eval_every=25))
    predict_symbol: str = "AAPL"
    horizon: int = 20
    samples: int = 100
    device: str = "auto"
    seed: int = 0


@dataclass
class DemoResult:
    config: DemoConfig
    encode: EncodeResult
    train: TrainResult
    prediction: Prediction
    calibration: Calibration
    continuation: Continuation
    files: list[tuple[str, Path]]


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
    for stale in (model_path, chart, out / "summary.md"):
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
    pred = predict_next(model, tok, bars)
    cal = calibration(model, data, "test")
    cont = continue_series(model, data, cfg.predict_symbol, n=cfg.horizon,
                           samples=cfg.samples, seed=cfg.seed)
    cont.plot(chart)
    files = [
        ("dataset (Parquet shards + manifest)", data),
        ("vocabulary", data / "vocab.json"),
        ("model checkpoint", model_path),
        ("fan chart", chart),
        ("summary", out / "summary.md"),
    ]
    result = DemoResult(cfg, enc, res, pred, cal, cont, files)
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
        f"Calibration of P(close up) against the real next close on {c.split} "
        f"({c.n:,} candles): Brier {c.brier:.4f} vs "
        f"{c.brier_base:.4f} for the base rate ({c.base_rate:.1%} up), skill {c.skill:+.3f}.",
        "",
        f"![fan chart]({r.files[3][1].name})",
        "",
    ]
    return "\n".join(parts)
