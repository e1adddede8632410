"""``nearest``: the ``top`` nearest windows by the candles' own weighted features (an
exact search: the n-gram filter where it is safe, a full scan where it is not)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from candletok.search.modes.base import Found, SearchMode, SearchOptions, register_mode
from candletok.search.nearest import OwnMetric, nearest
from candletok.search.timerule import Cut

if TYPE_CHECKING:
    from candletok.search.index import SearchIndex
    from candletok.search.query import Query
    from candletok.search.timerule import TimeRule
    from candletok.tokenize.base import Tokenizer


@register_mode
class Nearest(SearchMode):
    name = "nearest"
    help = "the --top nearest windows by the candles' own features"
    rank = 1

    def search(self, idx: SearchIndex, tok: Tokenizer, q: Query, rule: TimeRule,
               spec: SearchOptions) -> tuple[Found, TimeRule]:
        top = spec.top
        own = OwnMetric.of(idx, tok, q.feats[-rule.window :])
        cut = Cut.of(idx, rule)
        res = nearest(idx, cut, own.bounds, top, own)
        how = "a full scan" if res.full_scan else "the n-gram filter"
        n_ok = cut.count_eligible()
        return Found(res.e, res.dist, rule.window, n_ok, n_ok,
                     [f"the {top} nearest windows by the candles' own weighted features"],
                     f"exact search via {how}: {res.scanned:,} windows compared"), rule
