"""``exact``: the windows whose last N symbols are the query's (the coarse alphabet by
default, the vocabulary's tokens with ``alphabet="tokens"``), backing off one candle at a
time while the independent matches are fewer than ``min_matches``, and saying what to
try when it does."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from candletok.search.alphabet import alphabet_index, get_alphabet
from candletok.search.modes.base import Found, SearchMode, SearchOptions, register_mode
from candletok.search.nearest import OwnMetric
from candletok.search.timerule import Cut, thin_chronological

if TYPE_CHECKING:
    from candletok.search.index import SearchIndex
    from candletok.search.query import Query
    from candletok.search.timerule import TimeRule
    from candletok.tokenize.base import Tokenizer


def backoff_hint(asked: int, used: int, alphabet: str) -> str:
    """One line on what to try when exact search answered with fewer candles than asked:
    the coarse alphabet (when the tokens were matched), the nearest mode (every window
    has a distance, so it always answers with all ``asked`` candles) or a shorter window
    (``used``, the longest that had enough matches)."""
    tries = ([] if alphabet == "coarse" else ['alphabet="coarse" (18 symbols a candle)'])
    tries += [f'mode="nearest" (the nearest {asked}-candle windows)',
              f"last={used} (the longest window that had enough matches)"]
    return (f"hint: exact search matched only the last {used} of {asked} candles; for "
            f"more, try {', '.join(tries[:-1])} or {tries[-1]}.")


@register_mode
class Exact(SearchMode):
    name = "exact"
    help = "the same symbols (coarse alphabet, or --alphabet tokens); every match counts"
    rank = 0
    by_recency = True
    same_tokens = True
    uses_alphabet = True

    def search(self, idx: SearchIndex, tok: Tokenizer, q: Query, rule: TimeRule,
               spec: SearchOptions) -> tuple[Found, TimeRule]:
        n, min_matches = rule.window, spec.min_matches
        alpha = get_alphabet(getattr(spec, "alphabet", "tokens"))
        if alpha is None:
            grams, qsym = idx, np.asarray(q.tokens)
        else:
            grams, qsym = alphabet_index(idx, alpha), alpha.symbols(q.feats, q.tokens)
        tried: list[tuple[int, int]] = []  # (candles, independent matches) that were too few
        used = n
        while True:
            r = rule.with_window(used)
            cut = Cut.of(idx, r)
            e = grams.suffix_positions(qsym[-used:])  # same positions as idx
            raw = int(cut.available(e, 0).sum())  # occurrences ending by T
            e = e[cut.eligible(e)]
            elig = int(e.size)
            kept = thin_chronological(idx, e, r.zone)
            if kept.size >= min_matches or used == 1:
                break
            tried.append((used, int(kept.size)))
            used -= 1
        notes = []
        what = "tokens" if alpha is None else f"{alpha.name} symbols"
        if tried:
            notes.append(
                f"the last {', '.join(str(u) for u, _ in tried)} candles had "
                f"{', '.join(str(k) for _, k in tried)} independent matches before T (fewer "
                f"than min_matches={min_matches}): answered with the last {used} of {n}")
        if used < n:
            notes.append(backoff_hint(n, used, "tokens" if alpha is None else alpha.name))
        own = OwnMetric.of(idx, tok, q.feats[-used:])
        return Found(kept, own.distance(kept), used, raw, elig, notes,
                     f"sorted n-gram lookup of the last {used} {what}"), r
