"""Pattern-search analogues as forecasters: "what followed candles like these?" turned into
a probability, shrunk toward the base rate by how much evidence the matches hold.

A search answers one query at a time (the last N candles of one symbol at its time T), so
an analogue forecaster asks it at a seeded subsample of origins (reported, like
CandleGPT's sampled horizons) and caches each answer. What it needs from a search is an
:data:`AnalogueQuery`: given the history and an origin row, the outcomes of the matches
at each horizon, using only windows whose forward outcome was known by the origin's time
(the search's time rule). The answer becomes

* ``p_up = (n_eff * p_matches + prior * base) / (n_eff + prior)``
  (:func:`~candletok.evaluation.forecasters.shrink_to_base`), where ``n_eff`` is the
  effective number of independent matches: ten overlapping matches of one market day are
  not ten observations;
* the matches' 10/50/90% forward-return quantiles and the next range, from
  :func:`candletok.search.forecast.forecast_rows` (the function ``similar`` prints them
  with: shown = scored): weighted by distance or not, in volatility units times the
  query's own scale or raw, as val chose (``docs/forecasts.md``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from candletok.core.errors import CandletokError
from candletok.core.fallback import say_fallback
from candletok.core.progress import progress
from candletok.evaluation.forecasters import (
    BaseRate,
    Forecast,
    pad_levels,
    pick_subsample,
    shrink_to_base,
)
from candletok.evaluation.history import History
from candletok.search.modes import modes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnalogueAnswer:
    """What the matches of one query did at one horizon."""

    p_up: float  # share of matches whose close h bars on was above their last close
    n_eff: float  # effective number of independent matches (0: none)
    quantiles_vol: tuple[float, ...] | None = None  # 10/50/90% forward return / scale
    range_vol: tuple[float, float] | None = None  # next candle's ln(H/L) / scale: mean, mean sq
    # the same already in the query's own log units (what similar shows); when given they
    # are used as they are, else the vol-unit figures are times the origin's next scale
    quantiles_log: tuple[float, ...] | None = None
    range_log: tuple[float, float] | None = None


AnalogueQuery = Callable[[History, int, Sequence[int]], dict[int, AnalogueAnswer]]
"""``query(hist, row, horizons) -> {h: answer}``; a horizon with no usable match may be
left out. It must read nothing after ``hist.ts[row]``."""


def analogue_p_up(answers: Sequence[AnalogueAnswer], base: float,
                  prior: float = 20.0) -> np.ndarray:
    """The analogue P(up) of each answer: the matches' share of up moves shrunk toward
    ``base`` by their effective number. The one rule for an origin the harness replays
    and for a live query (:func:`candletok.evaluation.simcal.calibrated_similar`), so a map
    fit on the first applies to the second."""
    p = np.array([a.p_up for a in answers], dtype=np.float64)
    n_eff = np.array([a.n_eff for a in answers], dtype=np.float64)
    return shrink_to_base(p, n_eff, base, prior)


class AnalogueForecaster:
    """A pattern search as a :class:`~candletok.evaluation.forecasters.Forecaster`."""

    learned = True  # the shrinkage and the calibration map are fit on val

    def __init__(self, name: str, query: AnalogueQuery, horizons: Sequence[int],
                 subsample: int = 100, prior: float = 20.0, seed: int = 0) -> None:
        self.name = name
        self.query = query
        self.horizons = tuple(sorted({int(h) for h in horizons}))
        self.subsample = max(1, int(subsample))
        self.prior = float(prior)
        self.seed = int(seed)
        self.base = BaseRate()
        self._of: History | None = None
        self._answers: dict[int, dict[int, AnalogueAnswer]] = {}

    def fit(self, hist: History) -> None:
        self.base.fit(hist)
        self._of, self._answers = None, {}

    def answers(self, hist: History, rows: np.ndarray) -> list[dict[int, AnalogueAnswer]]:
        """The search's answers at ``rows``, asked once per origin (a search per query is
        the unit of work the search offers; the subsample bounds how many)."""
        if self._of is not hist:
            self._of, self._answers = hist, {}
        todo = [r for r in rows.tolist() if r not in self._answers]
        with progress(f"{self.name} searches", len(todo)) as bar:
            for r in todo:
                self._answers[r] = self.query(hist, r, self.horizons)
                bar.advance()
        return [self._answers[r] for r in rows.tolist()]

    @property
    def asked(self) -> int:
        """How many distinct origins the search was asked about (over every horizon)."""
        return len(self._answers)

    def describe(self) -> str:
        return (f"the search's matches at up to {self.subsample} seeded origins per split, "
                f"P(up) shrunk toward the base rate with a prior worth {self.prior:g} "
                "independent matches")

    def forecast(self, hist: History, rows: np.ndarray, horizon: int) -> Forecast | None:
        if horizon not in self.horizons:
            return None
        sub = pick_subsample(hist, rows, self.subsample, self.seed)
        got = [a.get(horizon) for a in self.answers(hist, sub)]
        keep = np.array([a is not None and a.n_eff > 0 for a in got], dtype=bool)
        ans = [a for a in got if a is not None and a.n_eff > 0]
        sub = sub[keep]
        if sub.size == 0:
            return None
        n_eff = np.array([a.n_eff for a in ans])
        base, _ = self.base.rate(hist, horizon)
        fc = Forecast(sub, p_up=analogue_p_up(ans, base, self.prior), n_eff=n_eff)
        s = hist.next_scale[sub]
        if all(a.quantiles_log is not None for a in ans):
            q = np.array([a.quantiles_log for a in ans], dtype=np.float64)
            fc.quantiles = pad_levels(q.reshape(len(ans), -1))  # 10/50/90% only
        elif all(a.quantiles_vol is not None for a in ans):
            q = np.array([a.quantiles_vol for a in ans], dtype=np.float64)
            q = pad_levels(q.reshape(len(ans), -1))  # the search answers 10/50/90% only
            fc.quantiles = q * s[:, None]
        if horizon == 1 and all(a.range_log is not None for a in ans):
            rl = np.array([a.range_log for a in ans], dtype=np.float64)
            fc.range_mean, fc.range_sq = rl[:, 0], rl[:, 1]
        elif horizon == 1 and all(a.range_vol is not None for a in ans):
            rv = np.array([a.range_vol for a in ans], dtype=np.float64)
            # the matches' ranges in the query's own volatility
            fc.range_mean, fc.range_sq = rv[:, 0] * s, rv[:, 1] * s * s
        return fc


SEARCH_MODES: tuple[str, ...] = modes()
"""The modes the harness scores by default: those registered when it is imported (the
built-ins, one file each in :mod:`candletok.search.modes`); a mode registered later is
scored when named."""


def answers_of(res: Any, weighted: bool | None = None, rescaled: bool | None = None
               ) -> dict[int, AnalogueAnswer]:
    """The matches' answer at each horizon of a :class:`~candletok.search.result.SimilarResult`:
    its analogue forecast (``res.analogue_forecast``, the frame ``similar`` prints; with
    ``weighted``/``rescaled``, made again from the same matches the other way). Horizons
    with no match whose outcome was known by T are left out."""
    fr = res.analogue_forecast(weighted, rescaled)
    out = {}
    for r in fr.iter_rows(named=True):
        if not (r["n"] > 0 and r["n_eff"] > 0 and math.isfinite(r["p_up"])):
            continue
        h = int(r["horizon"])
        rng = None
        if h == 1 and math.isfinite(r["range_mean"]) and math.isfinite(r["range_sq"]):
            rng = (float(r["range_mean"]), float(r["range_sq"]))
        out[h] = AnalogueAnswer(float(r["p_up"]), float(r["n_eff"]),
                                quantiles_log=(r["q10_log"], r["q50_log"], r["q90_log"]),
                                range_log=rng)
    return out


def search_query(index: Any, spec: Any = None, last: int | None = None,
                 top: int | None = None, min_matches: int | None = None,
                 model: str | Path | None = None, device: str | None = None,
                 approximate: bool | None = None) -> AnalogueQuery:
    """An :data:`AnalogueQuery` answered by :func:`candletok.search.similar.similar` on a
    dataset's search index: the last ``spec.last`` candles of the origin's symbol asked
    as of the origin's time, so the search's time rule admits only matches whose forward
    windows had closed by then, in every symbol. ``spec`` is a
    :class:`~candletok.search.spec.SearchSpec` or a mode's name (the keywords then build
    the spec); the horizons are the forecaster's, per call."""
    from candletok.search.similar import similar
    from candletok.search.spec import SearchSpec

    spec = SearchSpec.of(spec if isinstance(spec, SearchSpec) else None,
                         mode=None if isinstance(spec, SearchSpec) else spec, last=last,
                         top=top, min_matches=min_matches, model=model, device=device,
                         approximate=approximate)

    def query(hist: History, row: int, horizons: Sequence[int]) -> dict[int, AnalogueAnswer]:
        at = datetime.fromtimestamp(int(hist.ts[row]) / 1e6, tz=timezone.utc)
        try:
            res = similar(index, str(hist.symbol[row]), spec, horizons=tuple(horizons),
                          at=at)
        except CandletokError:  # too little history before this origin: no answer
            return {}
        return answers_of(res)

    return query


def search_forecasters(root: str | Path, modes: Sequence[str], horizons: Sequence[int],
                       subsample: int, model_subsample: int, model: str | Path | None = None,
                       last: int = 5, seed: int = 0, device: str = "cpu"
                       ) -> list[AnalogueForecaster]:
    """The pattern-search analogues of a dataset folder, one forecaster per mode
    (a mode that needs a checkpoint only with one; one that runs a model per query gets
    the smaller ``model_subsample``)."""
    from candletok.search.index import open_index
    from candletok.search.modes import MODES
    from candletok.search.spec import SearchSpec

    bad = [m for m in modes if m not in MODES]
    if bad:
        raise CandletokError(f"Unknown analogue mode {', '.join(bad)}; use "
                             f"{MODES.choices()}.")
    index = open_index(root)
    out = []
    for name in modes:
        mode = MODES.get(name)
        why = mode.missing(model)
        if why is not None:
            if mode.needs_model and model is not None:  # asked for, but cannot run: say so
                say_fallback(log, f"{mode.name} analogues left out of the evaluation: {why}")
            continue
        spec = SearchSpec(mode=mode.name, last=last, horizons=horizons, device=device,
                          model=model if mode.needs_model else None)
        out.append(AnalogueForecaster(f"{mode.name} analogues", search_query(index, spec),
                                      horizons, model_subsample if mode.costly else subsample,
                                      seed=seed))
    return out
