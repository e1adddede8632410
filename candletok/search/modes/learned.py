"""``learned``: the ``top`` nearest windows in the space of the search model trained for
retrieval (:mod:`candletok.search.retrieval`, ``m.search.pt`` beside checkpoint ``m.pt``,
made by ``candletok train-search``): windows close there had close forward returns and
ranges on train. Exact (one float32 product over every window's vector with its cached
squared norms, the time rule applied as slices, the near ties re-measured in float64);
the embedding pass is numpy (torch only reads the file)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from candletok.search.modes.base import Found, SearchMode, SearchOptions, register_mode
from candletok.search.timerule import Cut, thin_by_distance

if TYPE_CHECKING:
    from candletok.search.index import SearchIndex
    from candletok.search.query import Query
    from candletok.search.timerule import TimeRule
    from candletok.tokenize.base import Tokenizer


@register_mode
class Learned(SearchMode):
    name = "learned"
    help = "the --top nearest by the search model trained for retrieval; needs --model"
    rank = 3
    needs_model = True

    def missing(self, model: str | Path | None) -> str | None:
        """Why this mode cannot run with checkpoint ``model`` (None when it can)."""
        from candletok.search.retrieval import search_model_path

        if model is None:
            return super().missing(model)
        p = search_model_path(model)
        return None if p.exists() else f"no search model at {p} (candletok train-search)"

    def model_file(self, model: str | Path) -> Path:
        """The search model beside the checkpoint: a retrained one changes every key."""
        from candletok.search.retrieval import search_model_path

        return search_model_path(model)

    def search(self, idx: SearchIndex, tok: Tokenizer, q: Query, rule: TimeRule,
               spec: SearchOptions) -> tuple[Found, TimeRule]:
        from candletok.search.retrieval import learned_vectors, load_search_model, query_vector
        from candletok.search.vectors import dot_search

        self.check(spec)
        assert spec.model is not None
        sm = load_search_model(spec.model)
        n = rule.window
        sm.check(n, tok)
        ends, vecs, sq = learned_vectors(idx, tok, sm)
        q_last = int(q.candles["ts"].dt.epoch("us").to_numpy()[-1])
        qv = query_vector(sm, tok, q.feats, q_last)
        cut = Cut.of(idx, rule)
        a, b = cut.eligible_ranges(ends)  # the time rule as slices: no pass per window
        n_ok = int((b - a).sum())
        M = max(1, spec.top * (2 * rule.zone - 1))
        r = dot_search(vecs, sq, qv, M, ranges=(a, b))
        e = ends[r.indices]
        kept = thin_by_distance(e, r.scores, idx.sid[e], rule.zone, spec.top)
        cal = "with calendar inputs" if sm.calendar is not None else "no calendar inputs"
        name = sm.path.name if sm.path is not None else "the search model"
        return Found(e[kept], r.scores[kept], n, n_ok, n_ok,
                     [f"the {spec.top} nearest windows by the search model trained for "
                      f"retrieval ({name}, {sm.embed_from} embedding, {cal})"],
                     f"exact search over {n_ok:,} eligible window vectors"), rule
