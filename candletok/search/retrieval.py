"""The learned search model: an encoder of a window's last N candles, trained so that
windows close in its space had close forward outcomes (``similar --mode learned``).

Why its own encoder: CandleGPT's hidden state (the ``model`` mode) is a by-product of
next-token training, never trained to put windows with alike futures side by side. This
encoder reads each candle's own weighted features (what the ``nearest`` mode compares)
and, when val chose them, calendar inputs of the window's last candle; a small MLP maps
them to outcome heads that regress the forward return and the log forward range, both
in volatility units, at the search's horizons. Its representation (the last hidden
layer, or the standardized outcome predictions: whichever val chose) is the embedding.

The weights are plain numpy arrays and the embedding pass is three matrix products (no
torch: only reading the ``.pt`` file imports it, once per process); training lives in
:mod:`candletok.search.retrieval_train`. The file (``model.search.pt`` beside the
checkpoint, ``"format": "candletok-search/1"``) holds the weights, the input and
target standardization, the vocabulary fingerprint and the facts it was trained on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from candletok.core.atomic import sha256_file
from candletok.core.errors import ModelError
from candletok.search.index import SearchIndex

log = logging.getLogger(__name__)

FORMAT = "candletok-search/1"
SUFFIX = ".search.pt"
EMBEDS = ("hidden", "outcomes")  # what the embedding is: last hidden layer or the heads
RANGE_FLOOR = 0.01  # vol units: a zero forward range has no log
EMBED_BLOCK = 1 << 13  # rows per matrix product of the embedding pass: stays in cache


def search_model_path(model: str | Path) -> Path:
    """``m.search.pt`` beside checkpoint ``m.pt`` (a path that already ends in
    ``.search.pt`` is the search model itself)."""
    p = Path(model)
    if p.name.endswith(SUFFIX):
        return p
    return p.with_name(p.stem + SUFFIX)


def calendar_inputs(ts_us: np.ndarray, spec: Any) -> np.ndarray:
    """(W, 6) sin/cos of the minute of day, weekday and month of each time (the
    calendar's ids, :func:`~candletok.tokenize.calendar.calendar_ids`), so December
    sits next to January."""
    from candletok.tokenize.calendar import calendar_ids

    ids = calendar_ids(np.asarray(ts_us, dtype=np.int64), spec).astype(np.float64)
    ang = 2 * np.pi * ids / np.asarray(spec.sizes, dtype=np.float64)[None, :]
    return np.concatenate([np.sin(ang), np.cos(ang)], axis=1)


def window_matrix(F: np.ndarray, ends: np.ndarray, n: int) -> np.ndarray:
    """(W, n * d) the weighted features of each window's candles, oldest first."""
    ends = np.asarray(ends, dtype=np.int64)
    return np.concatenate([F[ends - (n - 1 - j)] for j in range(n)], axis=1)


def outcome_targets(idx: SearchIndex, ends: np.ndarray, horizons: tuple[int, ...]
                    ) -> np.ndarray:
    """(W, 2 * H) forward outcomes of windows ending at ``ends``: per horizon h the
    return to the close h bars on and the log of the range (highest high over lowest
    low) of those h candles, both over the scale known when the window closed. The
    caller keeps ``ends + max(h)`` inside its series."""
    e = np.asarray(ends, dtype=np.int64)
    logc = idx.log_close
    sc = np.asarray(idx.scale[e + 1], dtype=np.float64)
    hi, lo = np.asarray(idx.high, np.float64), np.asarray(idx.low, np.float64)
    out = np.empty((e.size, 2 * len(horizons)))
    top, bot = np.full(e.size, -np.inf), np.full(e.size, np.inf)
    k = 0
    for j in range(1, max(horizons) + 1):  # one vectorized pass per bar ahead
        top, bot = np.fmax(top, hi[e + j]), np.fmin(bot, lo[e + j])
        if j in horizons:
            with np.errstate(divide="ignore", invalid="ignore"):
                rng = np.log(top / bot) / sc
            out[:, 2 * k] = (logc[e + j] - logc[e]) / sc
            out[:, 2 * k + 1] = np.log(np.maximum(np.nan_to_num(rng, nan=RANGE_FLOOR),
                                                  RANGE_FLOOR))
            k += 1
    return out


@dataclass
class SearchModel:
    """The encoder's weights and what it reads (see the module docstring)."""

    window: int
    horizons: tuple[int, ...]
    feature_names: tuple[str, ...]
    calendar: dict[str, Any] | None  # the CalendarSpec it reads (chosen on val) or None
    embed_from: str  # "hidden" or "outcomes"
    layers: list[tuple[np.ndarray, np.ndarray]]  # hidden layers (ReLU), weight (out, in)
    head: tuple[np.ndarray, np.ndarray]  # linear outcome heads
    x_mu: np.ndarray
    x_sd: np.ndarray
    fingerprint: str  # the vocabulary's: the features are weighted by it
    facts: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""
    path: Path | None = None

    @property
    def width(self) -> int:
        return int(self.head[0].shape[0] if self.embed_from == "outcomes"
                   else self.layers[-1][0].shape[0])

    def cal_spec(self) -> Any:
        from candletok.tokenize.calendar import CalendarSpec

        return None if self.calendar is None else CalendarSpec.from_dict(self.calendar)

    def inputs(self, win: np.ndarray, last_ts: np.ndarray | None) -> np.ndarray:
        """Standardized inputs from (W, n*d) window features and the last candles'
        times (read only when the model has calendar inputs). A missing feature (a
        special candle) reads as the train mean (0)."""
        X = win
        if self.calendar is not None:
            if last_ts is None:
                raise ModelError("This search model reads calendar inputs; pass the times.")
            X = np.concatenate([X, calendar_inputs(last_ts, self.cal_spec())], axis=1)
        Z = X - self.x_mu  # then in place: one temporary, not three
        Z /= self.x_sd
        Z[~np.isfinite(Z)] = 0.0
        return Z.astype(np.float32)

    def hidden(self, Z: np.ndarray) -> np.ndarray:
        """The last hidden layer of standardized inputs (ReLU in place: no copies)."""
        h = Z
        for w, b in self.layers:
            h = h @ w.T
            h += b
            np.maximum(h, 0.0, out=h)
        return h

    def forward(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(last hidden layer, outcome predictions) of standardized inputs."""
        h = self.hidden(Z)
        return h, h @ self.head[0].T + self.head[1]

    def embed(self, Z: np.ndarray) -> np.ndarray:
        """(W, width) float32 embeddings of standardized inputs, in blocks of
        :data:`EMBED_BLOCK` rows (each layer's output stays in cache); the heads are
        computed only when they are the embedding."""
        out = np.empty((Z.shape[0], self.width), dtype=np.float32)
        for s in range(0, Z.shape[0], EMBED_BLOCK):
            z = Z[s : s + EMBED_BLOCK]
            out[s : s + EMBED_BLOCK] = (self.forward(z)[1] if self.embed_from == "outcomes"
                                        else self.hidden(z))
        return out

    def check(self, n: int, tok: Any) -> None:
        """Refuse a window or a vocabulary this model was not trained on, in one sentence."""
        if n != self.window:
            raise ModelError(f"The search model was trained on {self.window}-candle windows; "
                             f"use last={self.window} or train one for last={n}.")
        if tok is not None and tok.fingerprint != self.fingerprint:
            raise ModelError("The search model was trained on another vocabulary; train "
                             "it again on this dataset (candletok train-search).")

    def to_dict(self) -> dict[str, Any]:
        """What the file holds (numpy arrays as lists of floats: torch.save-able with
        ``weights_only`` loading, and readable without torch tensors)."""
        return {"format": FORMAT, "window": self.window, "horizons": list(self.horizons),
                "feature_names": list(self.feature_names), "calendar": self.calendar,
                "embed_from": self.embed_from,
                "layers": [(w.tolist(), b.tolist()) for w, b in self.layers],
                "head": (self.head[0].tolist(), self.head[1].tolist()),
                "x_mu": self.x_mu.tolist(), "x_sd": self.x_sd.tolist(),
                "fingerprint": self.fingerprint, "facts": self.facts}

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: Path | None = None, sha: str = ""
                  ) -> SearchModel:
        if d.get("format") != FORMAT:
            raise ModelError(f"{path or 'The file'} is not a candletok search model "
                             f"(format {d.get('format')!r}, want {FORMAT!r}).")
        f32 = np.float32

        def arr(x: Any) -> np.ndarray:
            return np.asarray(x, dtype=f32)
        return cls(int(d["window"]), tuple(int(h) for h in d["horizons"]),
                   tuple(d["feature_names"]), d.get("calendar"), str(d["embed_from"]),
                   [(arr(w), arr(b)) for w, b in d["layers"]],
                   (arr(d["head"][0]), arr(d["head"][1])),
                   np.asarray(d["x_mu"], np.float64), np.asarray(d["x_sd"], np.float64),
                   str(d["fingerprint"]), dict(d.get("facts", {})), sha, path)


_LOADED: dict[tuple[str, int, int], SearchModel] = {}


def load_search_model(model: str | Path) -> SearchModel:
    """The search model beside checkpoint ``model`` (or at that path), read once per
    file version (path, size, mtime) in a process."""
    p = search_model_path(model)
    if not p.exists():
        raise ModelError(f"No search model at {p}; train one with candletok train-search "
                         f"--model {Path(model).name} --dataset DIR.")
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _LOADED:
        import torch

        try:
            d = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or foreign file, however torch words it
            raise ModelError(f"Cannot read the search model {p} ({exc}).") from exc
        if not isinstance(d, dict):
            raise ModelError(f"{p} is not a candletok search model.")
        _LOADED.clear()  # one model at a time is what a process uses
        _LOADED[key] = SearchModel.from_dict(d, p, sha256_file(p))
    return _LOADED[key]


def index_inputs(idx: SearchIndex, tok: Any, sm: SearchModel, ends: np.ndarray
                 ) -> np.ndarray:
    """Standardized inputs of the index's windows ending at ``ends``."""
    from candletok.search.nearest import index_features

    F, _ = index_features(idx, tok)
    ts = np.asarray(idx.ts[ends]) if sm.calendar is not None else None
    return sm.inputs(window_matrix(F, ends, sm.window), ts)


def query_vector(sm: SearchModel, tok: Any, feats: np.ndarray, last_ts: int) -> np.ndarray:
    """The embedding of one query: its last N candles' (unweighted) features and its
    last candle's open time."""
    from candletok.search.nearest import feature_weights

    F = np.asarray(feats, dtype=np.float64)[-sm.window :] * feature_weights(tok)
    Z = sm.inputs(F.reshape(1, -1), np.array([last_ts], dtype=np.int64))
    return sm.embed(Z)[0]


_VECTORS: dict[tuple[int, str, int, str, int], tuple[Any, np.ndarray, np.ndarray, np.ndarray]] = {}


def learned_vectors(idx: SearchIndex, tok: Any, sm: SearchModel
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(window ends, their vectors, their squared norms) for every N-window of the
    index: kept in memory per (index, search model) and cached on disk beside the index
    like the model mode's vectors (:func:`~candletok.search.embed.cached_vectors`)."""
    from candletok.search.embed import cached_vectors

    key = (id(idx), idx.key, idx.n, sm.sha256, sm.window)
    if key not in _VECTORS:
        ends, vecs = cached_vectors(idx, sm.sha256, "learned", sm.window, sm.width,
                                    lambda e: sm.embed(index_inputs(idx, tok, sm, e)))
        v = np.asarray(vecs, dtype=np.float32)
        # the squared norms once per vector set (every query reuses them), in float32
        # like the product they are added to
        sq = np.einsum("ij,ij->i", v, v, dtype=np.float64).astype(np.float32)
        _VECTORS.clear()
        _VECTORS[key] = (idx, ends, v, sq)  # the index held: its id stays its own
    return _VECTORS[key][1:]


__all__ = ["FORMAT", "SearchModel", "learned_vectors", "load_search_model", "query_vector",
           "search_model_path"]
