"""Stop and target odds scored in the replay: P(+k vol units before -k) and P(-k before
+k) within h bars, forecast at every origin, against what the real bars did.

For each origin t of the evaluated split, each ``k`` (a multiple of the volatility unit
known at t's close, ``next_scale``: the EWMA of the log true range, "ATR"-like) and each
horizon h:

* the **outcome** comes from the real forward bars' highs and lows
  (:func:`~candletok.evaluation.odds.forward_outcomes`). A bar that touches both
  barriers counts as the stop first: the bars do not say which came first, and a trader
  cannot assume the target filled first (the conservative rule; the history holds no
  opens, so no gap decides it either);
* the **reference** is the driftless random walk with the same EWMA volatility, in
  closed form (:func:`~candletok.evaluation.odds.random_walk_odds`), at every origin;
* **CandleGPT's** odds are counted on its sampled paths (the ones its h > 1 forecasts
  already drew, so they cost nothing more) with the same touch rule, at its seeded
  subsample of origins, and calibrated on val (:func:`~candletok.evaluation.calibrate.
  choose_map`, the P(up) machinery: time-blocked CV, the base rate unless a map beats
  it); on ``split="val"`` the calibrated numbers are out-of-fold.

Each row has the Brier score, the random walk's on the same origins beside it, the skill
against it with a 95% block bootstrap over dates, and a reliability table. The random
walk's own row is scored against the train frequency of the event (the constant a
trader would otherwise use), so the reference has a baseline beside it too. The fitted
maps are saved in the calibration file as ``odds_<event>_k<k>`` per horizon, in the
``p_up`` entries' form, so ``predict --odds`` applies them with
:func:`~candletok.evaluation.calibrate.calibrate_probability`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from candletok.core.errors import CandletokError
from candletok.evaluation import scores as sc
from candletok.evaluation.calibrate import choose_map
from candletok.evaluation.forecasters import pick_subsample
from candletok.evaluation.history import History
from candletok.evaluation.odds import (
    forward_outcomes,
    random_walk_odds,
    sigma_from_scale,
    touch_weights,
)
from candletok.evaluation.rows import Boot, _by_date, _est, _skill_verdict
from candletok.evaluation.scores import Estimate

#: The barrier multiples ``evaluate`` scores by default (ATR-like units).
DEFAULT_KS: tuple[float, ...] = (1.0, 2.0)
#: The two events scored: the target (+k) touched first, the stop (-k) touched first.
EVENTS: tuple[str, ...] = ("target", "stop")
WALK = "random walk"
#: The touch rule of the scored outcomes and of the sampled paths' odds.
RULE = "stop"


def odds_quantity(event: str, k: float) -> str:
    """The calibration file's key of one event and k: ``odds_target_k1``."""
    return f"odds_{event}_k{k:g}"


def check_ks(ks: Sequence[float]) -> tuple[float, ...]:
    """Positive, finite, distinct multiples in the order given; one sentence otherwise."""
    out = tuple(dict.fromkeys(float(k) for k in ks))
    if any(not np.isfinite(k) or k <= 0 for k in out):
        raise CandletokError(f"Barrier multiples must be positive, e.g. odds=(1, 2) (got "
                             f"{', '.join(map(str, ks))}).")
    return out


@dataclass
class OddsScoreRow:
    """One forecaster's P(event) for one k and h: its Brier score with the random walk's
    (and the train frequency's) on the same origins beside it, and its skill."""

    forecaster: str
    event: str  # "target": +k touched first; "stop": -k touched first
    k: float
    horizon: int
    n: int
    dates: int
    brier: Estimate
    brier_walk: float
    brier_base: float  # the train frequency of the event, same origins
    skill: Estimate  # vs the random walk (the walk's own row: vs the train frequency)
    skill_raw: Estimate | None
    calibration: str
    mean_p: float
    observed: float
    reliability: list[tuple[float, float, float, int]] = field(default_factory=list)
    verdict: str = ""
    reference: bool = False
    #: val chose the train frequency itself (the paths showed no skill there): the row
    #: scores a constant, not the model's odds
    base_map: bool = False


@dataclass
class OddsScores:
    """Every scored row, the maps to save (per quantity and horizon, the ``p_up``
    entries' form) and notes in words."""

    rows: list[OddsScoreRow] = field(default_factory=list)
    saved: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def walk_odds(hist: History, rows: np.ndarray, ks: Sequence[float], horizon: int
              ) -> np.ndarray:
    """(K, n) the random walk's P(+k first) at ``rows`` (= P(-k first): it is driftless and
    the barriers are symmetric), sigma from each origin's scale."""
    u = hist.next_scale[np.asarray(rows, dtype=np.int64)]
    out = np.empty((len(ks), u.size))
    for i, k in enumerate(ks):
        out[i] = random_walk_odds(k * u, k * u, sigma_from_scale(u), horizon).p_up \
            if u.size else np.zeros(0)
    return out


def path_event_odds(logs: np.ndarray, unit: np.ndarray, ks: Sequence[float], horizon: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(K, n) P(+k first) and P(-k first) counted on sampled paths ``logs`` (n, 4, S, H:
    ln(price / entry) of open, high, low, close) by the scored touch rule, each origin's
    barriers in its own ``unit``."""
    n, _, S, _ = logs.shape
    K = len(ks)
    lp = np.exp(logs[..., :horizon])
    shape = (K, n, S, horizon)
    o, h, lo, c = (np.broadcast_to(lp[None, :, j], shape) for j in range(4))
    ku = np.asarray(ks, dtype=np.float64)[:, None] * np.asarray(unit)[None, :]  # (K, n)
    tgt = np.broadcast_to(np.exp(ku)[..., None], (K, n, S))
    stp = np.broadcast_to(np.exp(-ku)[..., None], (K, n, S))
    w_up, w_down, _ = touch_weights(o, h, lo, c, tgt, stp, RULE)
    return w_up.mean(-1), w_down.mean(-1)


def _row(name: str, event: str, k: float, h: int, p: np.ndarray, y: np.ndarray,
         ref: np.ndarray, base: float, dates: np.ndarray, boot: Boot, kind: str,
         raw: np.ndarray | None, vs: str) -> OddsScoreRow:
    """Score ``p`` against outcomes ``y`` beside the reference ``ref`` (same origins)."""
    lb = sc.brier(np.full(y.size, base), y)
    a, b, c, d = _by_date(dates, sc.brier(p, y), sc.brier(ref, y), lb)
    kw = boot.kw(d.size, h)
    skill = sc.skill_estimate(a, b, **kw)
    skill_raw = None
    if raw is not None:
        r, _ = _by_date(dates, sc.brier(raw, y))
        skill_raw = sc.skill_estimate(r, b, **kw)
    tot = max(float(d.sum()), 1.0)
    return OddsScoreRow(
        forecaster=name, event=event, k=float(k), horizon=int(h), n=int(y.size),
        dates=int(d.size), brier=sc.ratio_estimate(a, d, **kw),
        brier_walk=float(b.sum() / tot), brier_base=float(c.sum() / tot), skill=skill,
        skill_raw=skill_raw, calibration=kind, mean_p=float(p.mean()) if p.size else np.nan,
        observed=float(y.mean()) if y.size else np.nan,
        reliability=sc.reliability(p, y), verdict=_skill_verdict(skill, vs))


def score_odds(hist: History, gpt: Any, split: str, horizons: Sequence[int],
               ks: Sequence[float], folds: int, boot: Boot) -> OddsScores:
    """Score the random walk (every origin) and, when ``gpt`` (a
    :class:`~candletok.evaluation.gptcast.GPTForecaster`) is given, CandleGPT's sampled
    paths (its subsample of origins), for every event, k and horizon; fit CandleGPT's
    maps on val. See the module doc."""
    ks = check_ks(ks)
    out = OddsScores()
    dates_all = hist.ts
    for h in horizons:
        tr, _ = hist.origins("train", h)
        ev, _ = hist.origins(split, h)
        if ev.size == 0:
            continue
        y_tr = forward_outcomes(hist, tr, ks, h, RULE) if tr.size else None
        y_ev = forward_outcomes(hist, ev, ks, h, RULE)
        w_ev = walk_odds(hist, ev, ks, h)
        bases = {e: (y_tr[j].mean(axis=1) if y_tr is not None else np.full(len(ks), 0.5))
                 for j, e in enumerate(EVENTS)}
        for j, e in enumerate(EVENTS):
            for i, k in enumerate(ks):
                base = float(bases[e][i])
                row = _row(WALK, e, k, h, w_ev[i], y_ev[j][i], np.full(ev.size, base), base,
                           dates_all[ev], boot, "-", None, "the train frequency")
                row.reference = True
                row.verdict = f"reference; {row.verdict}"
                out.rows.append(row)
        if gpt is None:
            continue
        val, _ = hist.origins("val", h)
        sub_val = pick_subsample(hist, val, gpt.subsample, gpt.seed)
        sub_ev = sub_val if split == "val" else pick_subsample(hist, ev, gpt.subsample,
                                                                gpt.seed)
        if sub_val.size == 0 or sub_ev.size == 0:
            out.notes.append(f"stop/target odds of {gpt.name} at h={h}: no val origins to "
                             "calibrate on.")
            continue
        pv = path_event_odds(gpt.path_logs(hist, sub_val), hist.next_scale[sub_val], ks, h)
        yv = forward_outcomes(hist, sub_val, ks, h, RULE)
        wv = walk_odds(hist, sub_val, ks, h)
        pe = pv if split == "val" else path_event_odds(
            gpt.path_logs(hist, sub_ev), hist.next_scale[sub_ev], ks, h)
        ye = yv if split == "val" else forward_outcomes(hist, sub_ev, ks, h, RULE)
        we = wv if split == "val" else walk_odds(hist, sub_ev, ks, h)
        for j, e in enumerate(EVENTS):
            for i, k in enumerate(ks):
                base = float(bases[e][i])
                ch = choose_map(pv[j][i], yv[j][i], dates_all[sub_val], base, folds)
                if split == "val":
                    p_cal, kind = ch.oof, f"{ch.map.kind}, out-of-fold"
                else:
                    p_cal, kind = ch.map.apply(pe[j][i]), ch.map.describe()
                row = _row(gpt.name, e, k, h, p_cal, ye[j][i], we[i], base,
                           dates_all[sub_ev], boot, kind, pe[j][i], "the random walk")
                if ch.map.kind == "shrink" and ch.map.params.get("lam") == 0.0:
                    row.base_map = True
                    row.verdict = ("no skill in the paths: val chose the train frequency, "
                                   f"which: {row.verdict}")
                out.rows.append(row)
                vrow = _row(gpt.name, e, k, h, ch.oof, yv[j][i], wv[i], base,
                            dates_all[sub_val], boot, "", pv[j][i], "the random walk")
                out.saved.setdefault(odds_quantity(e, k), {})[str(h)] = {
                    "map": ch.map.to_dict(), "cv_brier": ch.cv_brier, "base_rate": base,
                    "n": int(sub_val.size), "val_skill": _est(vrow.skill),
                    "val_skill_raw": _est(vrow.skill_raw) if vrow.skill_raw else None,
                    "reference": WALK, "rule": RULE}
    if gpt is not None:
        out.notes.append(
            f"stop/target odds: {gpt.name}'s from its {gpt.samples} sampled paths at up to "
            f"{gpt.subsample} origins per split (the paths its h > 1 forecasts drew), "
            "calibrated on val, skill vs the driftless random walk with the EWMA "
            "volatility on the same origins; a bar touching both barriers counts as the "
            "stop first.")
    return out


def odds_verdicts(rows: Sequence[OddsScoreRow]) -> list[str]:
    """One plain sentence on whether the non-reference odds beat the random walk."""
    learned = [r for r in rows if not r.reference]
    if not learned:
        return []
    beat = [r for r in learned if r.skill.lo > 0 and not r.base_map]
    worse = [r for r in learned if r.skill.hi < 0]
    if not beat:
        tail = f" ({len(worse)} of them worse)" if worse else ""
        return [f"stop/target odds: no skill over the random walk in any of the "
                f"{len(learned)} scored events, k and horizons{tail}: the walk's closed form "
                "is the better guide, not the model's odds."]
    shown = ", ".join(f"{r.event} k={r.k:g} h={r.horizon}" for r in beat)
    # a row whose map is the train frequency scores a constant: not the model's skill
    return [f"stop/target odds beat the random walk (whole 95% interval above zero) only "
            f"for: {shown}; {len(learned) - len(beat)} of {len(learned)} show no skill."]
