"""Stop and target odds as ``predict --odds`` shows them: CandleGPT's sampled paths of
the latest bars, the odds counted on them beside the driftless random walk's closed form,
and, where ``evaluate`` scored this k and horizon, the calibrated odds with their val skill
over the random walk.

The math (the closed form, the touch rule, the odds counted on paths) lives in
:mod:`candletok.evaluation.odds`, the one home the harness scores and this module shows;
this module samples the paths and assembles the rows (:class:`OddsRow`,
:func:`odds_rows`); :func:`symbol_odds` is the two together, the one function
``predict --odds`` and ``watch --odds`` call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from candletok.core.errors import ModelError
from candletok.evaluation.calibrate import CalibratedProbability, calibrate_probability
from candletok.evaluation.odds import Odds, path_odds, random_walk_odds, sigma_from_scale
from candletok.evaluation.oddsscore import EVENTS, RULE, odds_quantity

#: Said beside every odds table whose k and horizon ``evaluate`` has not scored.
NOT_SCORED = ("These odds come straight from the sampled paths: no calibration beside the "
              "model scores this k and horizon (run `candletok evaluate --odds` with them), "
              "so no skill over the random walk beside them has been shown.")


@dataclass
class OddsRow:
    """One k's odds from the paths beside the random walk's, for tables and JSON."""

    k: float
    horizon: int
    paths: Odds
    walk: Odds
    #: per event ("target", "stop"): the paths' odds by the scored touch rule through
    #: the map ``evaluate`` fit on val, or kind "none" with the reason
    calibrated: dict[str, CalibratedProbability] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        p, w = self.paths, self.walk

        def one(name: str) -> dict[str, float]:
            lo, hi = p.intervals[name]
            return {"p": float(getattr(p, name)), "lo": float(lo), "hi": float(hi),
                    "random_walk": float(getattr(w, name))}

        return {"k": self.k, "horizon": self.horizon, "paths": p.n_paths,
                "target_first": one("p_up"), "stop_first": one("p_down"),
                "neither": one("p_neither"),
                "ambiguous_share": float(p.ambiguous) if p.ambiguous is not None else None,
                "calibrated": {e: cp.to_dict() for e, cp in self.calibrated.items()},
                "uncalibrated_reason": next((cp.reason for cp in self.calibrated.values()
                                             if cp.reason), None)}


def odds_rows(paths: dict[str, np.ndarray], entry: float, scale: float,
              ks: Sequence[float], horizon: int, calibration: dict[str, Any] | None = None,
              symbol: str | None = None, interval: str | None = None) -> list[OddsRow]:
    """Per ``k``: the paths' odds of +k before -k scale units (and the reverse, and
    neither) within ``horizon`` bars, beside the driftless random walk with sigma from the
    same scale (:func:`sigma_from_scale`); and, from ``calibration`` (the file ``evaluate``
    writes), each event's calibrated odds: the paths' odds counted by the rule
    ``evaluate`` scored (a bar touching both barriers is the stop) through the map fit on
    val for this k and horizon (none where ``evaluate`` did not score them)."""
    kk = np.asarray(list(ks), dtype=np.float64)
    if kk.size == 0 or np.any(kk <= 0):
        raise ModelError("Give barrier multiples k > 0, e.g. --odds 1,2.")
    po = path_odds(paths, entry, kk * scale, kk * scale, horizon)
    rw = random_walk_odds(kk * scale, kk * scale, sigma_from_scale(scale), horizon)
    scored = path_odds(paths, entry, kk * scale, kk * scale, horizon, ambiguous=RULE)
    rows = []
    for i, k in enumerate(kk):
        p = Odds(po.p_up[i], po.p_down[i], po.p_neither[i], po.n_paths,
                 None if po.ambiguous is None else po.ambiguous[i],
                 {name: (lo[i], hi[i]) for name, (lo, hi) in po.intervals.items()})
        w = Odds(rw.p_up[i], rw.p_down[i], rw.p_neither[i])
        cal = {e: calibrate_probability(float(q[i]), calibration, None, int(horizon),
                                        odds_quantity(e, float(k)), symbol=symbol,
                                        interval=interval)
               for e, q in zip(EVENTS, (scored.p_up, scored.p_down), strict=True)}
        rows.append(OddsRow(float(k), int(horizon), p, w, cal))
    return rows


def calibrated_cell(row: OddsRow) -> str:
    """The calibrated target and stop odds of one row with the val skill of each over the
    random walk, ``-`` where ``evaluate`` fit no map for this k and horizon."""
    cps = [row.calibrated.get(e) for e in EVENTS]
    if not all(cp is not None and cp.calibrated for cp in cps):
        return "-"
    return "; ".join(f"{e} {cp.value:.1%} ({cp.skill_text()})"  # type: ignore[union-attr]
                     for e, cp in zip(EVENTS, cps, strict=True))


def odds_note(rows: Sequence[OddsRow]) -> str:
    """What the odds are worth, in one sentence: not scored (:data:`NOT_SCORED`), or
    calibrated on val with or without skill over the random walk shown there."""
    cps = [cp for r in rows for cp in r.calibrated.values() if cp.calibrated]
    if not cps:
        why = next((cp.reason for r in rows for cp in r.calibrated.values() if cp.reason),
                   None)
        return NOT_SCORED + (f" ({why}.)" if why else "")
    skill = [cp for cp in cps if cp.shows_skill]
    head = ("The calibrated odds went through maps fit on val by `candletok evaluate` "
            "(paths counted with a bar touching both barriers as the stop); ")
    if not skill:
        return head + ("none showed skill over the random walk on val: trust the walk's "
                       "closed form, not the model's odds.")
    return head + (f"{len(skill)} of {len(cps)} showed skill over the random walk on val "
                   "(whole interval above zero).")


def parse_ks(text: str) -> list[float]:
    """``"1,2"`` -> [1.0, 2.0]; one clear sentence for anything else."""
    try:
        ks = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        ks = []
    if not ks or any(not np.isfinite(k) or k <= 0 for k in ks):
        raise ModelError(f"--odds takes positive volatility multiples separated by commas, "
                         f"e.g. --odds 1,2 (got {text!r}).")
    return ks


def sample_paths(model: Any, tok: Any, bars: Any, horizon: int, samples: int = 500,
                 seed: int = 0, temperature: float = 1.0,
                 exchange: str | None = "auto") -> tuple[dict[str, np.ndarray], float, float]:
    """``samples`` CandleGPT continuations of ``horizon`` candles after the last bar of
    ``bars`` (one symbol, canonical frame), rebuilt as OHLC paths from its last close with
    the causal scale; returns the paths, the last close and the scale the next candle sees
    (the vol unit the barriers are multiples of). Torch loads here, not on import."""
    import torch

    from candletok.core.ids import BOS
    from candletok.predict.predict import series_calendar
    from candletok.tokenize.calendar import CalendarSpec
    from candletok.tokenize.exchange import future_times, resolve_exchange

    model.refuse_levels("predict --odds")
    if horizon < 1 or samples < 1:
        raise ModelError("Odds need a horizon of at least one bar and at least one path.")
    sym = str(bars["symbol"][0])
    enc = tok.encode(bars)
    if enc.height == 0:
        raise ModelError(f"{sym} has too few bars to encode; give it at least two bars.")
    toks = enc["token"].to_numpy().astype(np.int64)
    seq = np.concatenate([[BOS], toks])[-model.config.context:]
    fut = future_times(enc["ts"], horizon, model.calendar or CalendarSpec(),
                       resolve_exchange(sym, exchange or "none"))
    cal = series_calendar(model, enc["ts"], seq.size, horizon, fut.ts)
    idx = torch.from_numpy(seq)[None].repeat(samples, 1).to(model.device)
    g = torch.Generator(device=model.device).manual_seed(seed)
    with torch.no_grad():
        new = model.generate(idx, horizon, temperature=temperature, generator=g,
                             cal=None if cal is None else cal.repeat(samples, 1, 1))
    last_close, scale = tok.continuation_state(bars)[sym]
    paths = tok.rebuild_paths(new[:, seq.size:].cpu().numpy(), float(last_close), float(scale))
    return paths, float(last_close), float(scale)


def symbol_odds(model: Any, tok: Any, bars: Any, ks: Sequence[float], horizon: int,
                samples: int = 500, exchange: str | None = "auto",
                calibration: dict[str, Any] | None = None, interval: str | None = None,
                seed: int = 0) -> list[OddsRow]:
    """The stop and target odds of each k after the last bar of ``bars`` (one symbol):
    ``samples`` sampled continuations (:func:`sample_paths`, their bar times from
    ``exchange``) counted by :func:`odds_rows`, calibrated by ``calibration`` where
    ``evaluate`` scored this k and horizon. ``predict --odds`` and ``watch --odds`` both
    call this, so the two show the same odds on the same bars."""
    paths, close, scale = sample_paths(model, tok, bars, horizon, samples, seed=seed,
                                       exchange=exchange)
    return odds_rows(paths, close, scale, ks, horizon, calibration,
                     str(bars["symbol"][0]), interval)
