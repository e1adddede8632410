"""``similar``: what happened after candles like these, with the base rate beside it.

    res = similar("ds", "AAPL", last=5)                    # exact: the same 5 tokens
    res = similar("ds", "MSFT", last=8, mode="nearest", at="2012-06-01")
    res = similar("ds", "MSFT", SearchSpec(mode="nearest", last=8))  # the same search
    res.outcomes        # per horizon: matches and base rate, interval, test
    res.matches         # the matches: symbol, dates, distance, forward returns
    res.words           # the verdicts in words

The time rule (see :mod:`candletok.search.timerule`) decides which windows may answer:
only those whose forward window ends by the query's time T, in every symbol, away from
the query's own window, thinned so that no two overlap.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from candletok.core.display import is_intraday, price_decimals
from candletok.core.errors import CandletokError
from candletok.search import forecast, stats
from candletok.search.index import SearchIndex, open_index
from candletok.search.modes import Found, get_mode, modes, register_mode
from candletok.search.query import Query, When, from_bars, from_dataset, from_us
from candletok.search.result import SimilarResult
from candletok.search.spec import DEFAULT_HORIZONS, SearchSpec, check_horizons
from candletok.search.timerule import Cut, TimeRule, cross_correlation, effective_n
from candletok.tokenize.base import Tokenizer

PRICES = ("open", "high", "low", "close")


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


def similar(
    dataset: str | Path | SearchIndex,
    query: str | pl.DataFrame,
    spec: SearchSpec | None = None,
    *,
    at: When = None,
    source: str | None = None,
    last: int | None = None,
    mode: str | None = None,
    top: int | None = None,
    horizons: Sequence[int] | str | None = None,
    min_matches: int | None = None,
    model: str | Path | None = None,
    device: str | None = None,
    approximate: bool | None = None,
    alphabet: str | None = None,
) -> SimilarResult:
    """What followed the windows of history most like the query's last ``last`` candles.

    ``query`` is a symbol (its candles come from the dataset, or from ``source`` when
    given) or a frame of canonical bars of one symbol. ``at`` asks as of a past time: the
    query ends at its last bar at or before ``at`` and nothing after that bar is used.
    The search is ``spec`` (a :class:`~candletok.search.spec.SearchSpec`), with any
    keyword given replacing its field (the defaults: last=5, mode="exact", top=20,
    horizons=(1, 5, 10), min_matches=10). ``mode`` is one of
    :func:`~candletok.search.modes.modes`: ``exact`` (the same symbols of ``alphabet``:
    ``coarse``, the default, or ``tokens``; all matches count, the ``top`` most recent are
    listed; backs off to fewer candles while there are fewer than ``min_matches``, and
    says what to try), ``nearest`` (the ``top`` nearest windows in weighted feature space)
    or ``model`` (the ``top`` nearest by the hidden state of the checkpoint ``model``;
    exact, or with ``approximate=True`` through a faiss HNSW graph, the optional
    ``candletok[search]``), or any mode registered with
    :func:`~candletok.search.modes.register_mode`."""
    spec = SearchSpec.of(spec, last=last, mode=mode, top=top, horizons=horizons,
                         min_matches=min_matches, model=model, device=device,
                         approximate=approximate, alphabet=alphabet)
    last = spec.last
    idx = dataset if isinstance(dataset, SearchIndex) else open_index(dataset)
    tok = idx.tokenizer()
    q = _make_query(idx, tok, query, at, source)
    if q.tokens.size < last:
        raise CandletokError(f"{q.symbol} has only {q.tokens.size} candles up to "
                             f"{from_us(q.T):%Y-%m-%d}; ask for last={q.tokens.size} or fewer.")
    check_reach(idx, spec.horizons, last)
    rule = TimeRule(q.T, last, spec.horizons, q.q_sid, q.q_end)
    found, rule = spec.search_mode.search(idx, tok, q, rule, spec)
    return _result(idx, tok, q, rule, found, spec, at)


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
            spec: SearchSpec, at: When) -> SimilarResult:
    mode, last = spec.mode, spec.last
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
    note = stats.looks_note(len(rule.horizons))
    words += [note] if note else []
    rng = _next_range(idx, cut, found.e)
    # a mode whose matches share the query's symbols has one distance: equal weights
    dist = np.zeros(found.e.size) if spec.search_mode.same_tokens else found.dist
    inputs = forecast.Inputs(found.e, dist, rho,
                             forecast.query_scale(idx, tok, q.q_end, q.candles))
    fcast = forecast.forecast_rows(idx, cut, inputs, tuple(rule.horizons))
    matches, listed = _matches_frame(idx, found, rule, spec)
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
        "alphabet": spec.alphabet if spec.search_mode.uses_alphabet else None,
        "same_tokens": spec.same_tokens,
        **_symbol_words(spec, q, last),
        "interval": idx.interval,
        "intraday": is_intraday(idx.interval, q.candles["ts"].dt.epoch("us").to_numpy()),
        "price_decimals": price_decimals(q.candles.select(PRICES).to_numpy()),
    }
    qc = q.candles.tail(last)
    return SimilarResult(matches, outcomes, summary, words, qc, rng, fwd, idx, tok, listed,
                         rule.with_window(found.window), q.candles.tail(last + 30),
                         forecast=fcast, analogue_inputs=inputs)


def _symbol_words(spec: SearchSpec, q: Query, last: int) -> dict[str, Any]:
    """The query candles' symbols in words and the thresholds they mean, when the mode
    matched the coarse alphabet (what a reader needs to see what was matched)."""
    from candletok.search.alphabet import get_alphabet

    alpha = get_alphabet(spec.alphabet) if spec.search_mode.uses_alphabet else None
    if alpha is None:
        return {}
    syms = alpha.symbols(q.feats[-last:], q.tokens[-last:])
    return {"query_symbols": [alpha.describe(int(x)) for x in syms],
            "alphabet_rules": alpha.rules()}


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


def _matches_frame(idx: SearchIndex, found: Found, rule: TimeRule, spec: SearchSpec
                   ) -> tuple[pl.DataFrame, np.ndarray]:
    """One row per listed match (and their window ends): a mode where every match counts
    (exact) lists the most recent ``top``, the others their ``top`` nearest (in distance
    order)."""
    e, d = found.e, found.dist
    order = np.argsort(-np.asarray(idx.ts[e]), kind="stable") if spec.search_mode.by_recency \
        else np.arange(e.size)
    order = order[:spec.top]
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


__all__ = ["DEFAULT_HORIZONS", "PRICES", "Found", "SearchSpec", "check_horizons", "check_reach",
           "get_mode", "modes", "register_mode", "similar"]
