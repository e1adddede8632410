"""``similar``: what happened after candles like these, with the base rate beside it.

    res = similar("ds", "AAPL", last=5)                    # exact: the same 5 tokens
    res = similar("ds", "MSFT", last=8, mode="nearest", at="2012-06-01")
    res.outcomes        # per horizon: matches and base rate, interval, test
    res.matches         # the matches: symbol, dates, distance, forward returns
    res.words           # the verdicts in words

The time rule (see :mod:`candletok.search.timerule`) decides which windows may answer:
only those whose forward window ends by the query's time T, in every symbol, away from
the query's own window, thinned so that no two overlap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from candletok.core.display import is_intraday, price_decimals
from candletok.core.errors import CandletokError
from candletok.core.horizons import check_horizons
from candletok.search import stats
from candletok.search.index import SearchIndex, open_index
from candletok.search.nearest import OwnMetric, nearest
from candletok.search.query import Query, When, from_bars, from_dataset, from_us
from candletok.search.result import SimilarResult
from candletok.search.timerule import (
    Cut,
    TimeRule,
    cross_correlation,
    effective_n,
    thin_by_distance,
    thin_chronological,
)
from candletok.tokenize.base import Tokenizer

MODES = ("exact", "nearest", "model")
PRICES = ("open", "high", "low", "close")
DEFAULT_HORIZONS = (1, 5, 10)


def check_reach(idx: SearchIndex, horizons: Sequence[int], last: int) -> None:
    """Refuse horizons no window of the index can have an outcome for: a ``last``-candle
    window's outcome h bars on needs ``last + h`` candles of one series, so beyond the
    longest series every figure would be an empty sample (a base rate of nan%)."""
    lens = np.diff(np.asarray(idx.starts))
    longest = int(lens.max()) if lens.size else 0
    reach = longest - last
    too_far = [h for h in horizons if h > reach]
    if too_far:
        raise CandletokError(
            f"No outcome {too_far[0]} bars after a {last}-candle window exists: the longest "
            f"series has {longest} candles, so use horizons of at most {max(reach, 0)} bars"
            f"{'' if reach >= 1 else ' with fewer candles in the window'}.")


@dataclass
class Found:
    """The matches of one query before statistics: window ends, distances, and how the
    search got there."""

    e: np.ndarray
    dist: np.ndarray
    window: int
    raw: int  # candidates before the time rule and thinning (exact: occurrences)
    eligible: int  # after the time rule, before thinning
    notes: list[str] = field(default_factory=list)
    search: str = ""  # how the search went (a diagnostic, not part of the answer)


def _exact(idx: SearchIndex, tok: Tokenizer, q: Query, rule: TimeRule, n: int,
           min_matches: int) -> tuple[Found, TimeRule]:
    """Windows with the same last n tokens, backing off one candle at a time while the
    thinned matches are fewer than ``min_matches``."""
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


def _nearest(idx: SearchIndex, tok: Tokenizer, q: Query, rule: TimeRule, top: int) -> Found:
    own = OwnMetric.of(idx, tok, q.feats[-rule.window :])
    cut = Cut.of(idx, rule)
    res = nearest(idx, cut, own.bounds, top, own)
    how = "a full scan" if res.full_scan else "the n-gram filter"
    n_ok = cut.count_eligible()
    return Found(res.e, res.dist, rule.window, n_ok, n_ok,
                 [f"the {top} nearest windows by the candles' own weighted features"],
                 f"exact search via {how}: {res.scanned:,} windows compared")


def _model(idx: SearchIndex, tok: Tokenizer, q: Query, rule: TimeRule, top: int,
           model_path: str | Path | None, device: str, approximate: bool) -> Found:
    """The nearest windows by hidden state: exact (numpy, every distance) by default;
    ``approximate`` uses a faiss HNSW graph (optional extra) for data too large to scan,
    at the recall ``benchmarks/search_speed.py`` measures."""
    if model_path is None:
        raise CandletokError("mode='model' needs a trained checkpoint: pass model=FILE.")
    from candletok.search.embed import dataset_embeddings, embed_tokens, load_search_model
    from candletok.search.vectors import FaissIndex, NumpyFlatIndex, search_filtered

    n = rule.window
    model = load_search_model(model_path, tok, n, device)
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
                 f"{how} search over {int(ok.sum()):,} eligible window vectors")


def similar(
    dataset: str | Path | SearchIndex,
    query: str | pl.DataFrame,
    *,
    last: int = 5,
    mode: str = "exact",
    top: int = 20,
    horizons: Sequence[int] | str = DEFAULT_HORIZONS,
    at: When = None,
    source: str | None = None,
    min_matches: int = 10,
    model: str | Path | None = None,
    device: str = "cpu",
    approximate: bool = False,
) -> SimilarResult:
    """What followed the windows of history most like the query's last ``last`` candles.

    ``query`` is a symbol (its candles come from the dataset, or from ``source`` when
    given) or a frame of canonical bars of one symbol. ``at`` asks as of a past time: the
    query ends at its last bar at or before ``at`` and nothing after that bar is used.
    ``mode``: ``exact`` (same tokens; all matches count, the ``top`` most recent are
    listed; backs off to fewer candles while there are fewer than ``min_matches``),
    ``nearest`` (the ``top`` nearest windows in weighted feature space) or ``model``
    (the ``top`` nearest by the hidden state of the checkpoint ``model``; exact, or with
    ``approximate=True`` through a faiss HNSW graph, the optional ``candletok[search]``)."""
    if mode not in MODES:
        raise CandletokError(f"Unknown mode {mode!r}; use exact, nearest or model.")
    if last < 1 or top < 1 or min_matches < 0:
        raise CandletokError("last and top must be at least 1, min_matches at least 0.")
    hs = check_horizons(horizons)
    idx = dataset if isinstance(dataset, SearchIndex) else open_index(dataset)
    tok = idx.tokenizer()
    q = _make_query(idx, tok, query, at, source)
    if q.tokens.size < last:
        raise CandletokError(f"{q.symbol} has only {q.tokens.size} candles up to "
                             f"{from_us(q.T):%Y-%m-%d}; ask for last={q.tokens.size} or fewer.")
    check_reach(idx, hs, last)
    rule = TimeRule(q.T, last, hs, q.q_sid, q.q_end)
    if mode == "exact":
        found, rule = _exact(idx, tok, q, rule, last, min_matches)
    elif mode == "nearest":
        found = _nearest(idx, tok, q, rule, top)
    else:
        found = _model(idx, tok, q, rule, top, model, device, approximate)
    return _result(idx, tok, q, rule, found, mode, last, top, at)


def _make_query(idx: SearchIndex, tok: Tokenizer, query: str | pl.DataFrame, at: When,
                source: str | None) -> Query:
    if isinstance(query, pl.DataFrame):
        return from_bars(idx, tok, query, at, "bars")
    if source is None:
        return from_dataset(idx, tok, str(query).strip(), at)
    from candletok.data.sources import load_bars

    bars = load_bars([str(query).strip()], source=source, interval=idx.interval)
    return from_bars(idx, tok, bars, at, source)


def _result(idx: SearchIndex, tok: Tokenizer, q: Query, rule: TimeRule, found: Found,
            mode: str, last: int, top: int, at: When) -> SimilarResult:
    cut = Cut.of(idx, rule)
    rho, mbar = cross_correlation(idx, rule.T)
    rows, fwd = [], {}
    for h in rule.horizons:
        base = stats.base_outcome(cut, h, rho, mbar)
        m = stats.match_outcome(cut, found.e, h, rho, base)
        rows += [m.row(), base.row()]
        ok = cut.available(found.e, h)
        fwd[h] = {"matches": stats.forward(idx, found.e[ok], h)[0]}
    outcomes = pl.DataFrame(rows)
    words = list(found.notes)
    words += [stats.verdict(*_pair(outcomes, h)) for h in rule.horizons]
    rng = _next_range(idx, cut, found.e)
    matches, listed = _matches_frame(idx, found, rule, mode, top)
    n_eff, clusters = effective_n(idx, found.e[cut.available(found.e, rule.h0)], rule.h0, rho)
    summary = {
        "symbol": q.symbol, "T": from_us(q.T).isoformat(), "at": None if at is None else str(at),
        "origin": q.origin, "mode": mode, "last": last, "window": found.window,
        "backed_off": found.window < last, "matches": int(found.e.size),
        "candidates": found.raw, "eligible": found.eligible, "zone": rule.zone,
        "search": found.search or f"sorted n-gram lookup of the last {found.window} tokens",
        "n_eff": n_eff, "clusters": clusters, "rho": rho, "horizons": list(rule.horizons),
        "index_candles": idx.n, "symbols": len(idx.symbols),
        "query_tokens": [int(t) for t in q.tokens[-last:]],
        "interval": idx.interval,
        "intraday": is_intraday(idx.interval, q.candles["ts"].dt.epoch("us").to_numpy()),
        "price_decimals": price_decimals(q.candles.select(PRICES).to_numpy()),
    }
    qc = q.candles.tail(last)
    return SimilarResult(matches, outcomes, summary, words, qc, rng, fwd, idx, tok, listed,
                         rule.with_window(found.window), q.candles.tail(last + 30))


def _pair(outcomes: pl.DataFrame, h: int) -> tuple[stats.Outcome, stats.Outcome]:
    """The matches and base rows of horizon h back as Outcome objects (for the words)."""
    def one(who: str) -> stats.Outcome:
        r = outcomes.filter((pl.col("horizon") == h) & (pl.col("who") == who)).row(0, named=True)
        return stats.Outcome(h, who, r["n"], r["truncated"], r["n_eff"], r["p_up"], r["p_lo"],
                             r["p_hi"], r["mean_log"], r["median_log"],
                             (r["q10_pct"], r["q50_pct"], r["q90_pct"]),
                             (r["q10_vol"], r["q50_vol"], r["q90_vol"]), r["p_value"])
    return one("matches"), one("base")


def _next_range(idx: SearchIndex, cut: Cut, e: np.ndarray) -> pl.DataFrame:
    """The next candle's real range (stored high / low) for the matches whose next candle
    is in their series by T (never the next symbol's first candle) and for every base
    window."""
    return pl.DataFrame([{"who": "matches", **stats.next_range(idx, e[cut.available(e, 1)])},
                         {"who": "base", **stats.next_range(idx, None, cut)}])


def _matches_frame(idx: SearchIndex, found: Found, rule: TimeRule, mode: str, top: int
                   ) -> tuple[pl.DataFrame, np.ndarray]:
    """One row per listed match (and their window ends): exact lists the most recent
    ``top``, the other modes their ``top`` nearest (in distance order)."""
    e, d = found.e, found.dist
    order = np.argsort(-np.asarray(idx.ts[e]), kind="stable") if mode == "exact" else \
        np.arange(e.size)
    order = order[:top]
    e, d = e[order], d[order]
    sid = idx.sid[e]
    limits = Cut.of(idx, rule).limits
    cols: dict[str, Any] = {
        "rank": np.arange(1, e.size + 1),
        "symbol": [idx.symbols[s] for s in sid.tolist()],
        "start": pl.Series(np.asarray(idx.ts[e - found.window + 1])).cast(
            pl.Datetime("us", "UTC")),
        "end": pl.Series(np.asarray(idx.ts[e])).cast(pl.Datetime("us", "UTC")),
        "distance": d,
    }
    for h in rule.horizons:
        ok = e + h < limits[sid]
        r = np.full(e.size, np.nan)
        r[ok] = idx.log_close[e[ok] + h] - idx.log_close[e[ok]]
        cols[f"fwd_{h}"] = pl.Series(r).fill_nan(None)
    return pl.DataFrame(cols), e
