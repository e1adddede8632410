"""A toy search mode in one file, registered from here: the ``top`` most recent windows
the time rule lets answer, one per exclusion zone (no similarity at all). It shows what a
new mode must write, and nothing else: the outcomes, base rate, words, calibration,
harness and CLI come from the registry."""

from __future__ import annotations

from typing import Any

import numpy as np

from candletok.search.modes import Found, SearchMode, register_mode
from candletok.search.timerule import Cut, thin_chronological


@register_mode
class Toy(SearchMode):
    name = "toy"
    help = "the --top most recent windows, a test's toy"
    by_recency = True

    def search(self, idx: Any, tok: Any, q: Any, rule: Any, spec: Any) -> tuple[Found, Any]:
        cut = Cut.of(idx, rule)
        e = cut.all_eligible()
        kept = thin_chronological(idx, e, rule.zone)
        kept = kept[np.argsort(-np.asarray(idx.ts[kept]), kind="stable")[: spec.top]]
        return Found(np.sort(kept), np.zeros(kept.size), rule.window, int(e.size),
                     int(e.size), [f"the {spec.top} most recent windows (a toy)"],
                     "recency"), rule
