"""Trader-readable next-candle forecasts from a trained CandleGPT, and their calibration.

A forecast is the model's next-token distribution (over candle tokens only, renormalized)
pushed through the vocabulary's representative features: every candle token *is* a
(gap, body, upper, lower) shape in volatility units, so "probability the next close is
above this close" is the mass of the tokens whose gap + body > 0, and expected moves are
probability-weighted averages of the tokens' features, turned into percent with the scale
the next candle will see.

Whether those probabilities mean what they say on held-out data is measured once, by
``candletok evaluate``; :func:`measured_check` reads back what it recorded.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl
import torch

from candletok.core.display import format_price, price_decimals, time_text
from candletok.core.errors import CandletokError, ModelError
from candletok.core.fallback import say_fallback
from candletok.core.ids import BOS, N_SPECIAL
from candletok.core.times import infer_interval, normalize_interval
from candletok.dataset.manifest import read_split
from candletok.evaluation.calibrate import model_forecaster
from candletok.model.checkpoint import FitFacts, check_fingerprint
from candletok.model.gpt import CandleGPT
from candletok.model.split import SplitSource
from candletok.model.updown import candle_feature_table, up_probability
from candletok.tokenize.base import Tokenizer
from candletok.tokenize.calendar import calendar_ids, calendar_layout, next_times
from candletok.tokenize.words import GAP_WORDS

log = logging.getLogger(__name__)

NO_GAP = GAP_WORDS[0][0]  # |gap| below this many vol units is described as "no gap"


@dataclass
class Candidate:
    token: int
    prob: float
    words: str


@dataclass
class Prediction:
    """The next candle of ``symbol`` after ``last_ts``, as probabilities and expectations.

    ``*_vol`` values are in volatility units (the causal scale), ``*_pct`` in percent of
    price. ``range`` is high/low of the candle, ``body`` close/open."""

    symbol: str
    last_ts: datetime
    last_close: float
    scale: float
    p_close_up: float
    p_gap_up: float
    p_gap_down: float
    exp_body_vol: float
    exp_body_pct: float
    exp_range_vol: float
    exp_range_pct: float
    top: list[Candidate]
    probs: np.ndarray = field(repr=False)  # (n_candle_tokens,) next-candle distribution
    context_candles: int = 0
    interval: str | None = None  # the model's bar interval (None: not recorded)
    in_training: bool | None = None  # symbol among the train symbols (None: not recorded)
    notes: list[str] = field(default_factory=list)  # what is unknown or unmeasured, in words
    decimals: int = 4  # the decimals the instrument's prices carry (core.display)

    @property
    def p_close_down(self) -> float:
        return 1.0 - self.p_close_up

    @property
    def p_no_gap(self) -> float:
        """P(|gap| within the words' "no gap" band)."""
        return 1.0 - self.p_gap_up - self.p_gap_down

    def to_dict(self) -> dict[str, Any]:
        """Every number the table shows, JSON-ready: probabilities (``p_*``) as fractions
        in [0, 1], ``*_pct`` in percent of price, ``*_vol`` in volatility units, ``scale``
        as a fraction, ``last_ts`` in ISO 8601, and the five likeliest next candles."""
        return {
            "symbol": self.symbol,
            "last_ts": self.last_ts.isoformat(),
            "last_close": self.last_close,
            "scale": self.scale,
            "p_close_up": self.p_close_up,
            "p_close_down": self.p_close_down,
            "p_gap_up": self.p_gap_up,
            "p_gap_down": self.p_gap_down,
            "p_no_gap": self.p_no_gap,
            "exp_body_vol": self.exp_body_vol,
            "exp_body_pct": self.exp_body_pct,
            "exp_range_vol": self.exp_range_vol,
            "exp_range_pct": self.exp_range_pct,
            "context_candles": self.context_candles,
            "interval": self.interval,
            "in_training_data": self.in_training,
            "notes": list(self.notes),
            "price_decimals": self.decimals,
            "top": [asdict(c) for c in self.top],
        }

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) pairs for a two-column table."""
        return [
            ("symbol", self.symbol),
            ("last bar", time_text(self.last_ts, self.interval)),
            ("last close", format_price(self.last_close, self.decimals)),
            ("P(next close above this close)", f"{self.p_close_up:.1%}"),
            ("P(gap up)", f"{self.p_gap_up:.1%}"),
            ("P(gap down)", f"{self.p_gap_down:.1%}"),
            (f"P(no gap, within {NO_GAP:g} vol)", f"{self.p_no_gap:.1%}"),
            ("expected body", f"{self.exp_body_pct:+.2f}%  ({self.exp_body_vol:+.2f} vol)"),
            ("expected high-low range",
             f"{self.exp_range_pct:.2f}%  ({self.exp_range_vol:.2f} vol)"),
            ("volatility unit (scale)", f"{100 * self.scale:.2f}%"),
            ("context candles", str(self.context_candles)),
        ]


UNITS: dict[str, str] = {
    "p_*, prob, base_rate, observed, mean_predicted": "probability as a fraction 0..1",
    "*_pct": "percent of price (1.5 = 1.5%)",
    "scale": "fraction of price (0.024 = 2.4%)",
    "*_vol": "volatility units (multiples of scale)",
}
"""The units of every number in :meth:`Prediction.to_dict` and :meth:`Calibration.to_dict`."""


def series_calendar(model: CandleGPT, ts: pl.Series, length: int,
                    n_future: int = 0, future: np.ndarray | None = None) -> torch.Tensor | None:
    """(1, length + n_future, n_fields) calendar ids of the last ``length`` positions of a
    BOS-led series whose candles opened at ``ts`` (the BOS unknown), then of the
    ``n_future`` bars to come (:func:`~candletok.tokenize.calendar.next_times`, from
    ``ts`` alone, or ``future``: their int64 microsecond UTC times, e.g. from an exchange
    calendar); None when the model reads no calendar inputs."""
    spec = model.calendar
    if spec is None:
        return None
    ids = calendar_layout(ts, np.array([ts.len()]), spec)[-length:].astype(np.int64)
    if n_future > 0:
        fut = next_times(ts, n_future, spec) if future is None else future[:n_future]
        ids = np.concatenate([ids, calendar_ids(fut, spec)])
    return torch.from_numpy(ids)[None].to(model.device)


def _bars_interval(ts: pl.Series) -> str | None:
    """The interval the bars of one series show (:func:`~candletok.core.times.infer_interval`),
    or None when they show none (too few bars, or a spacing no interval has): then there
    is nothing to compare with the checkpoint's interval."""
    try:
        return infer_interval(ts)
    except CandletokError:
        return None


def fit_notes(facts: FitFacts, symbol: str) -> tuple[bool | None, list[str]]:
    """Whether ``symbol`` was in the model's training data, and what a forecast of it must
    say in words: a symbol the model never saw, or facts the checkpoint does not record."""
    notes = []
    seen = facts.has_symbol(symbol)
    if seen is False:
        shown = ", ".join(facts.symbols[:8]) + (", ..." if len(facts.symbols) > 8 else "")
        notes.append(f"{symbol} was not in the model's training data ({shown}); no skill "
                     f"was ever measured on it.")
    unknown = facts.unknown()
    if unknown:
        notes.append(f"The checkpoint does not record the {', '.join(unknown)} it was trained "
                     "on (an older file); they are unknown, so they were not checked.")
    return seen, notes


def predict_next(model: CandleGPT, tok: Tokenizer, bars: pl.DataFrame,
                 predictor: Any = None) -> Prediction:
    """Forecast the candle after the last bar of ``bars`` (one symbol, canonical frame),
    encoding the bars with ``tok`` — which must be the vocabulary the model was trained on.

    With ``predictor`` (a :class:`~candletok.predict.predictor.Predictor` of this model)
    the distribution, P(close up) and the range are the ones ``evaluate`` scores: the
    harness's window over the series and its train-learned token table (the range after
    its val-fit constant). Without one, the model reads the last ``context`` tokens and the
    range comes from the tokens' representatives.

    Bars whose spacing is another interval than the one the checkpoint records are refused:
    a daily model has never seen hourly candles, so its numbers would mean nothing."""
    check_fingerprint(model.fingerprint, tok, "this tokenizer")
    if tok.vocab_size != model.config.vocab_size:
        raise ModelError("The tokenizer's vocab size differs from the model's; use its vocab.")
    symbols = bars["symbol"].unique(maintain_order=True).to_list() if bars.height else []
    if len(symbols) != 1:
        raise ModelError(f"Pass the bars of exactly one symbol (got {len(symbols)}).")
    sym = symbols[0]
    facts = FitFacts.of(getattr(model, "meta", None))
    seen_iv = _bars_interval(bars["ts"])
    if (facts.interval is not None and seen_iv is not None
            and seen_iv != normalize_interval(facts.interval)):
        raise ModelError(f"{sym}'s bars are {seen_iv} bars but the model was trained on "
                         f"{facts.interval} bars; forecast {facts.interval} bars or train a "
                         f"model on {seen_iv} bars.")
    in_training, notes = fit_notes(facts, sym)
    enc = tok.encode(bars)
    if enc.height == 0:
        raise ModelError(f"{sym} has too few bars to encode; give it at least two bars.")
    toks = enc["token"].to_numpy().astype(np.int64)
    ctx = model.config.context
    seq = np.concatenate([[BOS], toks])[-ctx:]
    idx = torch.from_numpy(seq)[None].to(model.device)
    cal = series_calendar(model, enc["ts"], seq.size)
    F = candle_feature_table(tok)
    gap, body, upper, lower = F[:, 0], F[:, 1], F[:, 2], F[:, 3]
    last_close, scale = tok.continuation_state(bars)[sym]
    rng_vol = upper + lower + np.abs(body)  # ln(high / low) / scale
    if predictor is not None:
        p = predictor.distribution(bars)[0]
        # P(close up) stays the model's (the map shown beside it is the model's); the range
        # is the val winner's, named in the notes
        p_up = float(predictor.predict(bars, winners=False)[0].p_up_raw)
        ans = predictor.predict(bars)[0]
        rng = ans.range if ans.range is not None else ans.range_raw
        notes = notes + [w for w in ans.chosen if w.startswith(("range", "answers from"))]
        if ans.sources.get("p_up", ans.forecaster) != ans.forecaster:
            notes.append(f"P(close up) here is {ans.forecaster}'s; {ans.sources['p_up']} won "
                         "it on val (`predict --at DATE` shows that one's)")
        exp_rng_vol, exp_rng_pct = float(rng) / float(scale), 100 * float(np.expm1(rng))
    else:
        model.refuse_levels("predict without a dataset", "give --dataset DIR, or use")
        p = model.next_token_probs(idx, cal)[0, N_SPECIAL:].double().cpu().numpy()
        p = p / p.sum()  # float round-off only: the model already renormalized
        p_up = float(p @ up_probability(model, tok)[N_SPECIAL:])
        exp_rng_vol = float(p @ rng_vol)
        exp_rng_pct = float(100 * (p @ np.expm1(rng_vol * scale)))
    order = np.argsort(-p, kind="stable")[:5]
    return Prediction(
        symbol=sym,
        last_ts=bars["ts"][-1],
        last_close=float(last_close),
        scale=float(scale),
        p_close_up=p_up,
        # A gap is "up"/"down" only beyond the words' "no gap" band, so the three agree
        # with the descriptions (a "no gap" token whose representative is +0.01 is no gap).
        p_gap_up=float(p[gap >= NO_GAP].sum()),
        p_gap_down=float(p[gap <= -NO_GAP].sum()),
        exp_body_vol=float(p @ body),
        exp_body_pct=float(100 * (p @ np.expm1(body * scale))),
        exp_range_vol=exp_rng_vol,
        exp_range_pct=exp_rng_pct,
        top=[Candidate(int(i + N_SPECIAL), float(p[i]), tok.describe(int(i + N_SPECIAL)))
             for i in order],
        probs=p,
        context_candles=int(min(toks.size, ctx)),
        interval=facts.interval,
        in_training=in_training,
        decimals=price_decimals(bars.select("open", "high", "low", "close").to_numpy()),
        notes=notes,
    )


@dataclass
class Calibration:
    """How well P(close up) scored on a split, as ``candletok evaluate`` measured it.

    ``brier_base`` is the Brier score of the constant ``base_rate``, the share of up moves
    in ``base_split`` (``train``: a number a forecaster could know beforehand, the same
    base rate the forecast itself is shown beside), so the model helps only if ``brier``
    is lower. ``probability`` says which numbers were scored: the model's raw P(up) or
    the calibrated ones (the map's name). ``skill_interval`` is evaluate's 95% block
    bootstrap interval of the Brier skill."""

    split: str
    n: int
    base_rate: float
    brier: float
    brier_base: float
    table: list[tuple[float, float, float, int]]  # (bin lo, mean predicted, observed, count)
    outcome: str = "close"  # "close": the real move over the horizon
    base_split: str = "train"
    probability: str = "raw"
    skill_interval: tuple[float, float] | None = None
    horizon: int = 1

    @property
    def skill(self) -> float:
        """Brier skill score: 1 - brier / brier_base (> 0: better than the base rate)."""
        return 1.0 - self.brier / self.brier_base if self.brier_base > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """The reliability table and the scores, as JSON-ready values (:data:`UNITS`)."""
        skill = self.skill
        lo, hi = self.skill_interval or (None, None)
        return {
            "split": self.split, "n": self.n, "outcome": self.outcome, "horizon": self.horizon,
            "probability": self.probability,
            "base_rate": self.base_rate, "base_rate_split": self.base_split,
            "brier": self.brier, "brier_base": self.brier_base,
            "skill": skill if np.isfinite(skill) else None,
            "skill_lo": lo, "skill_hi": hi, "measured_by": "candletok evaluate",
            "bins": [{"from": lo, "mean_predicted": mp, "observed": of, "count": cnt}
                     for lo, mp, of, cnt in self.table],
        }


def train_base_rate(model: CandleGPT, ds: SplitSource) -> float | None:
    """The train split's share of up closes: recorded in the checkpoint
    (``train_base_rate``), else read from the dataset folder's train split; None when
    neither can tell (an older checkpoint and a bare in-memory split)."""
    rate = FitFacts.of(getattr(model, "meta", None)).train_base_rate
    if rate is not None or ds.root is None:
        return rate
    try:
        rows = read_split(ds.root, "train")
    except (OSError, CandletokError) as exc:  # no train split there: the rate is unknown
        say_fallback(log, f"the train base rate is unknown: the checkpoint does not record "
                     f"it and {ds.root}'s train split cannot be read ({exc})")
        return None
    if rows.height == 0 or not {"close", "prev_close"} <= set(rows.columns):
        return None
    up = (rows["close"] > rows["prev_close"]).drop_nulls()
    return float(up.mean()) if up.len() else None


def measured_check(calibration: dict[str, Any] | None, horizon: int = 1,
                   forecaster: str | None = None) -> Calibration | None:
    """The test check of P(close up) that ``candletok evaluate`` recorded in the
    calibration file: the very Brier scores, skill interval and reliability table its
    direction table printed for the model's own forecaster (``model_forecaster``) at
    ``horizon``. None when evaluate never measured it (or the file predates the record);
    the caller says so. There is no second scoring loop: what ``predict`` shows beside an
    answer is what evaluate scored."""
    cal = calibration or {}
    ev = cal.get("evaluated") or {}
    name = forecaster or model_forecaster(calibration)
    rec = ((ev.get("p_up") or {}).get(name) or {}).get(str(horizon))
    if not isinstance(rec, dict) or rec.get("brier") is None:
        return None
    sk = rec.get("skill") or {}
    lo, hi = sk.get("lo"), sk.get("hi")
    kind = str(rec.get("calibration") or "-")
    return Calibration(
        split=str(ev.get("split", "test")), n=int(rec.get("n", 0)),
        base_rate=float(rec.get("base_rate", float("nan"))), brier=float(rec["brier"]),
        brier_base=float(rec.get("brier_base", float("nan"))),
        table=[(float(a), float(b), float(c), int(d)) for a, b, c, d in
               rec.get("reliability") or []],
        probability="raw" if kind in ("-", "") or kind.startswith("none")
        else f"calibrated ({kind})",
        skill_interval=None if lo is None or hi is None else (float(lo), float(hi)),
        horizon=horizon)


