"""The val winner's numbers in the Predictor's answer, and the conformal intervals.

Why a module of its own: :class:`~candletok.predict.predictor.Predictor` answers with the
model's forecaster; ``candletok evaluate`` records, per quantity, which forecaster won on
val (:mod:`~candletok.evaluation.winner`) and each one's conformal intervals
(:mod:`~candletok.evaluation.conformal`). This module rebuilds the winner (the same class,
fit on the same dataset), forecasts with it at the answer's origin, and turns that into
the shown numbers through :func:`~candletok.evaluation.forecastfile.shown_values`, so the
answer at T is still the row at T of ``evaluate --forecasts`` for that forecaster.

The winner's train-learned figures (train return quantiles, pooled over every symbol) need
the dataset's train rows beside the answered series: :func:`answer_history` puts the
series up to T and every other symbol's train rows into one history, with each row's
split, the history ``evaluate`` replayed restricted to what was known at T.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl

from candletok.core.fallback import say_fallback
from candletok.evaluation.calibrate import CalibrationMap, model_forecaster, saved_fit
from candletok.evaluation.conformal import saved_offsets
from candletok.evaluation.forecastfile import shown_values
from candletok.evaluation.history import SPLIT_CODE, History
from candletok.evaluation.references import default_forecasters
from candletok.evaluation.winner import QUANTITIES, winner_words

log = logging.getLogger(__name__)

__all__ = ["FIELDS", "answer_history", "interval_fit", "override", "shown_at", "winner_of"]

FIELDS: dict[str, tuple[str, ...]] = {
    "range": ("range_raw", "range", "range_lo80", "range_hi80", "range_lo90", "range_hi90"),
    "quantiles": ("q05", "q10", "q50", "q90", "q95", "lo80", "hi80", "lo90", "hi90"),
    "p_up": ("p_up_raw", "p_up"),
}
"""The shown columns each chosen quantity brings from its forecaster."""

NO_FILE = ("no calibration beside the model, so no val winner: the range, quantiles and "
           "P(up) come from {model}, not from the forecaster that wins on val (run "
           "`candletok evaluate DIR --model FILE` to choose it)")


def answer_history(full: History, cut: History) -> History:
    """One history of ``cut``'s series (the answered bars up to T) and every other
    symbol's train rows from ``full`` (the dataset's), each row with its dataset split
    (a bar the dataset does not hold: test), sorted by (symbol, ts) as ``evaluate``'s."""
    code = pl.DataFrame({"symbol": full.symbol.astype(str), "ts": full.ts,
                         "code": full.split.astype(np.int8)})
    got = pl.DataFrame({"symbol": cut.symbol.astype(str), "ts": cut.ts}).join(
        code, on=["symbol", "ts"], how="left", maintain_order="left")
    cut_split = got["code"].fill_null(SPLIT_CODE["test"]).to_numpy().astype(np.int8)
    other = (full.split == SPLIT_CODE["train"]) & ~np.isin(full.symbol, cut.symbols)
    parts = [(full, np.flatnonzero(other), full.split), (cut, np.arange(cut.n), cut_split)]
    names = ("symbol", "ts", "token", "prev_close", "high", "low", "close", "scale",
             "next_scale")
    cols = {k: np.concatenate([getattr(h, k)[i] for h, i, _ in parts]) for k in names}
    split = np.concatenate([s[i] for _, i, s in parts])
    order = np.lexsort((cols["ts"], cols["symbol"]))
    cols = {k: v[order] for k, v in cols.items()}
    split = split[order]
    sym = cols["symbol"]
    n = sym.size
    new = np.ones(n, bool)
    new[1:] = sym[1:] != sym[:-1]
    starts = np.flatnonzero(new).astype(np.int64)
    return History(tok=full.tok, split=split, series=(np.cumsum(new) - 1).astype(np.int64),
                   starts=starts, ends=np.append(starts[1:], n).astype(np.int64),
                   symbols=[str(s) for s in sym[starts]], **cols)


def winner_of(calibration: dict[str, Any] | None, quantity: str, h: int
              ) -> dict[str, Any] | None:
    """The recorded val winner of ``quantity`` at ``h`` (None when none was recorded)."""
    rec = (((calibration or {}).get("winners") or {}).get(quantity) or {}).get(str(h))
    return rec if isinstance(rec, dict) and rec.get("forecaster") else None


def interval_fit(calibration: dict[str, Any] | None, name: str, h: int, symbol: str,
                 ts: int) -> tuple[Any, Any, str | None]:
    """``name``'s saved conformal fit at ``h`` and ACI's offset at (``symbol``, ``ts``)."""
    entry = saved_fit(calibration, name, h, "intervals")
    walks = (((calibration or {}).get("aci_walk") or {}).get(name) or {}).get(str(h))
    return saved_offsets(entry, walks, symbol, ts)


class Rebuilt:
    """The default forecasters, each fit on the dataset history on first use (by name:
    the one of that name, else the n-gram, whose name is its order, known once fit)."""

    def __init__(self, full: History) -> None:
        self.full = full
        self.fitted: dict[str, Any] = {}

    def get(self, name: str) -> Any | None:
        if name not in self.fitted:
            fresh = default_forecasters()
            f = next((f for f in fresh if f.name == name), None)
            for g in [f] if f is not None else [g for g in fresh if g.name == "n-gram"]:
                g.fit(self.full)  # only the one asked for: GARCH's fit takes seconds
                self.fitted[g.name] = g
        return self.fitted.get(name)


def shown_at(cal: dict[str, Any] | None, name: str, h: int, fc: Any, hist: History,
             cmap: Any, range_a: float | None, calibrate: bool
             ) -> tuple[dict[str, np.ndarray | None], list[str]]:
    """:func:`shown_values` of every origin of ``fc`` (rows of ``hist``), each with its
    own conformal offset (ACI's differs by symbol and origin), and what was said about
    an offset that is not the walk's own."""
    parts: list[dict[str, np.ndarray | None]] = []
    said: list[str] = []
    for k, r in enumerate(fc.rows.tolist()):
        fit, aci, why = interval_fit(cal, name, h, str(hist.symbol[r]), int(hist.ts[r]))
        if why:
            said.append(why)
        parts.append(shown_values(fc.select(np.array([k])), cmap, range_a, calibrate,
                                  intervals=fit, aci=aci))
    if not parts:
        return shown_values(fc, cmap, range_a, calibrate), said
    out: dict[str, np.ndarray | None] = {}
    for col in parts[0]:
        vals = [p[col] for p in parts]
        out[col] = (None if all(v is None for v in vals) else np.concatenate(
            [np.full(1, np.nan) if v is None else v for v in vals]))
    return out, said


def override(pred: Any, hist: History | Callable[[], History], rows: np.ndarray, h: int,
             per: dict[str, np.ndarray | None]) -> tuple[list[str], dict[str, str]]:
    """Replace, in ``per`` (the model's shown values at ``rows``), each quantity whose val
    winner is another forecaster by that forecaster's shown values (its own P(up) map
    and range constant, as ``evaluate --forecasts`` writes them), and return the words
    naming every choice and, per quantity, the forecaster it came from. ``hist`` may be
    a function that builds the history: a live update calls it only where a winner is
    another forecaster (building the whole series' history is O(n) per bar)."""
    cal = pred.calibration
    model = model_forecaster(cal)
    src = dict.fromkeys(QUANTITIES, model)
    if cal is None:
        say_fallback(log, NO_FILE.format(model=model))
        return [f"answers from {model}: no val winner recorded (no calibration)"], src
    words: list[str] = []
    joint: History | None = None
    fit_syms = cal.get("symbols")
    for q in QUANTITIES:
        if q == "range" and h != 1:
            continue
        rec = winner_of(cal, q, h)
        if rec is None:
            words.append(f"{q}: {model}, no val winner recorded at h={h}")
            continue
        name = str(rec["forecaster"])
        if name == model:
            words.append(winner_words(q, rec, h))
            continue
        if not isinstance(hist, History):
            hist = hist()
        syms = [str(hist.symbol[r]) for r in rows]
        if fit_syms is not None and any(s not in fit_syms for s in syms):
            words.append(f"{q}: {model}; the val winner {name} was chosen on other symbols")
            continue
        rebuilt = getattr(pred, "_rebuilt", None)
        if rebuilt is None:
            rebuilt = Rebuilt(pred.history)
            pred._rebuilt = rebuilt
        f = rebuilt.get(name)
        if joint is None:
            joint = answer_history(pred.history, hist)
        # the answered origins in the joint history: each series' last row there
        at = np.searchsorted(joint.symbols, syms)
        jrows = (joint.ends[at] - 1).astype(np.int64)
        fc = None if f is None else f.forecast(joint, jrows, h)
        if fc is None or fc.rows.size != jrows.size:
            say_fallback(log, f"the val winner of the {q} at h={h}, {name}, has no forecast "
                         f"here; {model}'s is shown")
            words.append(f"{q}: {model} (the val winner {name} has no forecast here)")
            continue
        a = (((cal.get("forecasters") or {}).get(name) or {}).get("range") or {}).get("a")
        fit = saved_fit(cal, name, h)
        cmap = None if fit is None else CalibrationMap.from_dict(fit["map"])
        vals, said = shown_at(cal, name, h, fc, joint, cmap, None if a is None else float(a),
                              calibrate=bool(f.learned))
        for k in FIELDS[q]:
            per[k] = vals.get(k)
        src[q] = name
        words.append(winner_words(q, rec, h) + "".join(f"; {w}" for w in dict.fromkeys(said)))
    return words, src


def p_up_map(calibration: dict[str, Any] | None, name: str, h: int) -> str | None:
    """The described map of ``name``'s P(up) at ``h``, or None."""
    fit = saved_fit(calibration, name, h)
    return None if fit is None else CalibrationMap.from_dict(fit["map"]).describe()
