"""``predict --at``: what candletok would have answered at a past origin, beside what
really happened.

The forecast is the :class:`~candletok.predict.predictor.Predictor`'s answer at each
horizon 1..H after the symbol's last bar at or before ``at`` (the numbers ``evaluate
--forecasts`` scored at that origin: h = 1 from the next-token distribution, h > 1 from
the harness's sampled paths), read as closes: the last close times exp(each quantile of
the forward log return). What followed comes from the same series
(:meth:`~candletok.predict.predictor.Predictor.series_bars`) and is only drawn and
listed beside the quantiles, never read by the answer, which drops every bar after the
origin before anything is encoded. Where the data ends before H bars, the realized path
is shorter (and None in the JSON).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from candletok.core.display import time_text
from candletok.core.errors import ModelError
from candletok.evaluation.calibrate import direction_caveat
from candletok.evaluation.forecastfile import QUANTILE_COLUMNS
from candletok.predict.plot import plot_quantile_fan
from candletok.predict.predictor import Answer, Predictor
from candletok.viz.candles import next_bar_times

__all__ = ["Replay", "replay"]

#: how many real bars before the origin the chart shows
CONTEXT_BARS = 60


@dataclass
class Replay:
    """One symbol's answer at a past origin over horizons 1..H, with the real bars.

    ``closes`` maps a quantile column (``q05`` ... ``q95``) to the forecast close at each
    horizon (None where the forecaster gave none); ``context`` holds the real bars up to
    the origin and ``realized`` the real bars after it (at most H), as 1-d arrays
    (``ts`` datetime64 UTC, prices, volume)."""

    symbol: str
    at: str
    origin: datetime
    last_close: float
    forecaster: str
    horizons: list[int]
    closes: dict[str, list[float | None]]
    context: dict[str, np.ndarray] = field(repr=False)
    realized: dict[str, np.ndarray] = field(repr=False)
    interval: str = "1d"
    caveat: str = ""
    answers: list[Answer] = field(default_factory=list, repr=False)  # per horizon

    @property
    def realized_close(self) -> list[float | None]:
        """The real close h bars after the origin, per horizon (None past the data)."""
        real = self.realized["close"]
        return [float(real[h - 1]) if h <= real.size else None for h in self.horizons]

    def outcome_text(self) -> str:
        """Where the last real close the data holds (at most H bars on) fell against the
        forecast 10-90% band at that horizon, in one sentence."""
        got = [c for c in self.realized_close if c is not None]
        n = len(self.horizons)
        if not got:
            return f"the data holds none of the {n} bars after the origin"
        lo, hi = self.closes["q10"][len(got) - 1], self.closes["q90"][len(got) - 1]
        head = f"after {len(got)} of {n} bars the real close was {got[-1]:g}"
        if lo is None or hi is None:
            return head
        inside = "inside" if lo <= got[-1] <= hi else "outside"
        return f"{head}, {inside} the forecast 10-90% ({lo:g} - {hi:g})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: per horizon the forecast close quantiles with the realized close
        (and its bar's time) beside them."""
        ts = self.realized["ts"]
        bars = []
        for i, h in enumerate(self.horizons):
            row: dict[str, Any] = {"h": h, "realized_ts": _iso(ts[h - 1]) if h <= ts.size
                                   else None}
            row.update({f"close_{k}": v[i] for k, v in self.closes.items()})
            row["realized_close"] = self.realized_close[i]
            bars.append(row)
        return {"symbol": self.symbol, "at": self.at, "origin": self.origin.isoformat(),
                "last_close": self.last_close, "forecaster": self.forecaster,
                "realized_bars": int(ts.size), "direction_skill": self.caveat, "bars": bars}

    def plot(self, out: str | Path) -> Path:
        """The fan of forecast close quantiles after the real bars up to the origin, the
        real bars that followed over it."""
        n = len(self.horizons)
        q = {int(k[1:]) / 100: np.array([np.nan if v is None else v for v in vals])
             for k, vals in self.closes.items()}
        q = {lv: v for lv, v in q.items() if np.isfinite(v).all()}
        if not q:
            raise ModelError(f"{self.symbol}: the forecaster gave no quantiles at "
                             f"{self.at}; there is no fan to draw.")
        real_ts = self.realized["ts"].astype("datetime64[us]")
        last = real_ts[-1] if real_ts.size else self.context["ts"][-1]
        times = np.concatenate([real_ts, next_bar_times(last, n - real_ts.size,
                                                        self.interval)])[:n]
        source = ("the real bars' times" if real_ts.size >= n else
                  f"the real bars' times, then the interval stepped from {_day(last)}"
                  + (" (weekends skipped, not holidays)" if self.interval == "1d" else ""))
        k = min(CONTEXT_BARS, self.context["close"].size)
        return plot_quantile_fan(
            {c: v[-k:] for c, v in self.context.items()}, q, out, symbol=self.symbol,
            forecaster=self.forecaster, interval=self.interval, caveat=self.caveat,
            history_label=f"real bars up to the origin (last {k})", future_ts=times,
            future_source=source, realized=self.realized,
            title=f"{self.symbol} at {self.at}: what {self.forecaster} would have answered "
                  f"after {time_text(self.origin, self.interval)} for the next {n} bars, and "
                  "what followed")


def replay(pred: Predictor, symbols: str | Sequence[str], at: Any, horizon: int = 10,
           source: str | None = None) -> list[Replay]:
    """Each symbol's answer at horizons 1..``horizon`` after its last bar at or before
    ``at``, with the real bars before and after that origin."""
    if horizon < 1:
        raise ModelError(f"The replay needs at least one bar ahead, not {horizon}.")
    hs = list(range(1, horizon + 1))
    answers = pred.predict(symbols, at=at, horizons=hs, source=source)
    by_symbol: dict[str, list[Answer]] = {}
    for a in answers:
        by_symbol.setdefault(a.symbol, []).append(a)
    interval = pred.facts.interval or "1d"
    out = []
    for sym, rows in by_symbol.items():
        rows.sort(key=lambda a: a.horizon)
        origin = rows[0].origin
        bars = pred.series_bars(sym, source)
        cut = pl.lit(origin).cast(bars.schema["ts"])
        closes = {k: [None if a.quantiles.get(k) is None
                      else float(a.last_close * np.exp(a.quantiles[k])) for a in rows]
                  for k in sorted(QUANTILE_COLUMNS, key=lambda c: int(c[1:]))}
        out.append(Replay(
            sym, str(at), origin, rows[0].last_close, rows[0].forecaster, hs, closes,
            _arrays(bars.filter(pl.col("ts") <= cut)),
            _arrays(bars.filter(pl.col("ts") > cut).head(horizon)), interval,
            direction_caveat(pred.calibration, horizon), rows))
    return out


def _arrays(df: pl.DataFrame) -> dict[str, np.ndarray]:
    d = {c: df[c].cast(pl.Float64).fill_null(float("nan")).to_numpy()
         for c in ("open", "high", "low", "close", "volume") if c in df.columns}
    d["ts"] = df["ts"].dt.replace_time_zone(None).cast(pl.Datetime("us")).to_numpy()
    return d


def _day(t: np.datetime64) -> str:
    return time_text(datetime.fromisoformat(_iso(t)), None)


def _iso(t: np.datetime64) -> str:
    us = int(np.datetime64(t, "us").astype(np.int64))
    return datetime.fromtimestamp(us / 1e6, tz=timezone.utc).isoformat()
