"""What a report shows, gathered once: the query's stored bars, every match of ``similar``
in its own context, the outcome samples beside the base rate's, the model's answer and
its fan of sampled paths, and what ``evaluate`` saved.

Why a separate step: the page (:mod:`candletok.report.page`) only draws; every number on
it comes from here, and every number here comes from the stage that owns it (the search
from :func:`~candletok.evaluation.simcal.calibrated_similar`, the model's calibrated
answer from :class:`~candletok.predict.predictor.Predictor`, the fan from
:func:`~candletok.predict.odds.sample_paths`), read at the query's time T only: bars
after T are kept apart, and drawn only as the real path over a past forecast.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from candletok.core.display import price_decimals, time_format
from candletok.core.errors import CandletokError
from candletok.search.result import SimilarResult
from candletok.search.spec import SearchSpec
from candletok.search.stats import base_sample
from candletok.search.timerule import series_limits

PRICES = ("open", "high", "low", "close")
LEAD_IN = 2  # bars drawn before a match's window: its context


@dataclass
class MatchView:
    """One match as its panel draws it: its stored bars from a little before its window
    to what followed (cut at T), and each bar's offset from the window's last candle."""

    rank: int
    symbol: str
    end: datetime
    distance: float
    bars: pl.DataFrame  # ts, open, high, low, close, volume: the stored bars
    offset: np.ndarray  # bar number relative to the window's last candle (0)
    window: int
    forward: dict[int, float | None]  # h -> forward log return (None: not known by T)

    @property
    def last_close(self) -> float:
        return float(self.bars["close"][int(np.flatnonzero(self.offset == 0)[0])])


@dataclass
class Fan:
    """The model's sampled continuations after T: the closes of every path, their future
    bar times (the exchange's sessions or the series' grid) and, for a past T, the bars
    that really came."""

    closes: np.ndarray  # (S, n) sampled closes
    ts: np.ndarray  # (n,) datetime64[us] future open times
    times_from: str
    last_close: float
    scale: float
    caveat: str
    real: pl.DataFrame | None  # the real bars after T (stored), at most n


@dataclass
class ReportData:
    """Everything the page draws and says; see the module doc."""

    symbol: str
    dataset: Path
    T: datetime
    at: str | None
    interval: str
    decimals: int
    time_format: str
    bars: pl.DataFrame  # the query's recent stored bars up to T
    search: SimilarResult
    calibrated: Any | None  # AnalogueCalibration, or None (--no-calibrate)
    matches: list[MatchView]
    outcomes: dict[int, tuple[np.ndarray, np.ndarray]]  # h -> (matches, base) log returns
    model: Path | None = None
    answers: list[Any] = field(default_factory=list)  # predictor Answers at each horizon
    fan: Fan | None = None
    calibration: dict[str, Any] | None = None
    calibration_note: str | None = None  # why there is none, in words
    evaluation: dict[str, Any] | None = None  # ``evaluate --json`` (its to_dict)
    evaluation_from: str | None = None  # where it was read from
    notes: list[str] = field(default_factory=list)


def _series_bars(idx: Any, a: int, b: int) -> pl.DataFrame:
    """Positions [a, b) of the search index as stored bars with their volume."""
    ts = pl.Series("ts", np.asarray(idx.ts[a:b])).cast(pl.Datetime("us", "UTC"))
    cols = {c: np.asarray(getattr(idx, c)[a:b], dtype=np.float64)
            for c in (*PRICES, "volume")}
    return pl.DataFrame({"ts": ts, **cols})


def match_views(res: SimilarResult) -> list[MatchView]:
    """Every listed match of ``res`` in its context: ``LEAD_IN`` bars before its window,
    the window, and the forward bars up to its longest horizon that are in its series by
    T. One slice per match (a match is a handful of bars: no loop over candles)."""
    idx, rule, ends = res._idx, res._rule, res._e
    if idx is None or rule is None or ends is None:
        raise CandletokError("This search result carries no index; search again.")
    n, H = rule.window, max(rule.horizons)
    limits = series_limits(idx, rule.T)
    out = []
    for i, (e, row) in enumerate(zip(ends.tolist(), res.matches.iter_rows(named=True),
                                     strict=True)):
        sid = int(idx.sid[e])
        a = max(int(idx.starts[sid]), e - n + 1 - LEAD_IN)
        b = min(int(limits[sid]), e + H + 1)
        fwd = {h: row.get(f"fwd_{h}") for h in rule.horizons}
        out.append(MatchView(i + 1, row["symbol"], row["end"], float(row["distance"]),
                             _series_bars(idx, a, b), np.arange(a, b) - e, n, fwd))
    return out


def query_bars(res: SimilarResult, recent: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The query's last ``recent`` stored bars up to T and the stored bars after T (for a
    past T: what really came), from the search index the matches came from."""
    idx, rule = res._idx, res._rule
    assert idx is not None and rule is not None
    if rule.q_sid is None or rule.q_end is None:
        raise CandletokError(f"{res.summary['symbol']} is not in the dataset; the report "
                             "draws a symbol of the dataset.")
    sid, e = int(rule.q_sid), int(rule.q_end)
    start, stop = int(idx.starts[sid]), int(idx.starts[sid + 1])
    return (_series_bars(idx, max(start, e + 1 - recent), e + 1),
            _series_bars(idx, e + 1, stop))


def _read_evaluation(path: Path | None) -> tuple[dict[str, Any] | None, str | None]:
    """The JSON ``candletok evaluate --json`` printed, saved to ``path``."""
    if path is None:
        return None, None
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CandletokError(f"Cannot read the evaluation {path} ({exc}); save it with "
                             "`candletok evaluate DIR --model FILE --json > FILE`.") from exc
    if not isinstance(doc, dict) or "direction" not in doc:
        raise CandletokError(f"{path} is not the output of `candletok evaluate --json`.")
    return doc, str(path)


def gather(
    dataset: str | Path,
    symbol: str,
    *,
    model: str | Path | None = None,
    at: Any = None,
    spec: SearchSpec | None = None,
    recent: int = 120,
    fan_horizon: int = 20,
    samples: int = 200,
    seed: int = 0,
    calibrate: bool = True,
    val_origins: int = 200,
    evaluation: str | Path | dict[str, Any] | None = None,
    answer_horizons: tuple[int, ...] | None = None,
    continuation: Any | None = None,
) -> ReportData:
    """Gather the report of ``symbol`` in ``dataset`` at ``at`` (None: its last bar).

    The search lists every match (``spec.top`` only caps the nearest modes' neighbours:
    an exact search lists all its matches here, not the 20 most recent). ``model`` adds
    the calibrated answer at the search's horizons and a fan of ``samples`` paths of
    ``fan_horizon`` bars. ``evaluation`` is what ``candletok evaluate --json`` printed (a
    file, or the dict itself); without it the verdicts come from the calibration file
    ``evaluate`` saved beside the model, and nothing is re-run. ``answer_horizons`` are
    the horizons of the model's answers (default: the search's and the fan's; h > 1
    samples paths). ``continuation`` is a fan already sampled after T
    (:class:`~candletok.predict.predict.Continuation`, as the demo has one): drawn
    instead of sampling another (it must end at T)."""
    from candletok.evaluation.simcal import calibrated_similar
    from candletok.search.similar import similar

    if recent < 2 or fan_horizon < 1 or samples < 1:
        raise CandletokError("Show at least 2 recent bars, a fan of at least 1 bar and 1 "
                             "sampled path.")
    from candletok.dataset.manifest import read_manifest

    have = [str(s) for s in read_manifest(dataset).get("symbols") or []]
    if have and symbol.strip().upper() not in have and symbol not in have:
        raise CandletokError(f"{symbol} is not in {dataset} (it has {', '.join(have[:10])}); "
                             "a report draws a symbol of its dataset.")
    spec = spec or SearchSpec()
    if spec.search_mode.by_recency:  # every match counts: list them all
        spec = SearchSpec.of(spec, top=1 << 30)
    if calibrate:
        both = calibrated_similar(dataset, symbol, spec, at=at, val_origins=val_origins)
        res, cal = both.result, both.calibration
    else:
        res, cal = similar(dataset, symbol, spec, at=at), None
    assert res._idx is not None and res._rule is not None
    bars, after = query_bars(res, recent)
    T = datetime.fromisoformat(res.summary["T"]).astimezone(timezone.utc)
    us = bars["ts"].dt.epoch("us").to_numpy()
    interval = str(res.summary.get("interval") or "1d")
    outcomes = {h: (np.asarray(res.forward[h]["matches"], np.float64),
                    base_sample(res._idx, res._rule, h)) for h in res._rule.horizons}
    ev, ev_from = (evaluation, "the evaluation run with this report") \
        if isinstance(evaluation, dict) else _read_evaluation(
            None if evaluation is None else Path(evaluation))
    data = ReportData(
        symbol=res.summary["symbol"], dataset=Path(dataset), T=T,
        at=None if at is None else str(at), interval=interval,
        decimals=price_decimals(bars.select(PRICES).to_numpy()),
        time_format=time_format(interval, us), bars=bars, search=res, calibrated=cal,
        matches=match_views(res), outcomes=outcomes, evaluation=ev, evaluation_from=ev_from)
    if model is not None:
        _add_model(data, Path(model), after, fan_horizon, samples, seed, answer_horizons,
                   continuation)
    elif ev is not None:
        data.notes.append("an evaluation was given without a model: its verdicts are shown, "
                          "but no forecast is drawn")
    return data


def _add_model(data: ReportData, model: Path, after: pl.DataFrame, n: int, samples: int,
               seed: int, answer_horizons: tuple[int, ...] | None = None,
               continuation: Any | None = None) -> None:
    """The model's calibrated answer at T (the harness's forecaster: shown = scored), and
    the fan of sampled paths after T with the real bars over it when T is past."""
    from candletok.evaluation.calibrate import direction_caveat, read_calibration
    from candletok.predict.odds import sample_paths
    from candletok.predict.predictor import Predictor
    from candletok.tokenize.calendar import CalendarSpec
    from candletok.tokenize.exchange import future_times, resolve_exchange

    pred = Predictor.from_checkpoint(model, data.dataset)
    data.model = model
    data.calibration = pred.calibration
    if pred.calibration is None:
        _, why = read_calibration(model)
        data.calibration_note = why or pred.calibration_reason
    horizons = answer_horizons or sorted({*data.search.summary["horizons"], n})
    data.answers = pred.predict(data.symbol, at=data.T, horizons=horizons)
    caveat = direction_caveat(pred.calibration, n)
    c = continuation
    if c is not None and c.future is not None and c.last_ts == data.T:
        closes = c.paths["close"]
        data.fan = Fan(closes, c.future.ts.astype("datetime64[us]"), c.future.source,
                       float(c.last_close), float("nan"), caveat,
                       after.head(closes.shape[1]) if after.height else None)
        return
    hist_bars = _canonical(data)
    paths, last_close, scale = sample_paths(pred.model, pred.tokenizer, hist_bars, n,
                                            samples=samples, seed=seed)
    fut = future_times(hist_bars["ts"], n, pred.model.calendar or CalendarSpec(),
                       resolve_exchange(data.symbol, "auto"))
    data.fan = Fan(paths["close"], fut.ts.astype("datetime64[us]"), fut.source, last_close,
                   scale, caveat, after.head(n) if after.height else None)


def _canonical(data: ReportData) -> pl.DataFrame:
    """The query's whole stored series up to T as a canonical bars frame (what
    ``sample_paths`` encodes: its causal scale needs the history, not only the recent
    bars)."""
    idx, rule = data.search._idx, data.search._rule
    assert idx is not None and rule is not None and rule.q_sid is not None
    sid = int(rule.q_sid)
    df = _series_bars(idx, int(idx.starts[sid]), int(rule.q_end) + 1)
    return df.select(pl.lit(data.symbol).alias("symbol"), "ts", *PRICES,
                     pl.col("volume").fill_nan(None))
