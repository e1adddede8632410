"""Sampled continuations of a symbol's real series: ``candletok generate``'s fan.

Without ``at`` the fan continues the last bar of the dataset's test split. With ``at`` it
replays a past origin, what candletok would have drawn then: the symbol's rows up to its
last bar at or before ``at`` (every split's, in time order, through the one flat series
loader ``read_rows``) are all the model reads, and the real bars after it (``realized``,
at most ``n``; fewer, or none, where the data ends) are kept beside the fan for the chart
and the JSON, never fed to the model (a test changes them and the sampled paths stay).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from candletok.core.display import format_price, price_decimals
from candletok.core.errors import ModelError
from candletok.core.ids import BOS
from candletok.core.times import parse_time
from candletok.dataset.manifest import read_rows, read_split
from candletok.dataset.torchdata import TokenDataset
from candletok.evaluation.calibrate import NOT_A_FORECAST, direction_caveat
from candletok.model.checkpoint import check_fingerprint
from candletok.model.gpt import CandleGPT
from candletok.predict.plot import plot_fan
from candletok.predict.predict import series_calendar
from candletok.tokenize.calendar import CalendarSpec
from candletok.tokenize.exchange import FutureTimes, future_times, resolve_exchange
from candletok.tokenize.features import ewma_scale_step, floor_scale
from candletok.tokenize.levels import level_inputs

__all__ = ["Continuation", "continue_series"]


@dataclass
class Continuation:
    """``samples`` sampled continuations of a symbol's real test series.

    ``context`` holds the last real candles (``ts``, ``open``/``high``/``low``/``close`` and
    ``volume`` as the dataset stores them; from a dataset without stored bars, candles
    rebuilt from their tokens, each anchored on its own previous close, which
    ``history`` then says) and ``paths`` the sampled candles, rebuilt free-running from the
    last real close with the causal scale recomputed along each path (arrays of shape
    (S, n))."""

    symbol: str
    last_ts: datetime
    last_close: float
    context: dict[str, np.ndarray]
    paths: dict[str, np.ndarray]
    tokens: np.ndarray  # (S, n) sampled candle tokens
    history: str = "real bars from the dataset"
    interval: str = "1d"
    # what evaluate measured of direction at this horizon (direction_caveat), in words
    caveat: str = f"direction skill was never measured; {NOT_A_FORECAST}"
    decimals: int = 4  # the decimals the instrument's prices carry (core.display)
    # the n bars' open times (int64 us UTC) and the rule that gave them (exchange sessions
    # or the series' weekly grid, with a note when a calendar could not be used throughout)
    future: FutureTimes | None = None
    # a replay (``at``): the time asked and the real bars after the origin, as ``context``
    # holds them (at most n; empty arrays where the data ends there); None for the latest
    at: str | None = None
    realized: dict[str, np.ndarray] | None = None

    def summary(self) -> list[tuple[str, str]]:
        """The fan in a few numbers: where the sampled paths end, relative to the last close."""
        final = self.paths["close"][:, -1]
        c = self.last_close
        q10, q50, q90 = np.quantile(final, [0.1, 0.5, 0.9])
        ret = np.log(final / c)
        d = self.decimals
        return [
            ("last close", format_price(c, d)),
            ("median close at the end", format_price(q50, d)),
            ("10%-90% close at the end", f"{format_price(q10, d)} - {format_price(q90, d)}"),
            ("P(end above last close)", f"{float((final > c).mean()):.1%}"),
            ("median log return", f"{100 * float(np.median(ret)):+.2f}%"),
            ("std of log return", f"{100 * float(ret.std()):.2f}%"),
            ("direction skill", self.caveat),
        ]

    def realized_text(self) -> str:
        """A replay's outcome in one sentence: how many of the n bars after the origin the
        data holds, and where the last of them closed against the sampled closes then."""
        n = self.tokens.shape[1]
        real = np.asarray([] if self.realized is None else self.realized["close"])
        k = int(real.size)
        if k == 0:
            return f"what followed: the data holds none of the {n} bars after the origin"
        below = float((self.paths["close"][:, k - 1] < real[-1]).mean())
        move = 100 * float(np.log(real[-1] / self.last_close))
        return (f"what followed: {k} of {n} real bars; the real close after {k} bar"
                f"{'s' * (k > 1)} was {format_price(float(real[-1]), self.decimals)} "
                f"({move:+.2f}% from the last close), above {below:.0%} of the sampled closes "
                "at that bar")

    def to_dict(self) -> dict[str, Any]:
        """The fan as one JSON-ready document: per future bar its open time (ISO 8601 with
        offset), the 10%, 50% (median: the fan's middle line) and 90% quantiles of the
        sampled closes, and the closes of the fan's labelled sample paths (the draws
        ending nearest the 10/50/90% quantiles); plus the symbol, the interval, the last
        real bar's time and close, and where the future times came from. A replay
        (``at``) also holds, per bar, the real bar's time and close (``realized_ts``,
        ``realized_close``: None past the end of the data) and ``at`` and
        ``realized_bars`` (how many real bars followed)."""
        from candletok.viz.fan import pick_sample_paths

        closes = self.paths["close"]
        q = np.quantile(closes, [0.1, 0.5, 0.9], axis=0)
        times = [] if self.future is None else [_iso(t) for t in self.future.ts]
        picks = pick_sample_paths(closes[:, -1], (0.1, 0.5, 0.9))
        bars = [{"ts": times[i] if times else None, "close_q10": float(q[0, i]),
                 "close_q50": float(q[1, i]), "close_q90": float(q[2, i])}
                for i in range(closes.shape[1])]
        replay: dict[str, Any] = {}
        if self.realized is not None:
            real = self.realized
            k = int(real["close"].size)
            for i, bar in enumerate(bars):  # the realized close beside the quantiles
                bar["realized_ts"] = (_iso(_us(real["ts"][i])) if i < k else None)
                bar["realized_close"] = float(real["close"][i]) if i < k else None
            replay = {"at": self.at, "realized_bars": k}
        return {
            "symbol": self.symbol,
            "interval": self.interval,
            "last_ts": self.last_ts.isoformat(),
            "last_close": self.last_close,
            "samples": int(closes.shape[0]),
            "times_from": None if self.future is None else self.future.source,
            "times_note": None if self.future is None else self.future.note,
            "direction_skill": self.caveat,
            **replay,
            "bars": bars,
            "sample_paths": [{"ends_near_quantile": qq, "close": closes[k].tolist()}
                             for qq, k in zip((0.1, 0.5, 0.9), picks, strict=False)],
        }

    def plot(self, out: str | Path, last: int = 60) -> Path:
        """Write the fan chart: the last ``last`` real bars (with volume), then the band,
        the median and a few labelled sampled paths, with :attr:`caveat` under it."""
        k = min(last, self.context["close"].size)
        ctx = {key: v[-k:] for key, v in self.context.items()}
        S, n = self.tokens.shape
        unit = {"1d": "daily", "1wk": "weekly", "1mo": "monthly"}.get(self.interval,
                                                                      self.interval)
        title = f"{self.symbol}: last {k} {unit} bars, then {S} sampled continuations of {n} bars"
        if self.realized is not None:
            title = (f"{self.symbol} replayed at {self.at}: last {k} {unit} bars, {S} sampled "
                     f"continuations of {n} bars, and the real bars after")
        return plot_fan(ctx, self.paths, out, symbol=self.symbol, interval=self.interval,
                        history_label=f"{self.history} ({unit}, last {k})",
                        title=title, caveat=self.caveat, realized=self.realized,
                        future_ts=None if self.future is None else
                        self.future.ts.astype("datetime64[us]"),
                        future_source="" if self.future is None else self.future.source)


@torch.no_grad()
def continue_series(
    model: CandleGPT, dataset: str | Path, symbol: str, n: int = 20, samples: int = 100,
    temperature: float = 1.0, seed: int = 0, split: str = "test",
    calibration: dict[str, Any] | None = None, exchange: str | None = "auto",
    at: str | date | datetime | None = None,
) -> Continuation:
    """Sample ``samples`` continuations of ``n`` candles after ``symbol``'s ``split`` series.

    ``calibration`` is the model's calibration file (``load_calibration``), whose record of
    direction skill at ``n`` bars the fan carries as its caveat; None says that skill was
    never measured. ``exchange`` places the ``n`` bars on an exchange's sessions
    (:func:`~candletok.tokenize.exchange.future_times`): ``"auto"`` the symbol's own
    (:func:`~candletok.tokenize.exchange.exchange_for_symbol`), a MIC such as ``"XNYS"``,
    or None / ``"none"`` for the series' weekly grid.

    ``at`` (a date or ISO time) replays that origin instead of the ``split``'s last bar:
    the model reads the symbol's rows of every split up to its last bar at or before
    ``at`` and nothing after; the real bars after it land in ``realized``."""
    if n < 1 or samples < 1:
        raise ModelError("Generate at least one candle (n >= 1) and one sample (samples >= 1).")
    ds = TokenDataset(dataset, split, context=8)
    check_fingerprint(model.fingerprint, ds)
    tok = ds.tokenizer()
    if symbol not in ds.symbols:  # symbols are stored upper-cased, as every source gives them
        symbol = symbol.strip().upper()
    realized = None
    if at is None:
        rows = read_split(dataset, split).filter(pl.col("symbol") == symbol)
    else:
        rows, after = _rows_at(dataset, symbol, at)
        realized = _real_context(tok, after.head(n))[0]
    if rows.height == 0:
        where = f"{split} candles" if at is None else f"candle at or before {at}"
        raise ModelError(f"{symbol} has no {where} in {dataset}; pick one of "
                         f"{', '.join(ds.symbols[:10])}" + ("." if at is None else
                                                            " or a later --at."))
    context, history = _real_context(tok, rows)
    toks = rows["token"].to_numpy().astype(np.int64)
    # Continue from the last real close with the next candle's causal scale.
    h, lo = float(context["high"][-1]), float(context["low"][-1])
    c = float(rows["close"][-1])
    pc, s_last = float(rows["prev_close"][-1]), float(rows["scale"][-1])
    next_scale = float(floor_scale(ewma_scale_step(s_last, h, lo, pc, tok.features),
                                   tok.features))
    seq = np.concatenate([[BOS], toks])[-model.config.context:]
    idx = torch.from_numpy(seq)[None].repeat(samples, 1).to(model.device)
    lv = None
    if model.config.levels:  # the rows' own inputs; the sampled bars hold the last one
        rows_lv = level_inputs(*(rows[c].to_numpy() for c in ("high", "low", "prev_close",
                                                              "scale")), np.array([toks.size]))
        lv = np.concatenate([np.zeros((1, rows_lv.shape[1])), rows_lv])[-seq.size:]
        lv = torch.from_numpy(lv.astype(np.float32))[None].repeat(samples, 1, 1)
        lv = lv.to(model.device)
    grid_spec = CalendarSpec("UTC") if (ds.interval or "1d") in ("1d", "1wk", "1mo") else None
    fut = future_times(rows["ts"], n, model.calendar or grid_spec,
                       resolve_exchange(symbol, exchange or "none"))
    cal = series_calendar(model, rows["ts"], seq.size, n, fut.ts)
    g = torch.Generator(device=model.device).manual_seed(seed)
    new = model.generate(idx, n, temperature=temperature, generator=g,
                         cal=None if cal is None else cal.repeat(samples, 1, 1),
                         lv=lv)[:, seq.size:]
    new_np = new.cpu().numpy()
    paths = tok.rebuild_paths(new_np, c, next_scale)
    return Continuation(symbol, rows["ts"][-1], c, context, paths, new_np, history,
                        ds.interval or "1d", direction_caveat(calibration, n),
                        price_decimals(np.concatenate([context[k] for k in
                                                       ("open", "high", "low", "close")])),
                        fut, None if at is None else str(at), realized)


def _rows_at(dataset: str | Path, symbol: str, at: str | date | datetime
             ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The symbol's rows of every split up to its last bar at or before ``at``, and the
    rows after it (time order)."""
    cut = parse_time(at, "at")
    rows = read_rows(dataset)[0].filter(pl.col("symbol") == symbol).sort("ts")
    before = pl.col("ts") <= pl.lit(cut).cast(rows.schema["ts"])
    return rows.filter(before), rows.filter(~before)


def _us(t: Any) -> int:
    """A datetime64 (naive UTC) as int64 microseconds."""
    return int(np.datetime64(t, "us").astype(np.int64))


def _iso(us: int) -> str:
    """int64 microseconds UTC as ISO 8601 with its offset (``2013-04-01T00:00:00+00:00``)."""
    return datetime.fromtimestamp(int(us) / 1e6, tz=timezone.utc).isoformat()


def _real_context(tok: Any, rows: pl.DataFrame) -> tuple[dict[str, np.ndarray], str]:
    """The split's real bars as the dataset stores them (format 2 rows carry each candle's
    own bar), or, from rows without them, the candles rebuilt from their tokens."""
    if all(k in rows.columns for k in ("open", "high", "low", "close")):
        bars, history = rows, "real bars from the dataset"
    else:
        bars, history = tok.decode(rows), "bars rebuilt from their tokens"
    context = {k: bars[k].cast(pl.Float64).fill_null(float("nan")).to_numpy()
               for k in ("open", "high", "low", "close", "volume") if k in bars.columns}
    context["ts"] = bars["ts"].dt.replace_time_zone(None).to_numpy()
    return context, history
