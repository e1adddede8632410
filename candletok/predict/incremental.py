"""Live state of one followed series: the causal features, the scale and the model's key-value
cache, stepped one bar at a time.

:meth:`candletok.predict.predictor.Predictor.update` keeps one :class:`LiveSeries` per
symbol. A new bar costs O(1) in the features (the previous close, the scale EWMA and, with
the ``vol`` feature, the last ``vol_window`` volumes are the whole state), one token
assignment and one incremental forward step of the model, while the origin's window stays
put.

**The sliding window.** The answer ``predict`` gives is read from the replay's windows
(:class:`~candletok.evaluation.gptcast.GPTForecaster`): a series' BOS-led sequence is cut
into ``context``-token windows that start every ``context // 2`` positions, and the
origin's distribution is read from the window where it has at least half a context of
history. Positions are learned and absolute, so when the origin moves into the next window
every cached key has a new position and none can be reused: the new window's first
``context - context // 2 + 1`` tokens are then recomputed in one forward pass (its keys
rebuilt from the kept tokens), and the next ``context // 2 - 1`` bars are single steps
again. So one bar in ``context // 2`` costs a forward of about half a context; the others
one row (``benchmarks/live_speed.py`` measures both).

The arithmetic is the encoder's own: the true range and the features are the same numpy
operations :func:`~candletok.tokenize.features.candle_feature_arrays` runs, and the EWMA step
is the recursion ``e + alpha * (x - e)`` its restart uses to meet Polars' ``ewm_mean`` bit
for bit; the token comes from :meth:`~candletok.tokenize.base.Tokenizer.encode_features`.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import torch

from candletok.core.errors import BarsError
from candletok.core.ids import BOS, N_SPECIAL
from candletok.evaluation.history import History
from candletok.model.gpt import CandleGPT, KVCache
from candletok.tokenize.base import Tokenizer
from candletok.tokenize.calendar import calendar_ids
from candletok.tokenize.levels import LevelState

__all__ = ["LiveSeries", "window_start"]

PRICES = ("open", "high", "low", "close")


def window_start(q: int, context: int) -> int:
    """Start (in the BOS-led sequence) of the window the replay reads position ``q`` from:
    0 while ``q < context``, then steps of ``context // 2`` (as ``GPTForecaster._windows``)."""
    half = max(1, context // 2)
    return 0 if q < context else ((q - context) // half + 1) * half


@dataclass
class LiveSeries:
    """One series' rows (as :class:`History` holds them) and the state its next bar needs.

    Rows are Python lists, appended to in O(1); :meth:`history` lays them out as a
    one-series :class:`History` when a caller needs the whole series (sampled horizons)."""

    symbol: str
    ts: list[int]  # int64 microseconds UTC, one per candle (the anchor bar excluded)
    token: list[int]
    prev_close: list[float]
    high: list[float]
    low: list[float]
    close: list[float]
    scale: list[float]
    last_ts: int  # the last bar's time (the anchor's while there is no candle yet)
    last_bar: tuple[float, ...]  # its open, high, low, close, volume (duplicates are ignored)
    ewma: float  # the scale EWMA after the last bar (unfloored)
    vols: deque[float | None] = field(default_factory=deque)  # the last vol_window volumes
    cache: KVCache | None = None
    window: int = -1  # start of the cached window in the BOS-led sequence
    cal: list[np.ndarray] = field(default_factory=list)  # calendar ids per candle
    lv: list[np.ndarray] = field(default_factory=list)  # level inputs per candle
    levels: LevelState = field(default_factory=LevelState)  # their O(1) state

    @property
    def n(self) -> int:
        return len(self.token)

    @classmethod
    def from_bars(cls, bars: pl.DataFrame, hist: History, k: int, tok: Tokenizer,
                  model: CandleGPT) -> LiveSeries:
        """The state after one series' canonical ``bars`` (sorted by time), whose encoded
        rows are series ``k`` of ``hist`` (what ``predict`` encoded from the same bars)."""
        a, b = int(hist.starts[k]), int(hist.ends[k])
        cfg = tok.features
        h, lo, c = (bars[x].to_numpy().astype(np.float64) for x in ("high", "low", "close"))
        tr = np.empty(h.size)
        tr[0] = np.log(h[0] / lo[0])
        if h.size > 1:  # the encoder's true range, in its operation order
            pc = c[:-1]
            tr[1:] = np.log(np.fmax(h[1:], pc) / np.fmin(lo[1:], pc))
        ew = pl.Series(tr).ewm_mean(alpha=cfg.alpha, adjust=False).to_numpy()
        vol = bars["volume"].to_list() if "volume" in bars.columns else [None] * bars.height
        last = bars.row(bars.height - 1, named=True)
        s = cls(symbol=str(hist.symbols[k]), ts=hist.ts[a:b].tolist(),
                token=hist.token[a:b].tolist(), prev_close=hist.prev_close[a:b].tolist(),
                high=hist.high[a:b].tolist(), low=hist.low[a:b].tolist(),
                close=hist.close[a:b].tolist(), scale=hist.scale[a:b].tolist(),
                last_ts=int(bars["ts"].cast(pl.Int64)[-1]),
                last_bar=_bar_values(last), ewma=float(ew[-1]),
                vols=deque((_positive(v) for v in vol[-cfg.vol_window:]),
                           maxlen=cfg.vol_window))
        if model.calendar is not None and s.n:
            s.cal = list(calendar_ids(hist.ts[a:b], model.calendar))
        if model.config.levels:
            rows, s.levels = LevelState.after(hist.high[a:b], hist.low[a:b],
                                              hist.prev_close[a:b], hist.scale[a:b])
            s.lv = list(rows.astype(np.float32))
        return s

    # -- one bar --------------------------------------------------------------------------
    def push(self, ts_us: int, bar: tuple[float, ...], tok: Tokenizer,
             model: CandleGPT) -> bool:
        """Append the bar opening at ``ts_us`` (``bar``: open, high, low, close, volume).
        False for an exact duplicate of the last bar (ignored); a bar before the last, or
        a different bar at the same time, is refused in one sentence."""
        if ts_us == self.last_ts:
            if _same(bar, self.last_bar):
                return False
            raise BarsError(f"{self.symbol} already has a different bar at "
                            f"{_iso(ts_us)}; a bar is appended once, after the last one "
                            "(start again from the corrected bars to revise it).")
        if ts_us < self.last_ts:
            raise BarsError(f"The {self.symbol} bar at {_iso(ts_us)} is not after its last "
                            f"bar ({_iso(self.last_ts)}); give bars in time order.")
        o, h, lo, c, v = bar
        _check_bar(self.symbol, ts_us, o, h, lo, c, v)
        cfg = tok.features
        pc = self.last_bar[3]
        scale = max(self.ewma, cfg.min_scale)
        r = np.array([[o / pc, c / o, h / max(o, c), min(o, c) / lo]])
        x = np.log(r) / scale
        np.maximum(x[:, 2:4], 0.0, out=x[:, 2:4])
        if cfg.volume:
            x = np.concatenate([x, [[self._vol_feature(v)]]], axis=1)
        token = int(tok.encode_features(x)[0])
        tr = float(np.log(np.fmax(h, pc) / np.fmin(lo, pc)))
        self.ewma = self.ewma + cfg.alpha * (tr - self.ewma)
        self.vols.append(_positive(v))
        self.ts.append(int(ts_us))
        self.token.append(token)
        self.prev_close.append(float(pc))
        self.high.append(float(h))
        self.low.append(float(lo))
        self.close.append(float(c))
        self.scale.append(float(scale))
        if model.calendar is not None:
            self.cal.append(calendar_ids(np.array([ts_us], dtype=np.int64), model.calendar)[0])
        if model.config.levels:
            self.lv.append(self.levels.step(h, lo, pc, scale).astype(np.float32))
        self.last_ts, self.last_bar = int(ts_us), tuple(float(z) for z in bar)
        return True

    def _vol_feature(self, v: float | None) -> float:
        """``ln(V / mean of the previous vol_window positive volumes)``, 0 when unknown (the
        encoder's ``fill_null(0).fill_nan(0)``)."""
        past = [u for u in self.vols if u is not None]
        vv = _positive(v)
        if vv is None or not past:
            return 0.0
        f = math.log(vv / (sum(past) / len(past)))
        return f if math.isfinite(f) else 0.0

    # -- the model ------------------------------------------------------------------------
    @torch.no_grad()
    def dist(self, model: CandleGPT) -> np.ndarray:
        """(1, n_candle_tokens) float64 next-candle distribution after the last candle, read
        through the key-value cache (see the module doc for the slides)."""
        ctx = model.config.context
        q = self.n  # the last candle's position after the BOS
        w = window_start(q, ctx)
        if model.training:  # eval() walks every module: 1.5 ms a bar when done each time
            model.eval()
        if self.cache is None or w != self.window or self.cache.length != q - w:
            lo = w  # recompute the window up to the origin in one forward pass
            self.cache, self.window = None, w
        else:
            lo = q
        idx, cal = self._positions(lo, q + 1, model)
        lv = None
        if model.config.levels:
            rows = [np.zeros(model.config.levels, np.float32) if p == 0 else self.lv[p - 1]
                    for p in range(lo, q + 1)]
            lv = torch.from_numpy(np.stack(rows))[None].to(model.device)
        logits, self.cache = model.forward_step(idx, cal, self.cache, lv)
        lg = logits[:, -1].double()
        lg[:, :N_SPECIAL] = float("-inf")
        return torch.softmax(lg, dim=-1)[:, N_SPECIAL:].cpu().numpy()

    def _positions(self, a: int, b: int, model: CandleGPT
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Tokens (1, b - a) of positions [a, b) of the BOS-led sequence, and their calendar
        ids (BOS: unknown)."""
        toks = [BOS if p == 0 else self.token[p - 1] for p in range(a, b)]
        idx = torch.tensor([toks], dtype=torch.long, device=model.device)
        if model.calendar is None:
            return idx, None
        unk = model.calendar.unknown
        ids = np.stack([unk if p == 0 else self.cal[p - 1] for p in range(a, b)])
        return idx, torch.from_numpy(ids.astype(np.int64))[None].to(model.device)

    def history(self, tok: Tokenizer, last_only: bool = False) -> History:
        """The series as a one-series :class:`History` (the rows ``predict`` encodes from
        the same bars, all train), or only its last row (all an h = 1 answer reads)."""
        a = self.n - 1 if last_only else 0
        n = self.n - a

        def f(xs: list[float]) -> np.ndarray:
            return np.asarray(xs[a:], dtype=np.float64)

        scale = f(self.scale)
        nxt = np.empty(n)
        nxt[:-1] = scale[1:]
        nxt[-1] = max(self.ewma, tok.features.min_scale)
        return History(
            tok=tok, symbol=np.full(n, self.symbol, dtype=object),
            ts=np.asarray(self.ts[a:], dtype=np.int64), split=np.zeros(n, np.int8),
            token=np.asarray(self.token[a:], dtype=np.int64), prev_close=f(self.prev_close),
            high=f(self.high), low=f(self.low), close=f(self.close), scale=scale,
            next_scale=nxt, series=np.zeros(n, np.int64), starts=np.zeros(1, np.int64),
            ends=np.array([n], np.int64), symbols=[self.symbol])


def _positive(v: Any) -> float | None:
    """A volume the ``vol`` feature counts (positive and finite), else None."""
    if v is None:
        return None
    v = float(v)
    return v if v > 0 and math.isfinite(v) else None


def _bar_values(row: dict[str, Any]) -> tuple[float, ...]:
    v = row.get("volume")
    return (*(float(row[k]) for k in PRICES), float("nan") if v is None else float(v))


def _same(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """Equal bars (NaN volumes equal: both unknown)."""
    return all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True))


def _check_bar(sym: str, ts_us: int, o: float, h: float, lo: float, c: float,
               v: float) -> None:
    """The canonical frame's rules for one bar, in one sentence when broken."""
    ok = all(math.isfinite(x) and x > 0 for x in (o, h, lo, c))
    ok = ok and lo <= min(o, c) and h >= max(o, c)
    ok = ok and (math.isnan(v) or (math.isfinite(v) and v >= 0))
    if not ok:
        raise BarsError(f"The {sym} bar at {_iso(ts_us)} is not a valid bar (open {o}, high "
                        f"{h}, low {lo}, close {c}, volume {v}): prices must be finite and "
                        "positive with low <= open, close <= high, volume >= 0.")


def _iso(ts_us: int) -> str:
    from datetime import datetime, timedelta, timezone

    return (datetime(1970, 1, 1, tzinfo=timezone.utc)
            + timedelta(microseconds=int(ts_us))).isoformat()
