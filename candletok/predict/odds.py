"""Stop and target odds as ``predict --odds`` shows them: CandleGPT's sampled paths of
the latest bars, the odds counted on them beside the driftless random walk's closed form,
and, where ``evaluate`` scored this k and horizon, the calibrated odds with their val skill
over the random walk.

The math (the closed form, the touch rule, the odds counted on paths) lives in
:mod:`candletok.evaluation.odds`, the one home the harness scores and this module shows;
this module samples the paths and assembles the rows (:class:`OddsRow`,
:func:`odds_rows`, :func:`calibrate_rows`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from candletok.core.errors import ModelError
from candletok.evaluation.odds import Odds, path_odds, random_walk_odds, sigma_from_scale

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

    def to_dict(self) -> dict[str, Any]:
        p, w = self.paths, self.walk

        def one(name: str) -> dict[str, float]:
            lo, hi = p.intervals[name]
            return {"p": float(getattr(p, name)), "lo": float(lo), "hi": float(hi),
                    "random_walk": float(getattr(w, name))}

        return {"k": self.k, "horizon": self.horizon, "paths": p.n_paths,
                "target_first": one("p_up"), "stop_first": one("p_down"),
                "neither": one("p_neither"),
                "ambiguous_share": float(p.ambiguous) if p.ambiguous is not None else None}


def odds_rows(paths: dict[str, np.ndarray], entry: float, scale: float,
              ks: Sequence[float], horizon: int) -> list[OddsRow]:
    """Per ``k``: the paths' odds of +k before -k scale units (and the reverse, and
    neither) within ``horizon`` bars, beside the driftless random walk with sigma from the
    same scale (:func:`sigma_from_scale`)."""
    kk = np.asarray(list(ks), dtype=np.float64)
    if kk.size == 0 or np.any(kk <= 0):
        raise ModelError("Give barrier multiples k > 0, e.g. --odds 1,2.")
    po = path_odds(paths, entry, kk * scale, kk * scale, horizon)
    rw = random_walk_odds(kk * scale, kk * scale, sigma_from_scale(scale), horizon)
    rows = []
    for i, k in enumerate(kk):
        p = Odds(po.p_up[i], po.p_down[i], po.p_neither[i], po.n_paths,
                 None if po.ambiguous is None else po.ambiguous[i],
                 {name: (lo[i], hi[i]) for name, (lo, hi) in po.intervals.items()})
        w = Odds(rw.p_up[i], rw.p_down[i], rw.p_neither[i])
        rows.append(OddsRow(float(k), int(horizon), p, w))
    return rows


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
