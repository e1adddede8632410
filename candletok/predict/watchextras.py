"""What ``candletok watch`` adds to each bar's answer when asked: the stop and target odds
(``--odds``) and the nearest analogues (``--dataset``).

Neither has a second implementation here: the odds are :func:`candletok.predict.odds.
symbol_odds`, the one function ``predict --odds`` calls, on the bars seen so far; the
analogues are :func:`candletok.evaluation.simcal.calibrated_similar`, what ``similar``
prints, with the bars seen so far as the query (its base rate is a table lookup and its
val map is cached beside the index, so only the first bar pays for the fit). So a
watched bar's odds and analogues are the ones those commands give on the same bars.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from candletok.core.jsonsafe import clean_json

if TYPE_CHECKING:
    from candletok.evaluation.simcal import CalibratedSimilar
    from candletok.predict.odds import OddsRow
    from candletok.predict.predictor import Predictor

__all__ = ["AnalogueAsk", "OddsAsk", "analogue_cell", "analogue_summary", "odds_cell"]


@dataclass(frozen=True)
class OddsAsk:
    """``--odds K --horizon H``: per k, P(+k vol before -k) within ``horizon`` bars from
    ``samples`` sampled paths (seeded, so a bar's odds repeat exactly)."""

    ks: tuple[float, ...]
    horizon: int = 10
    samples: int = 500
    exchange: str = "auto"
    seed: int = 0

    def answer(self, predictor: Predictor, bars: pl.DataFrame,
               interval: str | None) -> list[OddsRow]:
        """The odds ``predict --odds`` prints for the last bar of ``bars`` (one symbol)."""
        from candletok.predict.odds import symbol_odds

        return symbol_odds(predictor.model, predictor.tokenizer, bars, self.ks, self.horizon,
                           self.samples, exchange=self.exchange,
                           calibration=predictor.calibration, interval=interval,
                           seed=self.seed)


@dataclass(frozen=True)
class AnalogueAsk:
    """The nearest analogues in ``dataset``: the windows most like the last ``last``
    candles (exact mode, ``similar``'s defaults), their outcomes beside the base rate and
    the calibrated analogue P(up)."""

    dataset: Path
    horizons: tuple[int, ...] = (1,)
    last: int = 5
    top: int = 20  # similar's default, so its cached val map is shared
    val_origins: int = 200

    def answer(self, bars: pl.DataFrame) -> CalibratedSimilar:
        """``similar``'s calibrated answer with ``bars`` (one symbol) as the query."""
        from candletok.evaluation.simcal import calibrated_similar
        from candletok.search.spec import SearchSpec

        spec = SearchSpec(last=self.last, top=self.top, horizons=tuple(self.horizons))
        return calibrated_similar(self.dataset, bars, spec, val_origins=self.val_origins)


def analogue_summary(cs: CalibratedSimilar, top: int = 5) -> dict[str, Any]:
    """The analogues in a few numbers (for JSON lines and the table): the matches and
    their window, per horizon the matches' P(up) with its interval beside the base rate's
    and the calibrated P(up) with its val skill, and the ``top`` listed matches."""
    res = cs.result
    out = res.outcomes
    cal = {} if cs.calibration is None else {a.horizon: a for a in cs.calibration.horizons}
    hs = []
    for h in res.summary["horizons"]:
        m = out.filter((pl.col("horizon") == h) & (pl.col("who") == "matches")).row(
            0, named=True)
        b = out.filter((pl.col("horizon") == h) & (pl.col("who") == "base")).row(
            0, named=True)
        a = cal.get(h)
        hs.append({"horizon": int(h), "n": int(m["n"]),
                   "p_up": m["p_up"], "p_lo": m["p_lo"], "p_hi": m["p_hi"],
                   "base_rate": b["p_up"], "base_lo": b["p_lo"], "base_hi": b["p_hi"],
                   "p_up_calibrated": None if a is None else a.p_up_calibrated,
                   "val_skill": None if a is None else a.val_skill,
                   "calibration": None if a is None else a.calibration})
    listed = res.matches.head(top).select("symbol", "end").to_dicts()
    return clean_json({"matches": int(res.summary["matches"]),
                       "window": int(res.summary["window"]), "horizons": hs,
                       "top": [{"symbol": r["symbol"], "end": r["end"].isoformat()}
                               for r in listed]})


def _pct(p: Any) -> str:
    return "-" if p is None else f"{p:.1%}"


def analogue_cell(summary: dict[str, Any]) -> str:
    """One line: matches, per horizon their P(up) [interval], the base rate beside it and
    the calibrated P(up)."""
    parts = [f"analogues {summary['matches']} ({summary['window']}-candle)"]
    for h in summary["horizons"]:
        cell = (f"h={h['horizon']} {_pct(h['p_up'])} [{_pct(h['p_lo'])}-{_pct(h['p_hi'])}]"
                f" base {_pct(h['base_rate'])}")
        if h["p_up_calibrated"] is not None:
            cell += f" cal {_pct(h['p_up_calibrated'])}"
        parts.append(cell)
    return " ".join(parts)


def odds_cell(rows: Sequence[OddsRow]) -> str:
    """One line: per k the paths' P(target +k first) and P(stop -k first) beside the
    random walk's, and the calibrated odds where ``evaluate`` fit them."""
    from candletok.predict.odds import calibrated_cell

    parts = [f"odds h={rows[0].horizon}" if rows else "odds"]
    for r in rows:
        cell = (f"k={r.k:g} target {float(r.paths.p_up):.1%} stop {float(r.paths.p_down):.1%}"
                f" (walk {float(r.walk.p_up):.1%})")
        cal = calibrated_cell(r)
        if cal != "-":
            cell += f" cal {cal}"
        parts.append(cell)
    return " ".join(parts)
