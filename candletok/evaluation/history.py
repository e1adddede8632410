"""A dataset's whole history as flat arrays, and the forward targets of a point-in-time replay.

Evaluation replays time: at the close of candle t a forecaster may use every candle up to
and including t, in every split (the test year's first forecast may look back at the val
year), and nothing after it. ``History`` lays every series out once, all splits in time
order, so that "up to t" is a slice and "t + h" is an index.

Every row is one candle as the dataset stores it (``token, prev_close, scale`` and the
candle's own bar). ``next_scale`` is the volatility unit the *next* candle will be measured
in: the causal EWMA of the log true range through candle t, known when t closes (the next
row's stored ``scale``; for a series' last row the same recursion, one step on).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from candletok.core.errors import DatasetError
from candletok.core.ids import BOS, SPLITS, normalize_split
from candletok.core.times import parse_time
from candletok.dataset.manifest import open_dataset, read_rows
from candletok.dataset.splits import Cuts
from candletok.model.updown import closed_up, smoothed_up_rates
from candletok.tokenize.base import Tokenizer
from candletok.tokenize.features import ewma_scale_step, floor_scale

SPLIT_CODE: dict[str, int] = {s: i for i, s in enumerate(SPLITS)}


@dataclass
class History:
    """Every candle of every series, series after series, each in time order.

    Row arrays share one index. ``starts``/``ends`` bound each series' rows; ``split``
    holds 0/1/2 for train/val/test. ``ts`` (int64 microseconds, UTC) is the date key the
    bootstrap resamples: forecasts made at one time share one market."""

    tok: Tokenizer
    symbol: np.ndarray
    ts: np.ndarray
    split: np.ndarray
    token: np.ndarray
    prev_close: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    scale: np.ndarray
    next_scale: np.ndarray
    series: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    symbols: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(self.token.size)

    @property
    def log_range(self) -> np.ndarray:
        """ln(high / low) of every candle."""
        return np.log(self.high / self.low)

    @property
    def log_return(self) -> np.ndarray:
        """ln(close / previous close) of every candle."""
        return np.log(self.close / self.prev_close)

    def pos(self) -> np.ndarray:
        """Position of every row inside its series (0 = the series' first candle)."""
        return np.arange(self.n) - self.starts[self.series]

    def split_rows(self, split: str) -> np.ndarray:
        """Rows of one split, in History order."""
        return np.flatnonzero(self.split == SPLIT_CODE[normalize_split(split)])

    def origins(self, split: str, horizon: int) -> tuple[np.ndarray, int]:
        """Forecast origins of ``split`` whose ``horizon``-step forward window stays inside
        the same series *and* the same split (a val target never reaches into test), and
        the number of origins dropped because it would not."""
        rows = self.split_rows(split)
        j = rows + horizon
        ok = j < self.ends[self.series[rows]]
        ok[ok] &= self.split[j[ok]] == self.split[rows[ok]]
        return rows[ok], int((~ok).sum())

    def contexts(self, rows: np.ndarray, length: int) -> np.ndarray:
        """(n, length) int64 tokens up to and including each row (most recent last), BOS
        before the series' first candle, as the model and the n-grams saw them."""
        rows = np.asarray(rows, dtype=np.int64)
        back = np.arange(length - 1, -1, -1)[None, :]
        src = rows[:, None] - back
        inside = src >= self.starts[self.series[rows]][:, None]
        return np.where(inside, self.token[np.maximum(src, 0)], BOS).astype(np.int64)

    def series_tokens(self, split: str) -> list[np.ndarray]:
        """Candle tokens of each series restricted to ``split`` (what the baselines fit on)."""
        code = SPLIT_CODE[normalize_split(split)]
        out = []
        for a, b in zip(self.starts.tolist(), self.ends.tolist(), strict=True):
            m = self.split[a:b] == code
            if m.any():
                out.append(self.token[a:b][m].astype(np.int64))
        return out

    def forward(self, rows: np.ndarray, horizon: int) -> dict[str, np.ndarray]:
        """Targets of origins ``rows`` (already checked by :meth:`origins`): ``up`` (close
        at t + h above close at t), ``ret`` (the forward log return), and for h = 1 the
        next candle's ``range`` ln(H/L)."""
        j = rows + horizon
        ret = np.log(self.close[j] / self.close[rows])
        out = {"up": (ret > 0).astype(np.float64), "ret": ret}
        if horizon == 1:
            out["range"] = np.log(self.high[j] / self.low[j])
        return out


def history_from_rows(rows: pl.DataFrame, tok: Tokenizer,
                      split_of: np.ndarray | None = None,
                      last_next_scale: Mapping[str, float] | None = None) -> History:
    """A :class:`History` from dataset rows (``symbol, ts, token, prev_close, scale`` and the
    bar), sorted here by (symbol, ts). ``split_of`` gives each row's split code in the
    given row order (all train when None). ``last_next_scale`` gives, per symbol, the
    scale the encoder gave the bar after the series' last row (a function of the bars up
    to that row only), for rows cut at a time T: then the answer at T reads the very bits
    a replay over the whole series read, not the recursion's (which can differ by an
    ulp from the encoder's EWMA)."""
    need = ("symbol", "ts", "token", "prev_close", "scale", "high", "low", "close")
    missing = [c for c in need if c not in rows.columns]
    if missing:
        raise DatasetError(f"The rows lack {', '.join(missing)}; re-run `candletok encode` "
                           "(dataset format 2 stores each candle's bar).")
    codes = np.zeros(rows.height, np.int8) if split_of is None else np.asarray(split_of)
    df = rows.with_columns(pl.Series("_split", codes, dtype=pl.Int8)).sort(
        "symbol", "ts", maintain_order=True)
    sym = df["symbol"].to_numpy()
    n = df.height
    new = np.ones(n, bool)
    if n:
        new[1:] = sym[1:] != sym[:-1]
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], n).astype(np.int64)
    series = np.cumsum(new) - 1
    f = {c: df[c].to_numpy().astype(np.float64) for c in
         ("prev_close", "high", "low", "close", "scale")}
    nxt = np.empty(n)
    nxt[:-1] = f["scale"][1:]
    last = ends - 1
    if n:  # a series' last row: the EWMA recursion one step on, floored as every scale
        pc, h, lo = f["prev_close"][last], f["high"][last], f["low"][last]
        nxt[last] = floor_scale(ewma_scale_step(f["scale"][last], h, lo, pc, tok.features),
                                tok.features)
        for k, s_ in enumerate(sym[starts].tolist() if last_next_scale else []):
            if s_ in last_next_scale:  # one entry per series, not per candle
                nxt[last[k]] = float(last_next_scale[s_])
    return History(
        tok=tok, symbol=sym, ts=df["ts"].cast(pl.Int64).to_numpy(),
        split=df["_split"].to_numpy().astype(np.int8),
        token=df["token"].to_numpy().astype(np.int64), prev_close=f["prev_close"],
        high=f["high"], low=f["low"], close=f["close"], scale=f["scale"], next_scale=nxt,
        series=series.astype(np.int64), starts=starts.astype(np.int64), ends=ends,
        symbols=[str(s) for s in sym[starts]],
    )


def load_history(root: str | Path) -> History:
    """Every split of a dataset folder as one :class:`History` (format 2 rows)."""
    _, tok = open_dataset(root)
    rows, codes = read_rows(root)  # codes: SPLITS' indices, as SPLIT_CODE numbers them
    if rows.height == 0:
        raise DatasetError(f"{root} holds no candles to evaluate on.")
    return history_from_rows(rows, tok, codes)


def history_from_bars(bars: pl.DataFrame, tok: Tokenizer, val_from: Any,
                      test_from: Any) -> History:
    """Encode canonical ``bars`` with a fitted ``tok`` and cut them by time, as a dataset
    build would (for tests and for callers who hold bars rather than a folder)."""
    enc = tok.encode(bars)
    rows = enc.join(bars.select("symbol", "ts", "high", "low", "close"), on=["symbol", "ts"],
                    how="left")
    code = Cuts(parse_time(val_from), parse_time(test_from)).split_of(rows["ts"])
    return history_from_rows(rows, tok, code)


def token_up_rates(hist: History, prior_weight: float = 2.0) -> np.ndarray:
    """(vocab_size,) P(close above the previous close | token) on the train rows, each
    smoothed toward the sign of its representative candle (the rule the checkpoint's
    ``token_up_rate`` follows, see :mod:`candletok.model.updown`)."""
    tr = hist.split == 0
    return smoothed_up_rates(hist.token[tr], closed_up(hist.close[tr], hist.prev_close[tr]),
                             hist.tok, prior_weight)


def split_dates(hist: History) -> dict[str, str]:
    """First date of each split present (for the report)."""
    out = {}
    for s, code in SPLIT_CODE.items():
        m = hist.split == code
        if m.any():
            us = int(hist.ts[m].min())
            out[s] = str(np.datetime64(us, "us").astype("datetime64[D]"))
    return out

