"""A coarse search alphabet: each candle as one of 18 small, faithful symbols (gap down /
none / up x body bear / doji / bull x range narrow / wide), for exact search and motifs.

Why: the default vocabulary has about a thousand tokens, so on 10k candles almost no
3-candle sequence repeats and exact search backs off to one candle; a coarse *token*
vocabulary (``--bins 3,3,2,2``) repeats, but its bins are quantiles, so its "doji" held
bodies up to +-1.2 volatility units. Here every symbol is a statement with a threshold
in volatility units that holds for every candle carrying it:

* gap: ``|gap| < GAP`` is "no gap", else up or down;
* body: ``|body| < DOJI`` is a doji, else bull or bear;
* range: ``upper + |body| + lower >= WIDE`` (the bar's log high/low range over the causal
  scale) is "wide", else "narrow".

The symbols are computed from each candle's own stored bar, previous close and causal
scale (the features the tokens were encoded from, :func:`candletok.search.query.own_features`),
so the dataset is never re-encoded and the time rule holds as it does for the tokens: a
candle's symbol depends on its bar and the bars before it only.

The thresholds were chosen on the sample's train split (:func:`choose`, ``docs/search.md``):
among gap in {0.05, 0.1, 0.2}, doji in {0.05, 0.08, 0.1} and a range split in
{none, 0.6, 0.8, 1.0} volatility units, the alphabet with the most information per
candle (entropy) whose 20th most frequent 3-candle motif still occurs at least 30 times:
gap 0.05, doji 0.1, wide 0.6 (3.56 bits a candle; on train its top 3-candle motif occurs
59 times, its 20th 42 times).

The symbol array and its n-gram keys are an index of their own (a
:class:`~candletok.search.index.SearchIndex` sharing the dataset index's positions, so a
match found there is the same candle in the dataset index), cached under
``DIR/_index/search/alphabet-<name>.npz`` with the dataset index's key and a digest of
its arrays: a rebuilt dataset index replaces the folder, an edited cache is rebuilt.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from candletok.core.atomic import atomic_path
from candletok.core.errors import CandletokError
from candletok.core.ids import MISSING, N_SPECIAL
from candletok.search.index import SearchIndex, index_dir
from candletok.tokenize.base import Tokenizer

log = logging.getLogger(__name__)

ALPHABETS = ("coarse", "tokens")  # "tokens": the dataset's own vocabulary
DEFAULT_ALPHABET = "coarse"
GAP_WORDS = ("gap down", "no gap", "gap up")
BODY_WORDS = ("bear", "doji", "bull")
RANGE_WORDS = ("narrow", "wide")
GRID = {"gap": (0.05, 0.1, 0.2), "doji": (0.05, 0.08, 0.1), "wide": (None, 0.6, 0.8, 1.0)}
MIN_TOP20 = 30  # the 20th most frequent 3-candle motif on train must occur this often


@dataclass(frozen=True)
class Alphabet:
    """Thresholds in volatility units (``wide=None``: no range split, 9 symbols)."""

    gap: float = 0.05
    doji: float = 0.1
    wide: float | None = 0.6
    name: str = "coarse"

    @property
    def ranges(self) -> int:
        return 1 if self.wide is None else 2

    @property
    def size(self) -> int:
        """How many candle symbols (ids ``N_SPECIAL .. N_SPECIAL + size - 1``)."""
        return 9 * self.ranges

    @property
    def radix(self) -> int:
        return N_SPECIAL + self.size

    def symbols(self, feats: np.ndarray, tokens: np.ndarray | None = None) -> np.ndarray:
        """uint16 symbol ids of an (n, >= 4) feature matrix (gap, body, upper, lower in
        volatility units). A row without finite features keeps its special token id
        (``tokens`` given and special) or is MISSING. Vectorized, no loop per candle."""
        X = np.asarray(feats, dtype=np.float64)
        g, b = X[:, 0], X[:, 1]
        with np.errstate(invalid="ignore"):
            gi = np.where(g >= self.gap, 2, np.where(g <= -self.gap, 0, 1))
            bi = np.where(b >= self.doji, 2, np.where(b <= -self.doji, 0, 1))
            s = gi * 3 + bi
            if self.wide is not None:
                s = s * 2 + (np.abs(b) + X[:, 2] + X[:, 3] >= self.wide)
        out = (s + N_SPECIAL).astype(np.uint16)
        bad = ~np.isfinite(X[:, :4]).all(axis=1)
        if bad.any():
            fill = np.full(int(bad.sum()), MISSING, dtype=np.uint16)
            if tokens is not None:
                t = np.asarray(tokens)[bad]
                fill = np.where(t < N_SPECIAL, t, MISSING).astype(np.uint16)
            out[bad] = fill
        return out

    def describe(self, symbol: int) -> str:
        """A symbol in words ("gap up, doji, wide"); the thresholds are :meth:`rules`."""
        s = int(symbol) - N_SPECIAL
        if not 0 <= s < self.size:
            return "missing" if int(symbol) == MISSING else "special"
        r = s % self.ranges
        s //= self.ranges
        parts = [GAP_WORDS[s // 3], BODY_WORDS[s % 3]]
        if self.wide is not None:
            parts.append(RANGE_WORDS[r])
        return ", ".join(parts)

    def rules(self) -> str:
        """The thresholds every word means, in one line (what ``inspect`` and ``motifs``
        print)."""
        out = (f"no gap: |gap| < {self.gap:g}; doji: |body| < {self.doji:g}")
        if self.wide is not None:
            out += f"; wide: upper + |body| + lower >= {self.wide:g}"
        return out + " (volatility units: log prices over the causal scale)"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "gap": self.gap, "doji": self.doji, "wide": self.wide}

    def digest(self) -> str:
        body = repr(sorted(self.to_dict().items())).encode()
        return hashlib.sha256(body).hexdigest()[:16]


COARSE = Alphabet()


def get_alphabet(name: str) -> Alphabet | None:
    """The alphabet called ``name`` (None for ``tokens``: the vocabulary itself)."""
    if name == "tokens":
        return None
    if name == "coarse":
        return COARSE
    raise CandletokError(f"Unknown alphabet {name!r}; use coarse or tokens.")


def check_alphabet(name: str) -> str:
    """``name`` normalised, or one sentence that lists the choices."""
    v = str(name).strip().lower()
    if v not in ALPHABETS:
        raise CandletokError(f"Unknown alphabet {name!r}; use coarse or tokens.")
    return v


def index_symbols(idx: SearchIndex, tok: Tokenizer, alphabet: Alphabet) -> np.ndarray:
    """The symbol of every candle of the index, from its own stored bar."""
    from candletok.search.query import own_features

    return alphabet.symbols(own_features(idx, tok, 0, idx.n), np.asarray(idx.tokens))


def alphabet_index(idx: SearchIndex, alphabet: Alphabet) -> SearchIndex:
    """``idx`` with its tokens replaced by ``alphabet``'s symbols and its n-gram array
    rebuilt over them: same positions, series, times and bars. Kept on ``idx`` for the
    life of the object and cached beside the dataset index (see the module docstring)."""
    views: dict[str, SearchIndex] = vars(idx).setdefault("_alphabet_views", {})
    name = alphabet.digest()
    if name in views:
        return views[name]
    path = None if idx.root is None else index_dir(idx.root) / f"alphabet-{alphabet.name}.npz"
    got = _load(path, idx, alphabet) if path is not None else None
    if got is None:
        syms = index_symbols(idx, idx.tokenizer(), alphabet)
        view = _view(idx, alphabet, syms)
        if path is not None:
            _save(path, idx, alphabet, view)
    else:
        view = _view(idx, alphabet, got[0], got[1])
    views[name] = view
    return view


def _view(idx: SearchIndex, alphabet: Alphabet, syms: np.ndarray,
          grams: np.ndarray | None = None) -> SearchIndex:
    if grams is None:
        bars = {c: np.asarray(getattr(idx, c)) for c in ("open", "high", "low", "volume")}
        return SearchIndex.from_arrays(
            idx.symbols, idx.starts, syms, idx.ts, idx.close, idx.prev_close, idx.scale,
            alphabet.radix, bars=bars, key=idx.key, fingerprint=idx.fingerprint,
            interval=idx.interval)
    from candletok.search.index import gram_order

    return SearchIndex(symbols=list(idx.symbols), starts=idx.starts, tokens=syms, ts=idx.ts,
                       close=idx.close, first_prev=idx.first_prev, scale=idx.scale,
                       grams=grams, open=idx.open, high=idx.high, low=idx.low,
                       volume=idx.volume, radix=alphabet.radix,
                       order=gram_order(alphabet.radix), key=idx.key,
                       fingerprint=idx.fingerprint, interval=idx.interval)


def _digest(key: str, alphabet: Alphabet, *arrays: np.ndarray) -> str:
    h = hashlib.sha256((key + alphabet.digest()).encode())
    for a in arrays:
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _load(path: Any, idx: SearchIndex, alphabet: Alphabet
          ) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached (symbols, grams), or None when absent, for other data or thresholds,
    or not what was saved (an edited cache is rebuilt, never trusted)."""
    try:
        with np.load(path) as z:
            if str(z["key"]) != idx.key or str(z["alphabet"]) != alphabet.digest():
                return None
            syms, grams = z["symbols"], z["grams"]
            if syms.shape != (idx.n,) or grams.shape != (idx.n,) or \
                    str(z["digest"]) != _digest(idx.key, alphabet, syms, grams):
                log.warning("the cached search alphabet %s does not match its checksum; "
                            "rebuilding it", path)
                return None
            return syms, grams
    except (OSError, KeyError, ValueError):
        return None


def _save(path: Any, idx: SearchIndex, alphabet: Alphabet, view: SearchIndex) -> None:
    """Cache the symbols and their n-gram keys beside the index; a read-only dataset
    recomputes them (a few vectorized passes)."""
    if not path.parent.is_dir() or not idx.key:
        return
    syms, grams = np.asarray(view.tokens), np.asarray(view.grams)
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, key=np.array(idx.key), alphabet=np.array(alphabet.digest()),
                     symbols=syms, grams=grams,
                     digest=np.array(_digest(idx.key, alphabet, syms, grams)))
    except OSError as exc:
        log.debug("could not cache %s (%s)", path, exc)


# ---- choosing the thresholds (on train) -----------------------------------------------------
def motif_counts(sid: np.ndarray, syms: np.ndarray, mask: np.ndarray, n: int = 3
                 ) -> np.ndarray:
    """Occurrence counts of every n-symbol window inside one series (``sid``: each
    candle's series id, series contiguous) whose candles are all in ``mask`` and none
    special, most frequent first. Vectorized: one key per window, one ``np.unique``."""
    sid, syms, mask = np.asarray(sid), np.asarray(syms), np.asarray(mask, dtype=bool)
    e = np.arange(n - 1, syms.size)
    ok = (sid[e] == sid[e - n + 1]) & mask[e] & mask[e - n + 1]
    key = np.zeros(e.size, dtype=np.int64)
    radix = int(syms.max()) + 1 if syms.size else 1
    for lag in range(n - 1, -1, -1):
        t = syms[e - lag].astype(np.int64)
        ok &= t >= N_SPECIAL
        key = key * radix + t
    _, counts = np.unique(key[ok], return_counts=True)
    return np.sort(counts)[::-1]


def choose(feats: np.ndarray, sid: np.ndarray, mask: np.ndarray) -> list[dict[str, Any]]:
    """Every alphabet of :data:`GRID` scored on the candles in ``mask`` (the train split)
    of an (n, >= 4) feature matrix (gap, body, upper, lower in volatility units; ``sid``
    each candle's series): its entropy per candle (bits), the counts of its 1st and 20th
    most frequent 3-candle motifs, and whether it is the pick (the highest entropy with a
    20th motif of at least :data:`MIN_TOP20` occurrences). Why a rule: the alphabet trades
    how much a symbol says against how often a 3-candle word repeats on 10k candles."""
    mask = np.asarray(mask, dtype=bool)
    rows = []
    for g in GRID["gap"]:
        for d in GRID["doji"]:
            for w in GRID["wide"]:
                a = Alphabet(g, d, w)
                s = a.symbols(feats)
                own = s[mask & (s >= N_SPECIAL)].astype(np.int64)
                p = np.bincount(own)[N_SPECIAL:] / max(own.size, 1)
                p = p[p > 0]
                c = motif_counts(sid, s, mask)
                rows.append({"gap": g, "doji": d, "wide": w, "symbols": a.size,
                             "bits": float(-(p * np.log2(p)).sum()),
                             "top1": int(c[0]) if c.size else 0,
                             "top20": int(c[19]) if c.size >= 20 else 0})
    ok = [r for r in rows if r["top20"] >= MIN_TOP20]
    best = max(ok, key=lambda r: r["bits"]) if ok else None
    for r in rows:
        r["chosen"] = r is best
    return rows


__all__ = ["ALPHABETS", "COARSE", "DEFAULT_ALPHABET", "Alphabet", "alphabet_index",
           "check_alphabet", "choose", "get_alphabet", "index_symbols", "motif_counts"]
