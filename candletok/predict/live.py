"""Follow symbols as their bars close: ``candletok watch``'s loop, without any printing.

A :class:`Watcher` loads each symbol's history through a :class:`Feed` (Yahoo by default:
the cache, its missing tail fetched through the same injectable ``fetch`` as ``download``),
answers on it (:meth:`~candletok.predict.predictor.Predictor.start`), then sleeps until the
next bar should have closed and polls for it. The time the next bar opens comes from the
symbol's exchange calendar (:func:`~candletok.tokenize.exchange.future_times`; the series'
weekly grid for 24-hour markets), and it counts as closed one bar length later (daily bars,
stamped at 00:00 UTC of their date, at the end of that date) plus ``grace`` seconds for the
feed to publish it. Each poll asks the feed for everything after the last bar seen, so:

* a bar that is **late** (not there yet) is asked for again every ``poll`` seconds;
* a **missed** bar (a gap: the process slept, the feed lagged or failed) comes with the
  next poll, and every bar after the last one is appended in time order (**out of order**
  rows are sorted first); a bar published only after a later one was counted cannot be
  inserted behind it (the answers are causal): it is said once and read on a restart;
* a bar is **never counted twice**: a row at or before the last bar seen is dropped, and
  the predictor ignores an exact duplicate;
* a bar still forming (its close after ``now``) is never used;
* a **network error** backs off (``poll``, doubling up to ``max_backoff``) and retries;
* final bars are appended to the feed's cache, so a **restart resumes** from it.

Time comes from an injectable :class:`Clock` (``now()`` and ``sleep()``), so tests drive the
loop with a fake clock and a fake feed; the system clock's sleep returns at once when the
stop event is set (Ctrl-C or SIGTERM, :func:`candletok.model.runtime.stop_on_sigint`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from candletok.core.display import is_intraday
from candletok.core.errors import SourceError
from candletok.core.times import INTERVALS, normalize_interval
from candletok.predict.predictor import Answer, Predictor
from candletok.predict.watchextras import AnalogueAsk, OddsAsk, analogue_summary
from candletok.tokenize.calendar import CalendarSpec
from candletok.tokenize.exchange import future_times, resolve_exchange

log = logging.getLogger(__name__)

__all__ = ["Clock", "Feed", "SourceFeed", "SystemClock", "WatchEvent", "WatchResult",
           "Watcher", "YahooFeed"]

_US = timedelta(microseconds=1)
#: Without an exchange calendar the next bar's time comes from the series' weekly grid,
#: which needs some weeks of bars to know every slot; a shorter history polls one bar
#: length after the last bar (a 24-hour market's next bar).
_GRID_MIN_US = 14 * 86_400_000_000


class Clock(Protocol):
    """Where the loop reads the time and waits (a fake one in tests)."""

    def now(self) -> datetime: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The wall clock; ``sleep`` returns early once ``stop`` is set."""

    def __init__(self, stop: threading.Event | None = None) -> None:
        self.stop = stop

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def sleep(self, seconds: float) -> None:
        if self.stop is not None:
            self.stop.wait(max(0.0, seconds))
        else:
            time.sleep(max(0.0, seconds))


class Feed(Protocol):
    """Where bars come from: the history at start, then every bar after a time."""

    def history(self, symbols: list[str], now: datetime) -> pl.DataFrame: ...

    def since(self, symbols: list[str], start: datetime, now: datetime) -> pl.DataFrame: ...

    def keep(self, bars: pl.DataFrame, start: datetime) -> None: ...


@dataclass
class YahooFeed:
    """Yahoo bars through ``download``'s injectable ``fetch`` (None: yfinance) and cache:
    the history from the cache with its missing tail fetched, each poll fresh from Yahoo
    (a late bar is seen even where the cache counts its time as covered), final bars
    added to the cache."""

    interval: str
    fetch: Callable[..., Any] | None = None
    cache_dir: str | Path | None = None
    start: datetime | None = None

    def history(self, symbols: list[str], now: datetime) -> pl.DataFrame:
        from candletok.data.yahoo import load_yahoo

        return load_yahoo(symbols, interval=self.interval, start=self.start,
                          cache_dir=self.cache_dir, fetch=self.fetch, now=now, retries=0)

    def since(self, symbols: list[str], start: datetime, now: datetime) -> pl.DataFrame:
        from candletok.data.yahoo import fetch_fresh

        return fetch_fresh(symbols, interval=self.interval, start=start,
                           end=now + timedelta(seconds=1), fetch=self.fetch)

    def keep(self, bars: pl.DataFrame, start: datetime) -> None:
        """Add final ``bars`` (polled from ``start``) to the cache, complete up to the
        last of them."""
        from candletok.data.yahoo import extend_cache

        for (sym,), g in bars.group_by("symbol", maintain_order=True):
            extend_cache(self.cache_dir, str(sym), self.interval, g, start,
                         g["ts"].max() + _US)  # type: ignore[operator]


@dataclass
class SourceFeed:
    """Any other source (a file or folder another process appends to, the sample):
    re-read at every poll through ``load_bars``; nothing is cached."""

    source: str
    interval: str

    def history(self, symbols: list[str], now: datetime) -> pl.DataFrame:
        from candletok.data.sources import load_bars

        return load_bars(symbols, source=self.source, interval=self.interval)

    def since(self, symbols: list[str], start: datetime, now: datetime) -> pl.DataFrame:
        return self.history(symbols, now).filter(pl.col("ts") >= start)

    def keep(self, bars: pl.DataFrame, start: datetime) -> None:
        return None


@dataclass
class WatchEvent:
    """One printed update: ``kind`` ``"start"`` (the answer on the history) or ``"bar"``
    (a new bar), the symbol, the bar's time and close and the answers (one per horizon);
    where asked, the stop and target odds (``predict --odds``'s rows) and the nearest
    analogues (:func:`~candletok.predict.watchextras.analogue_summary` of ``similar``'s
    calibrated answer), both on the bars up to this one."""

    kind: str
    symbol: str
    ts: datetime
    close: float
    answers: list[Answer]
    odds: list[Any] | None = None
    analogues: dict[str, Any] | None = None


@dataclass
class WatchResult:
    """What a run did: new bars answered, polls, failed polls, and why it stopped
    (``max_bars``, ``stopped``, ``max_polls``)."""

    bars: int = 0
    polls: int = 0
    errors: int = 0
    reason: str = ""
    events: list[WatchEvent] = field(default_factory=list)


class Watcher:
    """The loop of the module doc over ``predictor`` (see there for the rules)."""

    def __init__(self, predictor: Predictor, symbols: Sequence[str], interval: str,
                 feed: Feed, clock: Clock, horizons: Sequence[int] = (1,),
                 exchange: str | None = "auto", grace: float = 30.0, poll: float = 60.0,
                 max_backoff: float = 600.0, stop: threading.Event | None = None,
                 odds: OddsAsk | None = None, analogues: AnalogueAsk | None = None) -> None:
        self.predictor = predictor
        self.symbols = [s.upper() for s in symbols]
        self.interval = normalize_interval(interval)
        self.step = INTERVALS[self.interval]
        self.feed, self.clock = feed, clock
        self.horizons = list(horizons)
        self.exchange = {s: resolve_exchange(s, exchange) for s in self.symbols}
        self.grace = timedelta(seconds=float(grace))
        self.poll = float(poll)
        self.max_backoff = float(max_backoff)
        self.stop = stop or threading.Event()
        self.spec = predictor.model.calendar or CalendarSpec(
            "America/New_York" if is_intraday(self.interval) else "UTC")
        self.times: dict[str, list[int]] = {}  # per symbol: its bars' open times (us)
        self._due: dict[str, datetime] = {}
        self._seen: dict[str, set[int]] = {}  # per symbol: every bar time seen or said
        self.odds, self.analogues = odds, analogues
        self.bars: dict[str, pl.DataFrame] = {}  # per symbol: its bars so far (for extras)

    # -- what is added to an answer -----------------------------------------------------
    def _event(self, kind: str, sym: str, ts: datetime, close: float,
               answers: list[Answer]) -> WatchEvent:
        """The event of ``sym``'s latest bar, with the odds and analogues asked for."""
        ev = WatchEvent(kind, sym, ts, close, answers)
        bars = self.bars.get(sym)
        if bars is None:
            return ev
        if self.odds is not None:
            ev.odds = self.odds.answer(self.predictor, bars, self.interval)
        if self.analogues is not None:
            ev.analogues = analogue_summary(self.analogues.answer(bars))
        return ev

    def _extend(self, sym: str, row: dict[str, Any]) -> None:
        """Append a counted bar to ``sym``'s bars so far (only kept when extras are on)."""
        if sym in self.bars:
            old = self.bars[sym]
            self.bars[sym] = pl.concat([old, pl.DataFrame([row]).select(old.columns).cast(
                old.schema)])  # type: ignore[arg-type]

    # -- time ---------------------------------------------------------------------------
    def closes_at(self, ts: datetime) -> datetime:
        """When the bar opening at ``ts`` is final: one bar length later."""
        return ts + self.step

    def _next_due(self, sym: str) -> datetime:
        """When the bar after ``sym``'s last should be final and published."""
        us = np.asarray(self.times[sym][-5000:], dtype=np.int64)
        ex = self.exchange[sym]
        if ex is None and us[-1] - us[0] < _GRID_MIN_US:
            nxt = int(us[-1]) + _epoch_us(_utc(0) + self.step)  # too short for a grid
        else:
            nxt = int(future_times(us, 1, self.spec, ex).ts[0])
        return self.closes_at(_utc(nxt)) + self.grace

    def _closed(self, bars: pl.DataFrame, now: datetime) -> pl.DataFrame:
        """Bars already closed at ``now``, one per (symbol, time), sorted."""
        if bars.height == 0:
            return bars
        done = bars.filter(pl.col("ts") + pl.lit(self.step) <= now)
        return done.unique(["symbol", "ts"], keep="last").sort("symbol", "ts")

    # -- the loop -----------------------------------------------------------------------
    def _retrying(self, what: Callable[[], pl.DataFrame], res: WatchResult
                  ) -> pl.DataFrame | None:
        """``what()``; on a source error (the network) back off and try again, until it
        works or the run is stopped (None)."""
        delay = self.poll
        while not self.stop.is_set():
            res.polls += 1
            try:
                return what()
            except SourceError as exc:
                res.errors += 1
                log.warning("the feed failed (%s); trying again in %.0f s", exc, delay)
                self.clock.sleep(delay)
                delay = min(2 * delay, self.max_backoff)
        return None

    def run(self, on_event: Callable[[WatchEvent], None] | None = None,
            max_bars: int | None = None, max_polls: int | None = None) -> WatchResult:
        """Answer on the history, then on every new bar until ``max_bars`` new bars (None:
        no limit), ``max_polls`` polls or the stop event."""
        res = WatchResult()

        def emit(ev: WatchEvent) -> None:
            res.events.append(ev)
            if on_event is not None:
                on_event(ev)

        hist = self._retrying(lambda: self.feed.history(self.symbols, self.clock.now()), res)
        if hist is None:
            res.reason = "stopped"
            return res
        hist = self._closed(hist, self.clock.now())
        answers = self.predictor.start(hist, self.horizons)
        for sym in self.symbols:
            g = hist.filter(pl.col("symbol") == sym)
            self.times[sym] = g["ts"].dt.epoch("us").to_list()
            self._seen[sym] = set(self.times[sym])
            if self.odds is not None or self.analogues is not None:
                self.bars[sym] = g
            emit(self._event("start", sym, g["ts"][-1], float(g["close"][-1]),
                             [a for a in answers if a.symbol == sym]))
            self._due[sym] = self._next_due(sym)
        last_poll: datetime | None = None
        while True:
            if self.stop.is_set():
                res.reason = "stopped"
                break
            if max_polls is not None and res.polls >= max_polls:
                res.reason = "max_polls"
                break
            now = self.clock.now()
            wake = min(self._due.values())
            if last_poll is not None and wake <= last_poll:  # late: ask again in a while
                wake = last_poll + timedelta(seconds=self.poll)
            if now < wake:
                self.clock.sleep((wake - now).total_seconds())
                continue  # the stop event or a short sleep: look again
            after = min(_utc(self.times[s][-1]) for s in self.symbols) + _US
            got = self._retrying(lambda a=after: self.feed.since(self.symbols, a,  # type: ignore[misc]
                                                                 self.clock.now()), res)
            if got is None:
                continue
            now = self.clock.now()
            last_poll = now
            new = self._closed(got, now)
            new = new.filter(pl.col("symbol").is_in(self.symbols))
            fresh = []
            for row in new.iter_rows(named=True):
                sym, us = row["symbol"], _epoch_us(row["ts"])
                if us <= self.times[sym][-1]:  # seen already: never counted twice
                    if us not in self._seen[sym]:
                        self._seen[sym].add(us)  # said once
                        log.warning("the %s bar at %s came after a later bar and is not "
                                    "counted (a causal answer cannot insert it); restart "
                                    "watch to read it from the cache.", sym, row["ts"])
                    continue
                fresh.append(row)
            fresh.sort(key=lambda r: (r["ts"], r["symbol"]))
            done, counted = False, []
            for row in fresh:
                sym = row["symbol"]
                answers = self.predictor.update(row)
                self._extend(sym, row)
                self.times[sym].append(_epoch_us(row["ts"]))
                self._seen[sym].add(self.times[sym][-1])
                self._due[sym] = self._next_due(sym)
                res.bars += 1
                counted.append(row)
                emit(self._event("bar", sym, row["ts"], float(row["close"]), answers))
                if max_bars is not None and res.bars >= max_bars:
                    done = True
                    break
            if counted:  # the bars answered, and only those, are final in the cache
                self.feed.keep(pl.DataFrame(counted, schema=got.schema), after)
            if done:
                res.reason = "max_bars"
                break
        return res


def _epoch_us(ts: datetime) -> int:
    d = ts.astimezone(timezone.utc) - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def _utc(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=int(us))
