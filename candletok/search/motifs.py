"""``motifs``: the most frequent n-grams of a dataset's candles (coarse alphabet symbols
by default, :mod:`candletok.search.alphabet`; the vocabulary's tokens with
``alphabet="tokens"``), in words, with what followed
them against the base rate, corrected for how many motifs were tested.

Counting is over every window of n candles inside one series (overlapping occurrences
count; windows with a special token do not). Outcomes use the time rule with T = the
last bar (or ``at``): each motif's occurrences are thinned in time order with the
exclusion zone n + max(h), and each (motif, horizon) gets a binomial test against the
base rate on its effective count. The Benjamini-Hochberg correction runs over all
``top x len(horizons)`` tests at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy import stats as sps

from candletok.core.errors import CandletokError
from candletok.core.horizons import check_horizons
from candletok.core.ids import N_SPECIAL
from candletok.core.jsonsafe import clean_json
from candletok.search import stats
from candletok.search.alphabet import (
    DEFAULT_ALPHABET,
    alphabet_index,
    check_alphabet,
    get_alphabet,
)
from candletok.search.grams import ranges_to_indices
from candletok.search.index import SearchIndex, open_index
from candletok.search.query import When, from_us, to_us
from candletok.search.similar import DEFAULT_HORIZONS, check_reach
from candletok.search.timerule import (
    Cut,
    TimeRule,
    cross_correlation,
    series_limits,
    thin_chronological,
)


@dataclass
class MotifResult:
    """One row per motif (``motifs``), the tidy per-horizon outcomes with p and q values
    (``outcomes``), the base rate per horizon (``base``), and the summary."""

    motifs: pl.DataFrame
    outcomes: pl.DataFrame
    base: pl.DataFrame
    summary: dict[str, Any]
    words: list[str]

    def to_dict(self) -> dict[str, Any]:
        def rows(df: pl.DataFrame) -> list[dict[str, Any]]:
            return [{k: clean_json(v) for k, v in r.items()} for r in df.to_dicts()]

        return {"summary": {k: clean_json(v) for k, v in self.summary.items()},
                "words": self.words, "motifs": rows(self.motifs),
                "outcomes": rows(self.outcomes), "base": rows(self.base)}


def ngram_keys(idx: SearchIndex, n: int, T: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(window ends, int64 mixed-radix keys oldest token first) of every n-candle window
    inside one series, ending at or before T, with candle tokens only."""
    if idx.radix ** n >= 1 << 63:
        raise CandletokError(f"n={n} candles of a {idx.radix}-token vocabulary do not fit one "
                             "64-bit key; use a smaller n.")
    starts = np.asarray(idx.starts, dtype=np.int64)
    hi = starts[1:].copy()
    if T is not None:
        hi = series_limits(idx, T)
    e = ranges_to_indices(starts[:-1] + n - 1, np.maximum(hi, starts[:-1] + n - 1))
    key = np.zeros(e.size, dtype=np.int64)
    ok = np.ones(e.size, dtype=bool)
    for lag in range(n - 1, -1, -1):
        t = np.asarray(idx.tokens[e - lag]).astype(np.int64)
        ok &= t >= N_SPECIAL
        key = key * idx.radix + t
    return e[ok], key[ok]


def decode_key(key: int, n: int, radix: int) -> list[int]:
    """Tokens (oldest first) of a mixed-radix n-gram key."""
    out = []
    for _ in range(n):
        key, t = divmod(int(key), radix)
        out.append(t)
    return out[::-1]


def motifs(
    dataset: str | Path | SearchIndex,
    n: int = 3,
    top: int = 20,
    horizons: Sequence[int] | str = DEFAULT_HORIZONS,
    at: When = None,
    alphabet: str = DEFAULT_ALPHABET,
) -> MotifResult:
    """The ``top`` most frequent n-candle sequences (of ``alphabet``'s symbols: ``coarse``
    or ``tokens``) with their forward outcomes against the base rate, and
    Benjamini-Hochberg q-values over every test made."""
    if not 1 <= n <= 8:
        raise CandletokError("n must be between 1 and 8 candles.")
    if top < 1:
        raise CandletokError("top must be at least 1.")
    hs = check_horizons(horizons)
    idx = dataset if isinstance(dataset, SearchIndex) else open_index(dataset)
    check_reach(idx, hs, n)
    tok = idx.tokenizer()
    alpha = get_alphabet(check_alphabet(alphabet))
    grams = idx if alpha is None else alphabet_index(idx, alpha)  # same positions
    describe = tok.describe if alpha is None else alpha.describe
    T_at = to_us(at)
    T = int(np.asarray(idx.ts).max()) if T_at is None else T_at
    e, keys = ngram_keys(grams, n, T)
    if keys.size == 0:
        raise CandletokError(f"The dataset has no window of {n} candles before T.")
    uniq, counts = np.unique(keys, return_counts=True)
    order = np.lexsort((uniq, -counts))[:top]
    top_keys, top_counts = uniq[order], counts[order]
    rule = TimeRule(T, n, hs)
    cut = Cut.of(idx, rule)
    rho, mbar = cross_correlation(idx, T)
    base = {h: stats.base_outcome(cut, h, rho, mbar) for h in hs}
    sel = np.isin(keys, top_keys)
    e_top, k_top = e[sel], keys[sel]
    out_rows: list[dict[str, Any]] = []
    motif_rows: list[dict[str, Any]] = []
    for rank, (k, c) in enumerate(zip(top_keys.tolist(), top_counts.tolist(), strict=True), 1):
        occ = np.sort(e_top[k_top == k])
        occ = thin_chronological(idx, occ[cut.eligible(occ)], rule.zone)
        toks = decode_key(k, n, grams.radix)
        motif_rows.append({"rank": rank, "tokens": toks,
                           "words": " → ".join(describe(t) for t in toks),
                           "count": c, "share": c / keys.size, "matches": int(occ.size)})
        for h in hs:
            m = stats.match_outcome(cut, occ, h, rho, base[h])
            out_rows.append({"rank": rank, **m.row()})
    outcomes = pl.DataFrame(out_rows)
    pv = outcomes["p_value"].to_numpy()
    q = np.full(pv.size, np.nan)
    fin = np.isfinite(pv)
    if fin.any():
        q[fin] = sps.false_discovery_control(pv[fin], method="bh")
    outcomes = outcomes.with_columns(pl.Series("q_value", q))
    table = _wide(pl.DataFrame(motif_rows), outcomes, hs)
    base_df = pl.DataFrame([b.row() for b in base.values()])
    n_sig = int((q < stats.ALPHA).sum())
    words = [_summary_words(n_sig, int(fin.sum()), len(top_keys), n)]
    if alpha is not None:
        words.append(f"symbols ({alpha.name} alphabet, {alpha.size} a candle): {alpha.rules()}")
    summary = {"n": n, "top": len(top_keys), "horizons": list(hs), "T": from_us(T).isoformat(),
               "windows": int(keys.size), "distinct": int(uniq.size), "zone": rule.zone,
               "rho": rho, "tests": int(fin.sum()), "significant": n_sig,
               "index_candles": idx.n, "symbols": len(idx.symbols), "interval": idx.interval,
               "alphabet": "tokens" if alpha is None else alpha.name,
               "alphabet_rules": None if alpha is None else alpha.rules()}
    return MotifResult(table, outcomes, base_df, summary, words)


def _wide(motif_df: pl.DataFrame, outcomes: pl.DataFrame, hs: tuple[int, ...]) -> pl.DataFrame:
    """Per-motif row with, for each horizon, P(up), its interval, the mean return and q."""
    for h in hs:
        o = outcomes.filter(pl.col("horizon") == h).select(
            "rank", pl.col("n").alias(f"n_{h}"), pl.col("p_up").alias(f"p_up_{h}"),
            pl.col("p_lo").alias(f"p_lo_{h}"), pl.col("p_hi").alias(f"p_hi_{h}"),
            pl.col("mean_log").alias(f"mean_log_{h}"), pl.col("p_value").alias(f"p_{h}"),
            pl.col("q_value").alias(f"q_{h}"))
        motif_df = motif_df.join(o, on="rank", how="left")
    return motif_df


def _summary_words(n_sig: int, tests: int, n_motifs: int, n: int) -> str:
    if tests == 0:
        return (f"None of the {n_motifs} most frequent {n}-candle motifs has a forward "
                "window to test.")
    if n_sig == 0:
        return (f"None of the {n_motifs} most frequent {n}-candle motifs moves differently "
                f"from the base rate at 5% after the Benjamini-Hochberg correction "
                f"({tests} tests): frequent patterns here carry no measurable edge.")
    return (f"{n_sig} of {tests} (motif, horizon) tests differ from the base rate at 5% "
            f"after the Benjamini-Hochberg correction.")

