"""``model``: the ``top`` nearest windows by CandleGPT's hidden state at the window's last
candle. Exact (numpy, every distance) by default; ``approximate`` uses a faiss HNSW graph
(the optional ``candletok[search]``) for data too large to scan, at the recall
``benchmarks/search_speed.py`` measures. torch is imported only when this mode runs."""

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
class Model(SearchMode):
    name = "model"
    help = "the --top nearest by a checkpoint's hidden state; needs --model"
    rank = 2
    needs_model = True
    costly = True

    def search(self, idx: SearchIndex, tok: Tokenizer, q: Query, rule: TimeRule,
               spec: SearchOptions) -> tuple[Found, TimeRule]:
        from candletok.search.embed import dataset_embeddings, embed_tokens, load_search_model
        from candletok.search.vectors import FaissIndex, NumpyFlatIndex, search_filtered

        self.check(spec)
        assert spec.model is not None
        top, approximate, model_path = spec.top, spec.approximate, spec.model
        n = rule.window
        model = load_search_model(model_path, tok, n, spec.device)
        ends, vecs = dataset_embeddings(idx, model, model_path, n)
        q_times = q.candles["ts"].dt.epoch("us").to_numpy()[-n:]
        qv = embed_tokens(model, q.tokens[-n:][None, :], q_times[None, :])[0]
        cut = Cut.of(idx, rule)
        ok = cut.eligible(ends)
        M = max(1, top * (2 * rule.zone - 1))
        if approximate:
            r = search_filtered(FaissIndex(vecs, kind="hnsw"), qv, M, lambda i: ok[i])
        else:
            r = NumpyFlatIndex(vecs).search_masked(qv, M, ok)
        e = ends[r.indices]
        kept = thin_by_distance(e, r.scores, idx.sid[e], rule.zone, top)
        how = "approximate (faiss HNSW)" if approximate else "exact"
        return Found(e[kept], r.scores[kept], n, int(ok.sum()), int(ok.sum()),
                     [f"the {top} nearest windows by CandleGPT hidden state "
                      f"({Path(model_path).name}){', approximately' if approximate else ''}"],
                     f"{how} search over {int(ok.sum()):,} eligible window vectors"), rule
