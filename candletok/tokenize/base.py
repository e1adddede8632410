"""The tokenizer interface every scheme implements, and the vocab file format.

A tokenizer is data: its fitted state (bin edges, centroids) lives in a JSON vocab file
whose ``fingerprint`` (a hash of the canonical content) every shard and checkpoint
records, so that tokens are never read with the wrong vocabulary. Schemes implement only
the feature-space part (``_fit_features``, ``_assign``, ``_representatives`` and their
state); everything about bars, prices, scales, files and generation is shared here.

Token ids are ``uint16``: ``PAD=0, BOS=1, EOS=2, MISSING=3`` at the lowest ids, candle
tokens after them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import polars as pl

from candletok.core.atomic import atomic_path
from candletok.core.errors import TokenizerError
from candletok.core.ids import BOS, EOS, MISSING, N_SPECIAL, PAD, SPECIALS
from candletok.tokenize.features import (
    POINT_MASS_MIN,
    ZERO_TOL,
    FeatureConfig,
    candle_feature_arrays,
    candle_features_grouped,
    frame_from_arrays,
    rebuild_bars,
    zero_shares,
)
from candletok.tokenize.generation import GenerationMixin

# Format 2 added exact zeros for point masses (kmeans' ``zero_features``, every fit's
# ``zero_shares``): a format 1 file still loads and encodes exactly as it did; a
# candletok that knows only format 1 refuses a format 2 file instead of misreading it.
VOCAB_FORMAT = "candletok-vocab/2"
READABLE_VOCAB_FORMATS: tuple[str, ...] = ("candletok-vocab/1", VOCAB_FORMAT)

T = TypeVar("T", bound="Tokenizer")

# each feature's point mass at 0 in a trader's words
ZERO_WORDS: dict[str, str] = {
    "gap": "open = previous close", "body": "close = open", "upper": "no upper wick",
    "lower": "no lower wick", "vol": "volume = its recent mean (or missing)",
}

def canonical_json(obj: Any) -> str:
    """Sorted keys, no spaces, floats in Python's shortest round-trip repr: one text per
    content, so the fingerprint does not depend on dict order or whitespace."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def content_fingerprint(content: dict[str, Any]) -> str:
    """sha256 (first 16 hex chars) of a vocab file's canonical content minus its fingerprint."""
    body = {k: v for k, v in content.items() if k != "fingerprint"}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()[:16]


class Tokenizer(GenerationMixin):
    """Base class: bars <-> tokens through normalized candle features.

    Subclasses set ``scheme`` and implement the feature-space methods. Use
    :func:`load_tokenizer` to read any saved vocabulary back.
    """

    scheme: ClassVar[str] = "base"
    PAD: ClassVar[int] = PAD
    BOS: ClassVar[int] = BOS
    EOS: ClassVar[int] = EOS
    MISSING: ClassVar[int] = MISSING
    N_SPECIAL: ClassVar[int] = N_SPECIAL

    def __init__(self, features: FeatureConfig | None = None) -> None:
        self.features: FeatureConfig = features or FeatureConfig()
        self.counts: np.ndarray | None = None  # candle-token counts on the fit data
        self._table: np.ndarray | None = None  # (vocab_size, d) representatives, NaN specials
        self._fingerprint: str | None = None
        # share of the fit candles on which each feature is exactly 0 (None: an older file)
        self.zero_shares: dict[str, float] | None = None

    # ---- scheme hooks -------------------------------------------------------------------
    def _fit_features(self, X: np.ndarray) -> None:
        raise NotImplementedError

    def _assign(self, X: np.ndarray) -> np.ndarray:
        """(n, d) finite features -> candle-token ids (already offset by N_SPECIAL)."""
        raise NotImplementedError

    def _prepare_assign(self, n_rows: int) -> None:
        """Build whatever :meth:`_assign_into` needs for about ``n_rows`` rows (an index),
        once, before worker threads call it."""

    def _assign_into(self, X: np.ndarray, out: np.ndarray) -> None:
        """Assign one chunk of finite rows into ``out`` on the calling thread (workers call
        it concurrently: no shared scratch, no thread pool of its own)."""
        out[:] = self._assign(X)

    def _encode_into(self, X: np.ndarray, out: np.ndarray) -> None:
        """:meth:`encode_features` for one chunk, written into ``out``."""
        if np.isfinite(X.sum()):  # one cheap pass: any NaN/inf makes the total non-finite
            self._assign_into(X, out)
            return
        ok = np.isfinite(X).all(axis=1)
        out[:] = self.MISSING
        if ok.any():
            sub = np.empty(int(ok.sum()), dtype=np.uint16)
            self._assign_into(X[ok], sub)
            out[ok] = sub

    def _ratio_kernel(self) -> Any:
        """Optional: a callable ``(R, scale, out)`` that writes the tokens of one chunk of
        price-feature ratios (see :func:`candletok.tokenize.features.candle_feature_arrays`)
        exactly as :meth:`_encode_into` would on the features; None to use the features."""
        return None

    def _representatives(self) -> np.ndarray:
        """(n_candle_tokens, d) representative features, in token order."""
        raise NotImplementedError

    def _params(self) -> dict[str, Any]:
        raise NotImplementedError

    def _state(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def _from_content(cls: type[T], content: dict[str, Any]) -> T:
        raise NotImplementedError

    @property
    def fitted(self) -> bool:
        raise NotImplementedError

    @property
    def n_candle_tokens(self) -> int:
        raise NotImplementedError

    # ---- derived ------------------------------------------------------------------------
    def _require_fit(self) -> None:
        if not self.fitted:
            raise TokenizerError(
                f"This {self.scheme} tokenizer is not fitted; call fit(bars) or load a vocab."
            )

    def _finish(self) -> None:
        """Rebuild derived tables (never saved) after fit or load."""
        reps = self._representatives()
        table = np.full((self.vocab_size, reps.shape[1]), np.nan)
        table[self.N_SPECIAL :] = reps
        self._table = table
        self._fingerprint = content_fingerprint(self._content())

    @property
    def vocab_size(self) -> int:
        """All token ids, specials included (what a model's embedding needs)."""
        return self.N_SPECIAL + self.n_candle_tokens

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.features.names

    @property
    def fingerprint(self) -> str:
        self._require_fit()
        assert self._fingerprint is not None
        return self._fingerprint

    # ---- fitting ------------------------------------------------------------------------
    def feature_matrix(self, bars: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray]:
        """Features frame and its (n, d) float64 matrix (column-major: each feature's
        column is contiguous, which is how the assigners read it)."""
        fa = candle_feature_arrays(bars, self.features)
        if fa is None:  # rows not grouped by symbol, or null prices: per-group Polars path
            feats = candle_features_grouped(bars, self.features)
            return feats, feats.select(self.feature_names).to_numpy(order="fortran")
        feats = frame_from_arrays(bars, fa, self.feature_names)
        if fa.first_only:
            return feats, fa.X[1:]
        X = np.empty((fa.X.shape[1], feats.height)).T
        for j in range(X.shape[1]):
            np.compress(fa.keep, fa.X[:, j], out=X[:, j])
        return feats, X

    def fit(self: T, bars: pl.DataFrame) -> T:
        """Learn the vocabulary from these (training) bars only; returns self."""
        feats, X = self.feature_matrix(bars)
        X = X[np.isfinite(X).all(axis=1)]
        if feats.height:
            self._default_scale = float(feats["scale"].median())
        if X.shape[0] < 2:
            raise TokenizerError(
                "Too few candles to fit a vocabulary; give at least a few bars per symbol."
            )
        shares = zero_shares(X, self.feature_names)
        if "vol" in shares and shares["vol"] == 1.0:
            raise TokenizerError(
                "Volume is zero, missing or constant on every fit candle, so the vol feature "
                "carries no information; fit without it (vol_bins=0: four --bins counts)."
            )
        self.zero_shares = shares
        self._format = VOCAB_FORMAT  # a refit is written in the current format
        self._fit_features(np.asarray(X, dtype=np.float64))
        self._table = None
        toks = self._assign(X)
        self.counts = np.bincount(
            toks.astype(np.int64) - self.N_SPECIAL, minlength=self.n_candle_tokens
        ).astype(np.int64)
        self._finish()
        return self

    # ---- feature space ------------------------------------------------------------------
    def encode_features(self, feats: np.ndarray) -> np.ndarray:
        """(n, d) normalized features -> uint16 tokens; rows with a NaN give ``MISSING``."""
        self._require_fit()
        X = np.asarray(feats, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise TokenizerError(
                f"Expected an (n, {len(self.feature_names)}) array of features "
                f"{', '.join(self.feature_names)}, got shape {X.shape}."
            )
        if np.isfinite(X.sum()):  # one cheap pass: any NaN/inf makes the total non-finite
            return self._assign(X)
        ok = np.isfinite(X).all(axis=1)
        if ok.all():  # only a finite total overflowed
            return self._assign(X)
        out = np.full(X.shape[0], self.MISSING, dtype=np.uint16)
        out[ok] = self._assign(X[ok])
        return out

    def decode_features(self, tokens: np.ndarray) -> np.ndarray:
        """uint16 tokens -> (n, d) representative features; special tokens give NaN rows."""
        self._require_fit()
        assert self._table is not None
        t = np.asarray(tokens).astype(np.int64, copy=False)
        if t.size and (t.min() < 0 or t.max() >= self.vocab_size):
            raise TokenizerError(
                f"Token ids must lie in [0, {self.vocab_size}); this vocabulary has "
                f"{self.vocab_size} tokens (is it the one the tokens were made with?)."
            )
        return self._table[t]

    # ---- bars ---------------------------------------------------------------------------
    def encode(self, bars: pl.DataFrame) -> pl.DataFrame:
        """Canonical bars -> ``symbol, ts, token (UInt16), prev_close, scale`` per candle
        (each series' first bar only anchors the next), sorted by ``(symbol, ts)``.

        On the fast path each cache-sized chunk of features is assigned as soon as it is
        computed (anchor rows carry zero features and are dropped afterwards), and the
        output frame is built once with one filter: neither a features frame nor an
        (n, d) feature matrix is ever materialized.
        """
        self._require_fit()
        toks = np.empty(bars.height, dtype=np.uint16)
        self._prepare_assign(bars.height)
        ratio_kernel = self._ratio_kernel()
        if ratio_kernel is not None:  # tokens straight from the ratios (bins)
            fa = candle_feature_arrays(
                bars, self.features,
                consume_ratios=lambda s, t, R, sc: ratio_kernel(R, sc, toks[s:t]),
            )
        else:
            fa = candle_feature_arrays(
                bars, self.features, consume=lambda s, t, Xc: self._encode_into(Xc, toks[s:t])
            )
        if fa is None:  # rows not grouped by symbol, or null prices: per-group Polars path
            feats, X = self.feature_matrix(bars)
            return feats.select(
                "symbol",
                "ts",
                pl.Series("token", self.encode_features(X), dtype=pl.UInt16),
                "prev_close",
                "scale",
            )
        return fa.kept_frame(bars, {"token": toks})

    def decode(self, encoded: pl.DataFrame) -> pl.DataFrame:
        """Tokens -> canonical bars, each candle rebuilt from its own row's prev_close and
        scale (anchored decoding); special tokens give null prices, volume is null."""
        self._require_fit()
        missing = [c for c in ("symbol", "ts", "token", "prev_close", "scale")
                   if c not in encoded.columns]
        if missing:
            raise TokenizerError(
                f"Cannot decode: column(s) {', '.join(missing)} missing; pass the frame "
                "that encode() or a dataset split returned."
            )
        D = self.decode_features(encoded["token"].to_numpy())
        o, h, lo, c = rebuild_bars(
            D, encoded["prev_close"].to_numpy(), encoded["scale"].to_numpy()
        )
        return pl.DataFrame(
            {
                "symbol": encoded["symbol"],
                "ts": encoded["ts"],
                "open": o,
                "high": h,
                "low": lo,
                "close": c,
            }
        ).with_columns(
            [pl.col(x).fill_nan(None) for x in ("open", "high", "low", "close")]
            + [pl.lit(None, dtype=pl.Float64).alias("volume")]
        )

    # ---- words and tables ---------------------------------------------------------------
    def describe(self, token: int) -> str:
        """A token in words, e.g. "gap up small, long bullish body, no upper wick, ...";
        no two tokens of a vocabulary read the same."""
        tok = int(token)
        for name, i in SPECIALS.items():
            if tok == i:
                return f"<{name}>"
        self.decode_features(np.array([tok]))  # checks the id
        return self._candle_words()[tok - self.N_SPECIAL]

    def token_bounds(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Per candle token, the box [lo, hi) of feature values its candles lie in, as
        two (n_candle_tokens, d) arrays, or None when tokens are not boxes (k-means
        cells): the words then describe the representative. Bins override it, so their
        words are true of every candle of a bin (:mod:`candletok.tokenize.words`)."""
        return None

    def _candle_words(self) -> list[str]:
        """Every candle token's words (unique, see ``describe_matrix``), computed once per
        fitted state: a token's words depend on the whole table, not on its row alone."""
        from candletok.tokenize.words import describe_matrix

        assert self._table is not None
        cached = getattr(self, "_words", None)
        if cached is None or cached[0] is not self._table:
            cached = (self._table, describe_matrix(self._table[self.N_SPECIAL :],
                                                   self.feature_names, self.token_bounds()))
            self._words = cached
        return cached[1]

    def token_table(self, counts: np.ndarray | None = None) -> pl.DataFrame:
        """One row per token: id, kind, meaning in words, representative features, and the
        count and share (``counts`` of length vocab_size or n_candle_tokens; default the
        counts stored from fitting)."""
        self._require_fit()
        assert self._table is not None
        ids = np.arange(self.vocab_size)
        c: np.ndarray | None = None
        if counts is None and self.counts is not None:
            counts = self.counts
        if counts is not None:
            counts = np.asarray(counts, dtype=np.int64)
            if counts.size == self.n_candle_tokens:
                counts = np.concatenate([np.zeros(self.N_SPECIAL, np.int64), counts])
            if counts.size != self.vocab_size:
                raise TokenizerError(
                    f"counts must have {self.vocab_size} or {self.n_candle_tokens} entries."
                )
            c = counts
        names = {v: f"<{k}>" for k, v in SPECIALS.items()}
        words = self._candle_words()
        data: dict[str, Any] = {
            "token": pl.Series(ids, dtype=pl.UInt16),
            "kind": ["special"] * self.N_SPECIAL + ["candle"] * self.n_candle_tokens,
            "meaning": [names[i] for i in range(self.N_SPECIAL)] + words,
        }
        for j, name in enumerate(self.feature_names):
            data[name] = self._table[:, j]
        df = pl.DataFrame(data).with_columns(
            [pl.col(n).fill_nan(None) for n in self.feature_names]
        )
        if c is not None:
            total = max(int(c.sum()), 1)
            df = df.with_columns(
                pl.Series("count", c, dtype=pl.Int64),
                pl.Series("share", c / total, dtype=pl.Float64),
            )
        return df

    # ---- files --------------------------------------------------------------------------
    def _content(self) -> dict[str, Any]:
        content: dict[str, Any] = {
            "format": getattr(self, "_format", VOCAB_FORMAT),  # a loaded file keeps its own
            "scheme": self.scheme,
            "params": self._params(),
            "specials": dict(SPECIALS),
            "features": self.features.to_dict(),
            "vocab_size": self.vocab_size,
            "default_scale": self.default_scale(),
            **self._state(),
        }
        if self.counts is not None:
            content["counts"] = [int(x) for x in self.counts]
        if self.zero_shares is not None:
            content["zero_shares"] = dict(self.zero_shares)
        return content

    def _load_fit_facts(self, content: dict[str, Any]) -> None:
        """What every scheme reads back besides its state: fit counts, the default scale
        and the zero shares (absent from files written before they were recorded)."""
        self._format = str(content["format"])
        if "counts" in content:
            self.counts = np.asarray(content["counts"], dtype=np.int64)
        self._default_scale = float(content["default_scale"])
        zs = content.get("zero_shares")
        self.zero_shares = None if zs is None else {str(k): float(v) for k, v in zs.items()}

    def exact_zero_features(self) -> tuple[str, ...]:
        """Features in which every candle that is 0 gets a token that is exactly 0 there
        (the scheme's guarantee, not a coincidence of the table)."""
        return ()

    def notes(self) -> list[str]:
        """Sentences about what the vocabulary can and cannot tell apart, for ``fit``,
        ``encode`` and ``inspect``: point masses at 0 on the fit data (and whether 0 is
        represented exactly), features that carry no information, merged bins."""
        self._require_fit()
        assert self._table is not None
        reps = self._table[self.N_SPECIAL :]
        out: list[str] = []
        masses = {n: v for n, v in (self.zero_shares or {}).items() if v > 0}
        if masses:
            exact = [n for n in self.exact_zero_features() if n in masses]
            rare = [n for n, v in masses.items() if n not in exact and v < POINT_MASS_MIN]
            rough = [n for n in masses if n not in exact and n not in rare]
            out.append(
                "point masses on the fit candles: " + ", ".join(
                    f"{ZERO_WORDS.get(n, n + ' = 0')} {v:.1%}" for n, v in masses.items())
                + (f"; exact zero tokens for {', '.join(exact)}" if exact else "")
                + (f"; not exact for {', '.join(rare)} (under {POINT_MASS_MIN:.0%} of the "
                   "candles: decoded to the nearest token)" if rare else "")
                + (f"; not exact for {', '.join(rough)} (this vocabulary has no zero token "
                   "for it: refit it)" if rough else "")
                + "."
            )
        for j, n in enumerate(self.feature_names):
            col = reps[:, j]
            if (self.zero_shares or {}).get(n) == 1.0:
                out.append(f"{n} carries no information: it is 0 on every fit candle "
                           f"({ZERO_WORDS.get(n, n + ' = 0')}), so the data never vary in it.")
            elif col.size and bool(np.all(np.abs(col - col[0]) < ZERO_TOL)):
                out.append(f"{n} carries no information: every token has the same {n} "
                           f"({col[0]:+.3g} vol).")
        return out

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the vocab JSON and a readable ``.txt`` table beside it, both atomically."""
        self._require_fit()
        content = self._content()
        content["fingerprint"] = self.fingerprint
        path = Path(path)
        if path.suffix.lower() == ".txt":
            raise TokenizerError(
                f"Name the vocabulary file with .json, not {path.name}: the readable "
                ".txt table is written beside it under that name."
            )
        # each lands atomically, the .txt first (the .json is what loads); each write sits
        # in its own file's block, so a full disk names the file that did not fit
        with atomic_path(path) as tmp_json:
            tmp_json.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
            with atomic_path(path.with_suffix(".txt")) as tmp_txt:
                tmp_txt.write_text(self.vocab_text(), encoding="utf-8")
        return path

    def vocab_text(self) -> str:
        """The human-readable table written beside the vocab file."""
        df = self.token_table()
        lines = [
            f"candletok vocabulary  scheme={self.scheme}  vocab_size={self.vocab_size}  "
            f"fingerprint={self.fingerprint}",
            f"params={canonical_json(self._params())}",
            f"features={canonical_json(self.features.to_dict())}",
            "",
            "token  " + "  ".join(f"{n:>7}" for n in self.feature_names)
            + ("    share" if "share" in df.columns else "") + "  meaning",
        ]
        for row in df.iter_rows(named=True):
            vals = "  ".join(
                f"{'':>7}" if row[n] is None else f"{row[n]:7.3f}" for n in self.feature_names
            )
            share = f"  {row['share']:7.3%}" if "share" in row else ""
            lines.append(f"{row['token']:>5}  {vals}{share}  {row['meaning']}")
        return "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        fp = self._fingerprint or "unfitted"
        return f"{type(self).__name__}({canonical_json(self._params())}, fingerprint={fp})"

    @classmethod
    def loads(cls, text: str, where: str = "the vocab text") -> Tokenizer:
        """A tokenizer from the text of a vocab file, refusing unknown formats, unknown
        schemes and tampered content. On the base class the file's scheme picks the
        subclass; import :mod:`candletok.tokenize.registry` (or call its
        ``load_tokenizer``) so that the built-in schemes are known."""
        try:
            content = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise TokenizerError(
                f"{where} is not valid JSON; it is not a candletok vocab.") from exc
        if not isinstance(content, dict) or content.get("format") not in READABLE_VOCAB_FORMATS:
            got = content.get("format") if isinstance(content, dict) else type(content).__name__
            raise TokenizerError(
                f"{where} has format {got!r}, not {VOCAB_FORMAT!r}; it is not a vocab this "
                "candletok can read."
            )
        scheme = str(content.get("scheme"))
        known = known_schemes(Tokenizer)
        klass = known.get(scheme)
        if klass is None or (cls is not Tokenizer and klass is not cls):
            raise TokenizerError(
                f"{where} uses scheme {scheme!r}; known schemes: {', '.join(sorted(known))}."
            )
        stored = content.get("fingerprint")
        if stored != content_fingerprint(content):
            raise TokenizerError(
                f"{where} does not match its own fingerprint (edited or corrupted); refit it "
                "with `candletok fit`."
            )
        try:
            tok = klass._from_content(content)
        except (KeyError, TypeError, ValueError) as exc:
            raise TokenizerError(
                f"{where} is missing or has malformed vocab fields ({exc}).") from exc
        if tok.fingerprint != stored:
            raise TokenizerError(f"{where} does not rebuild to the vocabulary it describes; "
                                 "refit it.")
        return tok

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Tokenizer:
        """:meth:`loads` of a vocab file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise TokenizerError(f"No vocab file at {path}; run `candletok fit` first.") from exc
        except UnicodeDecodeError as exc:
            raise TokenizerError(f"{path} is not valid JSON; it is not a candletok vocab.") from exc
        return cls.loads(text, str(path))


def known_schemes(root: type[Tokenizer]) -> dict[str, type[Tokenizer]]:
    """Every imported subclass of ``root`` by scheme name (subclasses register simply by
    being defined; :mod:`candletok.tokenize.registry` imports the built-in ones)."""
    out: dict[str, type[Tokenizer]] = {}
    stack = list(root.__subclasses__())
    while stack:
        c = stack.pop()
        if c.scheme != "base":
            out[c.scheme] = c
        stack.extend(c.__subclasses__())
    return out
