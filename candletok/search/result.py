"""What :func:`candletok.search.similar.similar` returns: frames, the summary in words,
and what a chart needs. On its own so that the chart module can name it without
importing the search itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from candletok.core.jsonsafe import clean_json
from candletok.search.index import SearchIndex
from candletok.search.timerule import TimeRule
from candletok.tokenize.base import Tokenizer


@dataclass
class SimilarResult:
    """Matches, outcomes per horizon beside the base rate, and the summary in words."""

    matches: pl.DataFrame
    outcomes: pl.DataFrame
    summary: dict[str, Any]
    words: list[str]
    query: pl.DataFrame
    next_range: pl.DataFrame
    forward: dict[int, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    _idx: SearchIndex | None = field(default=None, repr=False)
    _tok: Tokenizer | None = field(default=None, repr=False)
    _e: np.ndarray | None = field(default=None, repr=False)
    _rule: TimeRule | None = field(default=None, repr=False)
    context: pl.DataFrame | None = field(default=None, repr=False)  # candles before the query
    # the analogue forecast per horizon (search/forecast.py): what similar prints and the
    # evaluation harness scores, and what it was made from (to redo it another way)
    forecast: pl.DataFrame | None = None
    analogue_inputs: Any = field(default=None, repr=False)

    def analogue_forecast(self, weighted: bool | None = None, rescaled: bool | None = None
                          ) -> pl.DataFrame:
        """The analogue forecast frame (:func:`~candletok.search.forecast.forecast_rows`),
        as shown with the defaults, or made again from the same matches with other
        weights or units (what val chose between)."""
        from candletok.search import forecast as fc
        from candletok.search.timerule import Cut

        w = fc.WEIGHTED if weighted is None else weighted
        r = fc.RESCALED if rescaled is None else rescaled
        if self.forecast is not None and (w, r) == (fc.WEIGHTED, fc.RESCALED):
            return self.forecast
        if self._idx is None or self._rule is None or self.analogue_inputs is None:
            raise ValueError("This result was built without its matches' inputs.")
        return fc.forecast_rows(self._idx, Cut.of(self._idx, self._rule),
                                self.analogue_inputs, tuple(self._rule.horizons), w, r)

    @property
    def t_us(self) -> int:
        """The query's time T (its last bar's open time) in microseconds UTC: what every
        answer, and any calibration built on top of it, must not look past."""
        if self._rule is None:
            raise ValueError("This result was built without its time rule.")
        return int(self._rule.T)

    @property
    def time_format(self) -> str:
        """How this result's bar times are written: with hours and minutes (UTC) for
        bars shorter than a day."""
        return "%Y-%m-%d %H:%M" if self.summary.get("intraday") else "%Y-%m-%d"

    def when(self, t: datetime | str) -> str:
        """A bar time (a datetime or ISO text) as :attr:`time_format` writes it."""
        dt = datetime.fromisoformat(t) if isinstance(t, str) else t
        return dt.strftime(self.time_format)

    def to_dict(self) -> dict[str, Any]:
        """Everything printable, JSON-ready (times as ISO text, NaN as None, the query's
        prices to the tick its data shows: ``summary.price_decimals``)."""
        def rows(df: pl.DataFrame) -> list[dict[str, Any]]:
            out = df.with_columns(pl.col(pl.Datetime).dt.to_string("%Y-%m-%dT%H:%M:%S%z"))
            return [{k: clean_json(v) for k, v in r.items()} for r in out.to_dicts()]

        d = self.summary.get("price_decimals")
        query = self.query if d is None else self.query.with_columns(
            pl.col(c).round(int(d)) for c in ("open", "high", "low", "close")
            if c in self.query.columns)
        return {"summary": {k: clean_json(v) for k, v in self.summary.items()},
                "words": self.words, "outcomes": rows(self.outcomes),
                "next_range": rows(self.next_range), "matches": rows(self.matches),
                "forecast": [] if self.forecast is None else rows(self.forecast),
                "query": rows(query)}
