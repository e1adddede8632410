"""Tokens in words: "gap up small, long bullish body, no upper wick, long lower wick".

Thresholds are in volatility units (the features are already divided by the causal
scale), so the same words mean the same thing for a calm utility and a wild small cap
(:func:`thresholds_text` states them; ``inspect`` prints it).

Faithful words: when a vocabulary's tokens are boxes of feature values (the ``bins``
scheme's bins, :meth:`~candletok.tokenize.base.Tokenizer.token_bounds`), a word is said
only when it is true of every candle in the box, not just of its representative: a body
bin reads "doji" only when the whole bin lies within the doji threshold; a bin that
crosses a word's threshold is described by its range instead ("body -1.20..+1.20").
Each word covers one interval of the value line, so a word true at both ends of a bin is
true inside it.
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


VOL_LOW, VOL_HIGH = -0.4, 0.4  # "low volume" below, "high volume" above


def thresholds_text() -> str:
    """The thresholds the words use, in one line (what ``inspect`` prints)."""
    def bounds(words: tuple[tuple[float, str], ...], noun: str) -> str:
        out = []
        for b, w in words:
            out.append(w or noun)
            if np.isfinite(b):
                out.append(f"< {b:g} <=")
        return " ".join(out)
    return ("token words, in volatility units (|value|): gap: " + bounds(GAP_WORDS, "gap") +
            "; body: " + bounds(BODY_WORDS, "body") + "; wick: " +
            bounds(WICK_WORDS[1:], "wick") + " (no wick: exactly 0); volume: low < "
            f"{VOL_LOW:g}, high > {VOL_HIGH:g}; a word is said only when it holds for "
            "the whole bin, else the bin's range is given")


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
        parts.append(_vol_word(v["vol"]))
    return ", ".join(parts)


def _vol_word(x: float) -> str:
    return "low volume" if x < VOL_LOW else "high volume" if x > VOL_HIGH else "usual volume"


def _signed_word(x: float, words: tuple[tuple[float, str], ...], none: str, pos: str,
                 neg: str, noun: str) -> str:
    """"gap up small" / "long bullish body" (the words of :func:`describe_features`)."""
    w = _pick(x, words)
    if w == words[0][1]:
        return none
    side = pos if x > 0 else neg
    return _join("gap", side, w) if noun == "gap" else _join(w, side, noun)


def _feature_word(name: str, x: float) -> str:
    """The word one feature value gets (each word is one interval of values)."""
    if name == "gap":
        return _signed_word(x, GAP_WORDS, "no gap", "up", "down", "gap")
    if name == "body":
        return _signed_word(x, BODY_WORDS, "doji body", "bullish", "bearish", "body")
    if name in ("upper", "lower"):
        return _join(_pick(x, WICK_WORDS), f"{name} wick")
    return _vol_word(x)


def _num(x: float) -> str:
    return f"{x:+.2f}"


def _range_text(name: str, lo: float, hi: float) -> str:
    """A feature's box in volatility units: "gap -0.57..+0.60", "upper wick >= +0.26"."""
    label = {"upper": "upper wick", "lower": "lower wick"}.get(name, name)
    if name in ("upper", "lower") and lo <= 1e-6:  # from (or just above) zero
        if np.isfinite(hi):
            return f"{label} < {_num(hi)}"
        return f"some {label}" if lo > 0 else f"any {label}"  # some: never exactly 0
    if not np.isfinite(lo):
        return f"{label} < {_num(hi)}"
    if not np.isfinite(hi):
        return f"{label} >= {_num(lo)}"
    return f"{label} {_num(lo)}..{_num(hi)}"


def _side_text(name: str, lo: float, hi: float) -> str | None:
    """"gap down (< -0.55)", "bullish body (+0.43..+0.62)": a gap or body box wholly on
    one side of its "no gap" / "doji" band (None when it is not)."""
    if name not in ("gap", "body"):
        return None
    band = (GAP_WORDS if name == "gap" else BODY_WORDS)[0][0]
    if lo >= band:
        side = "gap up" if name == "gap" else "bullish body"
    elif hi <= -band:
        side = "gap down" if name == "gap" else "bearish body"
    else:
        return None
    r = _range_text(name, lo, hi)[len(name) + 1:]
    return f"{side} ({r})"


def describe_bounds(lo: np.ndarray, hi: np.ndarray, names: Sequence[str]) -> str:
    """Words true of every candle whose features lie in the box [lo, hi) (per feature):
    a feature's word when its lowest and highest values get the same word, else its
    range in volatility units. Why: a bin's representative can be a doji while the bin
    holds bodies of a whole volatility unit."""
    parts = []
    for name, a, b in zip(names, (float(x) for x in lo), (float(x) for x in hi), strict=True):
        top = float(np.nextafter(b, -np.inf))  # the box is open at the top
        if name in ("upper", "lower"):
            a = max(a, 0.0)
        wa, wb = _feature_word(name, a), _feature_word(name, top)
        parts.append(wa if wa == wb else _side_text(name, a, b) or _range_text(name, a, b))
    return ", ".join(parts)


def describe_matrix(F: np.ndarray, names: Sequence[str],
                    bounds: tuple[np.ndarray, np.ndarray] | None = None) -> list[str]:
    """Words for every row of an (n, d) feature matrix (vocab tables: n is the vocab),
    each one different: rows whose words coincide (two volume bins both "usual volume")
    get the features in which they differ appended, in volatility units, e.g.
    "..., usual volume (vol -0.12)". Why: a reader of ``vocab.txt`` or of a forecast's
    top candles must be able to tell every token apart by its words. A row that is
    exactly 0 in every differing feature (an exact zero bin) keeps the plain words.

    With ``bounds`` (each row's box, (lo, hi) of shape (n, d)), the words are those true
    of the whole box (:func:`describe_bounds`) and rows are told apart by their ranges
    ("(vol -0.40..-0.10)"), never by a representative value."""
    F = np.asarray(F, dtype=np.float64)
    if bounds is not None:
        lo, hi = (np.asarray(b, dtype=np.float64) for b in bounds)
        words = [describe_bounds(lo[i], hi[i], names) if np.isfinite(F[i]).all()
                 else "missing" for i in range(F.shape[0])]
        return _distinct(words, lambda r, j, digits: _range_text(names[j], lo[r, j], hi[r, j]),
                         lambda r, j: (lo[r, j], hi[r, j]), F, names)
    words = [describe_features(row, names) for row in F]
    return _distinct(words, lambda r, j, digits: f"{names[j]} {F[r, j]:+.{digits}f}",
                     lambda r, j: F[r, j], F, names)


def _distinct(words: list[str], tag: object, value: object, F: np.ndarray,
              names: Sequence[str]) -> list[str]:
    """Make every row's words different (see :func:`describe_matrix`): ``tag(r, j,
    digits)`` tells row r's feature j, ``value(r, j)`` says whether two rows differ."""
    groups: dict[str, list[int]] = {}
    for i, w in enumerate(words):
        groups.setdefault(w, []).append(i)
    for w, rows in groups.items():
        if len(rows) < 2 or w == "missing":
            continue
        differ = [j for j in range(F.shape[1])
                  if len({value(r, j) for r in rows}) > 1]  # type: ignore[operator]
        plain = [k for k, r in enumerate(rows) if all(F[r, j] == 0.0 for j in differ)]
        for digits in range(2, 8):
            tags = [", ".join(tag(r, j, digits) for j in differ)  # type: ignore[operator]
                    for r in rows]
            if len(set(tags)) == len(tags):
                break
        else:
            tags = [f"{t} #{k}" for k, t in enumerate(tags)]
        for k, r in enumerate(rows):
            if not (len(plain) == 1 and k == plain[0]):
                words[r] = f"{w} ({tags[k]})"
    return words
