"""Tokens in words: "gap up small, long bullish body, no upper wick, long lower wick".

Thresholds are in volatility units (the features are already divided by the causal
scale), so the same words mean the same thing for a calm utility and a wild small cap.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# (upper bound of |value|, word) in volatility units, checked in order.
GAP_WORDS: tuple[tuple[float, str], ...] = ((0.05, "no gap"), (0.4, "small"), (1.2, ""),
                                            (np.inf, "large"))
BODY_WORDS: tuple[tuple[float, str], ...] = ((0.08, "doji"), (0.4, "small"), (1.0, ""),
                                             (np.inf, "long"))
WICK_WORDS: tuple[tuple[float, str], ...] = ((1e-9, "no"), (0.15, "tiny"), (0.45, ""),
                                             (np.inf, "long"))


def _pick(x: float, words: tuple[tuple[float, str], ...]) -> str:
    for bound, word in words:
        if abs(x) < bound:
            return word
    return words[-1][1]


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def describe_features(f: np.ndarray | Sequence[float], names: Sequence[str]) -> str:
    """One candle's normalized features in words (NaN features give "missing")."""
    v = dict(zip(names, (float(x) for x in f), strict=True))
    if any(np.isnan(x) for x in v.values()):
        return "missing"
    g, b, u, lo = v["gap"], v["body"], v["upper"], v["lower"]
    gw = _pick(g, GAP_WORDS)
    gap = gw if gw == "no gap" else _join("gap", "up" if g > 0 else "down", gw)
    bw = _pick(b, BODY_WORDS)
    body = "doji body" if bw == "doji" else _join(bw, "bullish" if b > 0 else "bearish", "body")
    parts = [gap, body, _join(_pick(u, WICK_WORDS), "upper wick"),
             _join(_pick(lo, WICK_WORDS), "lower wick")]
    if "vol" in v:
        x = v["vol"]
        parts.append("low volume" if x < -0.4 else "high volume" if x > 0.4 else "usual volume")
    return ", ".join(parts)


def describe_matrix(F: np.ndarray, names: Sequence[str]) -> list[str]:
    """Words for every row of an (n, d) feature matrix (vocab tables: n is the vocab),
    each one different: rows whose words coincide (two volume bins both "usual volume")
    get the features in which they differ appended, in volatility units, e.g.
    "..., usual volume (vol -0.12)". Why: a reader of ``vocab.txt`` or of a forecast's
    top candles must be able to tell every token apart by its words. A row that is
    exactly 0 in every differing feature (an exact zero bin) keeps the plain words."""
    F = np.asarray(F, dtype=np.float64)
    words = [describe_features(row, names) for row in F]
    groups: dict[str, list[int]] = {}
    for i, w in enumerate(words):
        groups.setdefault(w, []).append(i)
    for w, rows in groups.items():
        if len(rows) < 2 or w == "missing":
            continue
        sub = F[rows]
        differ = [j for j in range(sub.shape[1]) if np.unique(sub[:, j]).size > 1]
        plain = [k for k, r in enumerate(rows) if all(F[r, j] == 0.0 for j in differ)]
        for digits in range(2, 8):
            tags = [", ".join(f"{names[j]} {F[r, j]:+.{digits}f}" for j in differ)
                    for r in rows]
            if len(set(tags)) == len(tags):
                break
        else:
            tags = [f"{t} #{k}" for k, t in enumerate(tags)]
        for k, r in enumerate(rows):
            if not (len(plain) == 1 and k == plain[0]):
                words[r] = f"{w} ({tags[k]})"
    return words
