"""The answer never worse than its best reference on val: which forecaster gives
``predict``'s range, quantiles and P(up).

Why: on daily bars the model can lose to a four-coefficient HAR on the range, or to the
base rate on direction; showing its number anyway would show a worse answer than one
the harness already has. So for each quantity the forecaster with the best val score
wins (QLIKE of the next range, CRPS of the forward return, Brier of the calibrated
P(up), the last out-of-fold), among those the
:class:`~candletok.predict.predictor.Predictor` can rebuild (the default forecasters
and the model's own; the analogues need the search index and stay out), compared on
the val origins all of them forecast. Only val decides: the evaluated split's figures
are recorded beside the choice, never used for it (a test changes the test bars and
checks the choice stays). The model's own forecaster wins ties.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from candletok.evaluation import scores as sc
from candletok.evaluation.forecasters import CRPS_LEVELS, roles_of
from candletok.evaluation.references import default_forecasters

__all__ = ["QUANTITIES", "choose", "rebuildable", "winner_words"]

QUANTITIES: dict[str, str] = {"range": "QLIKE", "quantiles": "CRPS", "p_up": "Brier"}
"""What each answer is chosen by (lower is better)."""


def rebuildable(fcs: Sequence[Any]) -> list[Any]:
    """The forecasters a Predictor can rebuild from a checkpoint and its dataset: the
    default ones (by class) and the one declaring the ``answer`` role."""
    kinds = tuple({type(f) for f in default_forecasters()})
    return [f for f in fcs if isinstance(f, kinds) or "answer" in roles_of(f)]


def _losses(quantity: str, panel: Any, f: Any, choices: Mapping[str, Any],
            consts: Mapping[str, tuple[float, float]]) -> tuple[np.ndarray, np.ndarray] | None:
    """(origin rows, loss) of one forecaster for ``quantity`` on one panel, or None."""
    fc = panel.fc.get(f.name)
    if fc is None:
        return None
    pos = panel.pos(f.name)
    if quantity == "range":
        if f.name not in consts or fc.range_sq is None or "range" not in panel.target:
            return None
        r = panel.target["range"][pos]
        ok = (r > 0) & np.isfinite(fc.range_sq) & (fc.range_sq > 0)
        return fc.rows[ok], sc.qlike(consts[f.name][1] * fc.range_sq[ok], r[ok] ** 2)
    if quantity == "quantiles":
        if fc.qgrid is None:
            return None
        y = panel.target["ret"][pos]
        ok = np.isfinite(fc.qgrid).all(axis=1)
        return fc.rows[ok], sc.crps_from_quantiles(fc.qgrid[ok], y[ok], CRPS_LEVELS)
    if fc.p_up is None:
        return None
    y = panel.target["up"][pos]
    p = fc.p_up
    if f.learned:
        ch = choices.get(f.name, {}).get(panel.horizon)
        if ch is None:
            return None
        p = ch.oof  # out-of-fold on val: no val outcome scored by a map that saw it
    return fc.rows, sc.brier(p, y)


def _test_value(report: Any, quantity: str, name: str, h: int) -> float | None:
    """The evaluated split's figure of ``name`` for ``quantity`` at ``h`` (report rows)."""
    if report is None:
        return None
    if quantity == "range":
        got = [r.qlike.value for r in report.range if r.forecaster == name]
    elif quantity == "quantiles":
        got = [r.crps.value for r in report.quantiles if r.forecaster == name
               and r.horizon == h and r.crps is not None]
    else:
        got = [r.brier.value for r in report.direction if r.forecaster == name
               and r.horizon == h]
    return float(got[0]) if got and math.isfinite(got[0]) else None


def choose(val: Mapping[int, Any], fcs: Sequence[Any], choices: Mapping[str, Any],
           consts: Mapping[str, tuple[float, float]], dates: np.ndarray,
           report: Any = None) -> dict[str, Any]:
    """Per quantity and horizon, the forecaster with the lowest mean val loss on the val
    origins every candidate forecast, beside the model's own on the same origins and the
    winner's figure on the evaluated split (``report``). Adds one note per choice to
    ``report.notes``."""
    cands = rebuildable(fcs)
    model = next((f.name for f in cands if "answer" in roles_of(f)), None)
    out: dict[str, Any] = {}
    for quantity, score in QUANTITIES.items():
        for h, panel in sorted(val.items()):
            if quantity == "range" and h != 1:
                continue
            got = {f.name: v for f in cands
                   if (v := _losses(quantity, panel, f, choices, consts)) is not None
                   and v[0].size}
            if not got:
                continue
            common = None
            for rows, _ in got.values():
                common = rows if common is None else np.intersect1d(common, rows)
            assert common is not None
            if common.size == 0:
                continue
            means = {n: float(np.mean(loss[np.searchsorted(rows, common)]))
                     for n, (rows, loss) in got.items()}
            best = min(means, key=lambda n: (means[n], n != model, n))
            rec = {"forecaster": best, "score": score, "value": means[best], "n":
                   int(common.size), "model": model,
                   "model_value": means.get(model) if model else None,
                   "val": means, "test": _test_value(report, quantity, best, h),
                   "model_test": _test_value(report, quantity, model, h) if model else None}
            out.setdefault(quantity, {})[str(h)] = rec
            if report is not None:
                split = getattr(report, "split", "test")
                t = rec["test"]
                report.notes.append(
                    f"{winner_words(quantity, rec, h)}; on {split} {score} "
                    f"{'-' if t is None else f'{t:.4g}'}"
                    + ("" if best == model or rec["model_test"] is None
                       else f" vs {model} {rec['model_test']:.4g}") + ".")
    return out


def winner_words(quantity: str, rec: Mapping[str, Any], h: int) -> str:
    """``range: HAR-RV, chosen on val (QLIKE 0.512 vs CandleGPT 0.534)``."""
    what = {"range": "range", "quantiles": f"quantiles h={h}", "p_up": f"P(up) h={h}"}[quantity]
    mv = rec.get("model_value")
    vs = ("" if rec.get("model") in (None, rec["forecaster"]) or mv is None
          else f" vs {rec['model']} {mv:.4g}")
    return (f"{what}: {rec['forecaster']}, chosen on val ({rec['score']} "
            f"{rec['value']:.4g}{vs}, {rec['n']} origins)")
