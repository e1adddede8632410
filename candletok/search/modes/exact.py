"""``exact``: the windows whose last N tokens are the query's, backing off one candle at a
time while the independent matches are fewer than ``min_matches``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from candletok.search.modes.base import Found, SearchMode, SearchOptions, register_mode
from candletok.search.nearest import OwnMetric
from candletok.search.timerule import Cut, thin_chronological

if TYPE_CHECKING:
    from candletok.search.index import SearchIndex
    from candletok.search.query import Query
    from candletok.search.timerule import TimeRule
    from candletok.tokenize.base import Tokenizer


@register_mode
class Exact(SearchMode):
    name = "exact"
    help = "the same tokens; every match counts"
    rank = 0
    by_recency = True
    same_tokens = True

    def search(self, idx: SearchIndex, tok: Tokenizer, q: Query, rule: TimeRule,
               spec: SearchOptions) -> tuple[Found, TimeRule]:
        n, min_matches = rule.window, spec.min_matches
        tried: list[tuple[int, int]] = []  # (candles, independent matches) that were too few
        used = n
        while True:
            r = rule.with_window(used)
            cut = Cut.of(idx, r)
            e = idx.suffix_positions(q.tokens[-used:])
            raw = int(cut.available(e, 0).sum())  # occurrences ending by T
            e = e[cut.eligible(e)]
            elig = int(e.size)
            kept = thin_chronological(idx, e, r.zone)
            if kept.size >= min_matches or used == 1:
                break
            tried.append((used, int(kept.size)))
            used -= 1
        notes = []
        if tried:
            notes.append(
                f"the last {', '.join(str(u) for u, _ in tried)} candles had "
                f"{', '.join(str(k) for _, k in tried)} independent matches before T (fewer "
                f"than min_matches={min_matches}): answered with the last {used} of {n}")
        own = OwnMetric.of(idx, tok, q.feats[-used:])
        return Found(kept, own.distance(kept), used, raw, elig, notes), r
