"""``Predictor``: one object that gives the calibrated answer, with the forecasters the
evaluation scores.

The chronos ``from_pretrained(...).predict`` / Kronos ``KronosPredictor`` pattern: a user
who wants "P(up) for AAPL" loads one thing and asks one question. ``from_checkpoint``
gathers what an answer needs (the model, its vocabulary, the calibration maps that
``candletok evaluate`` fit on val, the facts the checkpoint records, and the dataset's
train split, from which the token table is learned), and ``predict`` answers with the
*same* objects the harness scores: :class:`~candletok.evaluation.gptcast.GPTForecaster`
(its windows, its train-learned :class:`~candletok.evaluation.forecasters.TokenTable`),
:class:`~candletok.evaluation.forecasters.BaseRate` for the one base rate, and
:func:`~candletok.evaluation.forecastfile.shown_values` for the shown numbers. So the
answer at T is the row at T of ``candletok evaluate --forecasts`` (a test shows it), and
it reads only bars up to T: the bars after T are dropped before anything is encoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from candletok.core.errors import ModelError
from candletok.core.times import parse_time
from candletok.evaluation.calibrate import (
    CalibrationMap,
    _skill_words,
    calibrate_probability,
    load_calibration,
    saved_fit,
)
from candletok.evaluation.conformal import INTERVAL_COLUMNS
from candletok.evaluation.forecasters import BaseRate, forecast_from
from candletok.evaluation.forecastfile import QUANTILE_COLUMNS
from candletok.evaluation.gptcast import GPTForecaster
from candletok.evaluation.history import History, history_from_rows, load_history
from candletok.model.checkpoint import FitFacts, load_model, read_checkpoint
from candletok.model.evaluate import MODEL_NAME
from candletok.predict.chosen import override, shown_at
from candletok.tokenize.base import Tokenizer

__all__ = ["Answer", "Predictor"]


@dataclass
class Answer:
    """What the model says of one symbol at one horizon, after the bar at ``origin``.

    ``p_up_raw`` is the model's own P(close at origin + h above the close at origin);
    ``p_up`` the calibrated one (the map ``evaluate`` fit on val), or None with the
    reason in ``p_up_reason``. ``base_rate`` is the one base rate (``base_rate_name`` says
    which). ``range`` is the next candle's forecast ln(high / low) after its fitted
    constant (``range_raw`` before it; h = 1 only); ``quantiles`` the forward log
    return's (``q05`` ... ``q95``). ``val_skill`` and ``test_skill`` say in words what was
    measured of this P(up)."""

    symbol: str
    origin: datetime
    horizon: int
    last_close: float
    p_up_raw: float | None
    p_up: float | None
    p_up_reason: str | None
    calibration: str
    base_rate: float
    base_rate_name: str
    range_raw: float | None
    range: float | None
    quantiles: dict[str, float | None]
    val_skill: str
    test_skill: str
    forecaster: str = MODEL_NAME
    notes: list[str] = field(default_factory=list)
    #: conformal 80%/90% intervals (``lo80`` ... ``hi90`` of the return, ``range_lo80``
    #: ... of the next range), fit on val by ``evaluate``; None where there is none
    intervals: dict[str, float | None] = field(default_factory=dict)
    #: which forecaster each quantity (range, quantiles, p_up) comes from: the val winner
    sources: dict[str, str] = field(default_factory=dict)
    #: each choice in words: ``range: HAR-RV, chosen on val (QLIKE ... vs CandleGPT ...)``
    chosen: list[str] = field(default_factory=list)

    @property
    def range_pct(self) -> float | None:
        """The range forecast as percent of price (high / low - 1)."""
        return None if self.range is None else 100.0 * float(np.expm1(self.range))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["origin"] = self.origin.isoformat()
        return d


def _none_if_nan(x: Any) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


class Predictor:
    """A trained CandleGPT with everything its answers need; see the module doc."""

    def __init__(self, model: Any, tokenizer: Tokenizer, history: History,
                 calibration: dict[str, Any] | None, path: str | Path | None = None,
                 dataset: str | Path | None = None, calibration_reason: str | None = None
                 ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.history = history  # the dataset's splits: the token table's train rows
        self.calibration = calibration
        self.calibration_reason = calibration_reason
        self.facts = FitFacts.of(getattr(model, "meta", None))
        self.path = None if path is None else Path(path)
        self.dataset = None if dataset is None else Path(dataset)
        self.forecaster = GPTForecaster(model)
        self.forecaster.fit(history)  # the train-learned token table, as evaluate fits it
        self.base = BaseRate()
        self._rows: pl.DataFrame | None = None
        self._live: dict[str, Any] = {}  # symbol -> LiveSeries (start / update)
        self._live_h: list[int] = [1]
        self._live_winners = True
        self._live_last: dict[str, list[Answer]] = {}

    @classmethod
    def from_checkpoint(cls, path: str | Path, dataset: str | Path | None = None,
                        device: str = "cpu") -> Predictor:
        """Load the checkpoint at ``path``, the calibration beside it and the dataset it
        was trained on (``dataset``; None: the folder the checkpoint records, said so when
        it is not there)."""
        if dataset is None:
            rec = str(read_checkpoint(path).get("dataset") or "")
            if not rec or not Path(rec).is_dir():
                raise ModelError(
                    f"{path} does not record a dataset folder that is there from here"
                    f"{f' ({rec})' if rec else ''}; pass dataset= (the folder it was "
                    "trained on: its train split teaches the token table).")
            dataset = rec
        hist = load_history(dataset)
        model = load_model(path, hist.tok, device=device)
        saved = load_calibration(path)
        why = None if saved is not None else (
            "no calibration beside the model for this checkpoint: run `candletok evaluate "
            "DIR --model FILE` to fit and check it on val")
        return cls(model, hist.tok, hist, saved, path, dataset, why)

    # -- the bars an answer reads ---------------------------------------------------------
    def _dataset_rows(self) -> pl.DataFrame:
        if self._rows is None:
            from candletok.dataset.manifest import read_split

            assert self.dataset is not None
            frames = [read_split(self.dataset, s) for s in ("train", "val", "test")
                      if s in self._splits()]
            self._rows = pl.concat(frames)
        return self._rows

    def _splits(self) -> list[str]:
        from candletok.dataset.manifest import read_manifest

        assert self.dataset is not None
        return list(read_manifest(self.dataset)["splits"])

    def history_at(self, bars_or_symbols: pl.DataFrame | str | Sequence[str],
                   at: Any = None, source: str | None = None) -> History:
        """The history an answer at ``at`` reads: every series' rows up to its last bar at
        or before ``at`` (all of them when None), nothing after. Symbols are read from the
        dataset's rows (what ``evaluate`` replayed) where it holds them, else loaded from
        ``source`` (default: the dataset's own); a bars frame is encoded with the model's
        vocabulary.

        The one number the origin needs beyond its own row is the scale the *next* bar
        will be measured in; the encoder computes it from the bars up to the origin only,
        so it is taken from there (the dataset's next row, or a flat bar appended after
        the origin for the encoder to measure, then dropped): the bits a replay over the
        whole series read."""
        cut = None if at is None else _at_time(at)
        parts: list[pl.DataFrame] = []
        nxt: dict[str, float] = {}
        if isinstance(bars_or_symbols, pl.DataFrame):
            syms = bars_or_symbols["symbol"].unique(maintain_order=True).to_list()
            self._add_bars(bars_or_symbols, cut, parts, nxt)
        else:
            from candletok.data.sources import load_bars, normalize_symbols

            syms = normalize_symbols([bars_or_symbols] if isinstance(bars_or_symbols, str)
                                     else list(bars_or_symbols))
            if not syms:
                raise ModelError("Give at least one symbol to forecast.")
            have = (set(self.history.symbols) if source is None and self.dataset is not None
                    else set())
            inside = [s for s in syms if s in have]
            if inside:
                ds = self._dataset_rows().filter(pl.col("symbol").is_in(inside))
                if cut is not None:
                    after = ds.filter(pl.col("ts") > cut).sort("ts").group_by(
                        "symbol", maintain_order=True).first()
                    nxt.update(zip(after["symbol"].to_list(),
                                   after["scale"].cast(pl.Float64).to_list(), strict=True))
                    ds = ds.filter(pl.col("ts") <= cut)
                parts.append(ds)
            rest = [s for s in syms if s not in have]
            if rest:
                from candletok.predict.latest import bars_source

                bars = load_bars(rest, source=bars_source(source, self.dataset),
                                 interval=self.facts.interval or "1d")
                self._add_bars(bars, cut, parts, nxt)
        rows = pl.concat(parts, how="diagonal_relaxed") if len(parts) > 1 else parts[0]
        got = set(rows["symbol"].to_list())
        missing = [s for s in syms if s not in got]
        if missing:
            when = "" if cut is None else f" at or before {cut.isoformat()}"
            raise ModelError(f"{', '.join(missing)} has no encoded bar{when} (a series "
                             "needs two bars up to then: the first only anchors the next).")
        # ``nxt`` holds only symbols whose origin has a known next scale
        return history_from_rows(rows, self.tokenizer, last_next_scale=nxt)

    def series_bars(self, symbol: str, source: str | None = None) -> pl.DataFrame:
        """One symbol's whole series of bars (``ts``, ``open``, ``high``, ``low``,
        ``close``, ``volume``), from where :meth:`history_at` reads it: the dataset's
        stored rows, else ``source``. A replay (``predict --at``) reads the bars after its
        origin from here, to draw what really followed; the answer never sees them."""
        sym = symbol.strip().upper() if symbol not in self.history.symbols else symbol
        if source is None and self.dataset is not None and sym in set(self.history.symbols):
            rows = self._dataset_rows().filter(pl.col("symbol") == sym)
        else:
            from candletok.data.sources import load_bars
            from candletok.predict.latest import bars_source

            rows = load_bars([sym], source=bars_source(source, self.dataset),
                             interval=self.facts.interval or "1d")
        cols = [c for c in ("ts", "open", "high", "low", "close", "volume") if c in rows.columns]
        return rows.select(cols).sort("ts")

    def _add_bars(self, bars: pl.DataFrame, cut: datetime | None,
                  parts: list[pl.DataFrame], nxt: dict[str, float]) -> None:
        """Encode ``bars`` up to ``cut`` with one flat bar appended after each series'
        last (its scale is the next scale, a function of the bars before it), and add
        the rows without it."""
        if cut is not None:
            bars = bars.filter(pl.col("ts") <= cut)
        if bars.height == 0:
            return
        bars = bars.sort("symbol", "ts")
        tail = bars.group_by("symbol", maintain_order=True).tail(2)
        flats = []
        for (sym,), g in tail.group_by("symbol", maintain_order=True):  # one per series
            ts = g["ts"].to_list()
            step = ts[-1] - ts[-2] if len(ts) > 1 else timedelta(days=1)
            c = float(g["close"][-1])
            row = {"symbol": sym, "ts": ts[-1] + step, "open": c, "high": c, "low": c,
                   "close": c}
            if "volume" in bars.columns:
                row["volume"] = g["volume"][-1]
            flats.append(row)
        flat = pl.DataFrame(flats).with_columns(pl.col("ts").cast(bars.schema["ts"]))
        enc = self._encode(pl.concat([bars, flat.select(bars.columns)]).sort("symbol", "ts"))
        phantom = enc.join(flat.select("symbol", "ts"), on=["symbol", "ts"], how="semi")
        nxt.update(zip(phantom["symbol"].to_list(),
                       phantom["scale"].cast(pl.Float64).to_list(), strict=True))
        parts.append(enc.join(flat.select("symbol", "ts"), on=["symbol", "ts"], how="anti"))

    def _encode(self, bars: pl.DataFrame) -> pl.DataFrame:
        """Dataset rows of canonical ``bars``: tokens, scales and each candle's bar."""
        enc = self.tokenizer.encode(bars)
        return enc.join(bars.select("symbol", "ts", "high", "low", "close"),
                        on=["symbol", "ts"], how="left")

    # -- the answer -----------------------------------------------------------------------
    def predict(self, bars_or_symbols: pl.DataFrame | str | Sequence[str], at: Any = None,
                horizons: Sequence[int] = (1,), source: str | None = None,
                winners: bool = True) -> list[Answer]:
        """The calibrated answer of each symbol at each horizon after its last bar at or
        before ``at`` (None: its latest bar), in symbol then horizon order; each quantity
        from the forecaster that won it on val (``winners=False``: all from the model)."""
        hs = _horizons(horizons)
        hist = self.history_at(bars_or_symbols, at, source)
        rows = (hist.ends - 1).astype(np.int64)  # each series' last bar: the origin
        out: list[Answer] = []
        per: dict[int, dict[str, np.ndarray | None]] = {}
        chosen: dict[int, tuple[list[str], dict[str, str]]] = {}
        for h in hs:
            fc = self.forecaster.forecast(hist, rows, h)
            assert fc is not None
            me = self.forecaster.name
            per[h], _ = shown_at(self.calibration, me, h, fc, hist, None,
                                 self._range_a(), calibrate=False)
            chosen[h] = (override(self, hist, rows, h, per[h]) if winners  # val winners'
                         else ([], dict.fromkeys(("range", "quantiles", "p_up"), me)))
        for k, r in enumerate(rows.tolist()):
            sym = str(hist.symbol[r])
            for h in hs:
                out.append(self._answer(hist, r, sym, h, {n: (None if v is None else v[k])
                                                          for n, v in per[h].items()},
                                        *chosen[h]))
        return out

    # -- following a series bar by bar -------------------------------------------------
    def start(self, bars: pl.DataFrame, horizons: Sequence[int] = (1,),
              winners: bool = True) -> list[Answer]:
        """Follow the series in canonical ``bars`` (each needs two bars): what
        :meth:`predict` answers on them now, and the state :meth:`update` steps from (the
        causal scale, the features' previous close, the model's key-value cache).
        ``winners`` as in :meth:`predict`: a quantity whose val winner is another
        forecaster is answered by it, over the series so far (O(n) per bar, not O(1))."""
        from candletok.predict.incremental import LiveSeries

        self._live_winners = winners
        hs = _horizons(horizons)
        hist = self.history_at(bars)
        bars = bars.sort("symbol", "ts")
        self._live, self._live_h, self._live_last = {}, hs, {}
        for k, sym in enumerate(hist.symbols):
            g = bars.filter(pl.col("symbol") == sym)
            self._live[sym] = LiveSeries.from_bars(g, hist, k, self.tokenizer, self.model)
        return [a for sym in hist.symbols for a in self._live_answers(sym)]

    def update(self, bar: dict[str, Any] | pl.DataFrame) -> list[Answer]:
        """Append one new bar (a dict or a one-row frame with the canonical columns; the
        symbol may be left out while one series is followed) and answer as :meth:`predict`
        would on every bar so far (h = 1 within float rounding, about 1e-7; h > 1 exactly,
        by the same sampled paths). Costs O(1) in the features and one cached model step,
        one forward of half a context each ``context // 2`` bars (see
        :mod:`candletok.predict.incremental`). An exact duplicate of the last bar is ignored
        (the last answers come back again, nothing is counted twice); a bar that is not
        after the last one, or a different bar at its time, is refused."""
        if not self._live:
            raise ModelError("Call start(bars) with the history before update(bar).")
        row = _one_bar(bar, next(iter(self._live)) if len(self._live) == 1 else None)
        sym = row["symbol"]
        live = self._live.get(sym)
        if live is None:
            raise ModelError(f"{sym} is not followed (start() was given "
                             f"{', '.join(self._live)}); start again with its bars.")
        vals = (*(float(row[k]) for k in ("open", "high", "low", "close")),
                float("nan") if row.get("volume") is None else float(row["volume"]))
        if not live.push(_us(row["ts"]), vals, self.tokenizer, self.model):
            return self._live_last[sym]
        return self._live_answers(sym)

    def _live_answers(self, sym: str) -> list[Answer]:
        """The answers after the followed series' last bar: h = 1 from the cached model
        step, h > 1 by the harness's sampled paths on the series' rows."""
        live = self._live[sym]
        out = []
        for h in self._live_h:
            if h == 1:
                hist, r = live.history(self.tokenizer, last_only=True), 0
                rows = np.array([r], dtype=np.int64)
                assert self.forecaster.table is not None
                fc = forecast_from(rows, iter([(slice(0, 1), live.dist(self.model))]),
                                   self.forecaster.table, hist.next_scale[rows])
            else:
                hist = live.history(self.tokenizer)
                r = hist.n - 1
                fc = self.forecaster.forecast(hist, np.array([r], dtype=np.int64), h)
                assert fc is not None
            v, _ = shown_at(self.calibration, self.forecaster.name, h, fc, hist, None,
                            self._range_a(), calibrate=False)
            chosen: tuple[list[str], dict[str, str]] = ([], {})
            if self._live_winners:  # as predict: each quantity from its val winner
                full = hist if h != 1 else partial(live.history, self.tokenizer)
                chosen = override(self, full, np.array([-1], dtype=np.int64), h, v)
            out.append(self._answer(hist, r, sym, h, {n: (None if x is None else x[0])
                                                     for n, x in v.items()}, *chosen))
        self._live_last[sym] = out
        return out

    def distribution(self, bars_or_symbols: pl.DataFrame | str | Sequence[str],
                     at: Any = None, source: str | None = None) -> np.ndarray:
        """(n_symbols, n_candle_tokens) next-candle distributions after each series' last
        bar at or before ``at``: the ones :meth:`predict` pushes through the token table."""
        hist = self.history_at(bars_or_symbols, at, source)
        rows = (hist.ends - 1).astype(np.int64)
        return np.concatenate([d for _, d in self.forecaster.dists(hist, rows)])

    def _range_a(self) -> float | None:
        me = self.forecaster.name
        rec = ((self.calibration or {}).get("forecasters") or {}).get(me) or {}
        a = (rec.get("range") or {}).get("a")
        return None if a is None else float(a)

    def _answer(self, hist: History, r: int, sym: str, h: int,
                v: dict[str, Any], chosen: Sequence[str] = (),
                sources: dict[str, str] | None = None) -> Answer:
        raw = _none_if_nan(v["p_up_raw"])
        notes: list[str] = []
        if self.facts.has_symbol(sym) is False:
            notes.append(f"{sym} was not in the model's training data; no skill was ever "
                         "measured on it.")
        won = self.forecaster.name  # the forecaster the P(up) comes from: the val winner
        if self.calibration is None:
            p, reason, kind = None, self.calibration_reason, "none"
        else:
            cp = calibrate_probability(raw if raw is not None else float("nan"),
                                       self.calibration, self.forecaster.name, h, symbol=sym,
                                       interval=self.facts.interval)
            p, reason, kind = cp.value, cp.reason, cp.kind
            if cp.calibrated and self.facts.has_symbol(sym) is False:
                p, reason, kind = None, notes[0].rstrip("."), "none"
            fit = saved_fit(self.calibration, self.forecaster.name, h)
            if p is not None and fit is not None:
                kind = CalibrationMap.from_dict(fit["map"]).describe()
            won = (sources or {}).get("p_up", self.forecaster.name)
            if won != self.forecaster.name:  # the val winner's P(up), with its own map
                fit = saved_fit(self.calibration, won, h)
                p, reason = v["p_up"], None
                kind = "-" if fit is None else CalibrationMap.from_dict(fit["map"]).describe()
        base, _ = self.base.rate(self.history, h)
        if h == 1 and v["range"] is None and v["range_raw"] is not None:
            notes.append("the range's constant was never fit (no calibration beside the "
                         "model): only the raw range is known")
        return Answer(
            symbol=sym, origin=_utc(int(hist.ts[r])), horizon=h,
            last_close=float(hist.close[r]), p_up_raw=raw, p_up=_none_if_nan(p),
            p_up_reason=reason, calibration=kind, base_rate=float(base),
            base_rate_name=f"train share of up moves over {h} bar{'s' * (h > 1)}",
            range_raw=_none_if_nan(v["range_raw"]),
            range=_none_if_nan(v["range"]),
            quantiles={q: _none_if_nan(v[q]) for q in QUANTILE_COLUMNS},
            val_skill=self._val_skill(h, won), test_skill=self._test_skill(h, won),
            notes=notes,
            intervals={k: _none_if_nan(v[k]) for k in INTERVAL_COLUMNS if k in v},
            sources=dict(sources or {}), chosen=list(chosen))

    def _val_skill(self, h: int, name: str | None = None) -> str:
        fit = saved_fit(self.calibration, name or self.forecaster.name, h)
        if fit is None:
            return f"val skill never measured at h={h}"
        return _skill_words(fit.get("val_skill"), "val (out-of-fold)")

    def _test_skill(self, h: int, name: str | None = None) -> str:
        ev = (self.calibration or {}).get("evaluated") or {}
        rec = ((ev.get("p_up") or {}).get(name or self.forecaster.name) or {}).get(str(h))
        split = str(ev.get("split", "test"))
        if not isinstance(rec, dict):
            return f"{split} skill never measured at h={h}"
        return _skill_words(rec.get("skill"), split)


def _horizons(horizons: Sequence[int]) -> list[int]:
    hs = sorted({int(h) for h in horizons})
    if not hs or hs[0] < 1:
        raise ModelError(f"horizons must be positive numbers of bars, not {list(horizons)}.")
    return hs


def _one_bar(bar: dict[str, Any] | pl.DataFrame, default_symbol: str | None
             ) -> dict[str, Any]:
    """One bar as a dict with its symbol, from a dict or a one-row frame."""
    if isinstance(bar, pl.DataFrame):
        if bar.height != 1:
            raise ModelError(f"update() takes one bar at a time, not a frame of "
                             f"{bar.height} rows.")
        bar = bar.row(0, named=True)
    row = dict(bar)
    if row.get("symbol") is None:
        if default_symbol is None:
            raise ModelError("Give the bar's symbol: several series are followed.")
        row["symbol"] = default_symbol
    missing = [k for k in ("ts", "open", "high", "low", "close") if row.get(k) is None]
    if missing:
        raise ModelError(f"The bar lacks {', '.join(missing)}; give ts, open, high, low, "
                         "close (and volume).")
    return row


def _us(ts: Any) -> int:
    """A bar time as int64 microseconds UTC (see :func:`_at_time`)."""
    d = _at_time(ts) - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def _at_time(at: Any) -> datetime:
    """``at`` as an aware UTC datetime: a date or ISO text (``core.times.parse_time``), a
    datetime (naive: UTC) or a numpy/polars time."""
    if isinstance(at, np.datetime64):
        return _utc(int(at.astype("datetime64[us]").astype(np.int64)))
    got = parse_time(at if isinstance(at, date) else str(at), "--at")
    assert got is not None
    return got


def _utc(us: int) -> datetime:
    """int64 microseconds UTC as an aware datetime, exactly (no float seconds)."""
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=us)

