"""The ``model`` mode's vectors: CandleGPT's hidden state at a window's last candle.

The model reads exactly the window's N tokens (no BOS: training crops start mid-series
too), so a window's vector depends on its own candles only -- the time rule stays a rule
about window ends. Vectors of every window of a dataset are computed once per
(checkpoint, N) and cached inside the search index folder, which is replaced whenever the
index is rebuilt; the cache is used only when its sidecar's content hash and keys match.
torch is imported only here, and only when the mode is used.

A checkpoint with calendar inputs also reads each candle's calendar ids, from the
window's own open times (the index's ``ts``; the query's candles' times), so a window's
vector still depends on its own candles only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from candletok.core.atomic import atomic_path, sha256_file, write_json_atomic
from candletok.core.errors import ModelError
from candletok.core.progress import progress
from candletok.search.grams import ranges_to_indices
from candletok.search.index import SearchIndex, index_dir
from candletok.tokenize.base import Tokenizer
from candletok.tokenize.calendar import calendar_ids

log = logging.getLogger(__name__)

BATCH = 2048


def window_ends(idx: SearchIndex, n: int) -> np.ndarray:
    """Every position whose N-candle window lies inside its series, ascending."""
    starts = np.asarray(idx.starts, dtype=np.int64)
    return ranges_to_indices(starts[:-1] + n - 1, starts[1:])


def load_search_model(path: str | Path, tok: Tokenizer, n: int, device: str = "cpu") -> Any:
    """The checkpoint as a CandleGPT in eval mode, refused when its vocabulary differs
    from the dataset's or its context is shorter than the window."""
    from candletok.model.checkpoint import load_model

    model = load_model(path, dataset=tok, device=device)
    if n > model.config.context:
        raise ModelError(f"The window of {n} candles is longer than the model's context "
                         f"({model.config.context}); use a smaller last=.")
    return model


def embed_tokens(model: Any, windows: np.ndarray, times: np.ndarray | None = None
                 ) -> np.ndarray:
    """(W, N) token windows -> (W, C) float32 hidden states at each window's last token.
    ``times`` (W, N) int64 microseconds UTC: the candles' open times, which a model with
    calendar inputs needs (and any other ignores)."""
    import torch

    spec = model.calendar
    if spec is not None and times is None:
        raise ModelError("The model reads calendar inputs; pass the windows' times.")
    model.refuse_levels("the model search mode")
    out = np.empty((windows.shape[0], model.config.n_embd), dtype=np.float32)
    with torch.no_grad():
        for s in range(0, windows.shape[0], BATCH):
            x = torch.from_numpy(np.ascontiguousarray(windows[s : s + BATCH], dtype=np.int64))
            cal = None
            if spec is not None and times is not None:
                t = np.asarray(times[s : s + BATCH], dtype=np.int64)
                cal = torch.from_numpy(calendar_ids(t.ravel(), spec).reshape(*t.shape, -1))
                cal = cal.to(model.device)
            h = model.hidden(x.to(model.device), cal)[:, -1, :]
            out[s : s + BATCH] = h.float().cpu().numpy()
    return out


CACHE_FORMAT = "candletok-embed/1"


def _cache_key(idx: SearchIndex, model_sha: str, n: int, ends: np.ndarray, width: int
               ) -> dict[str, Any]:
    """What a cached vector file must have been made from: this index's data (its key),
    this checkpoint's bytes, this window length, and the array's shape."""
    return {"format": CACHE_FORMAT, "index": idx.key, "model_sha256": model_sha, "n": int(n),
            "shape": [int(ends.size), int(width)], "dtype": "float32"}


def _read_cache(cache: Path, want: dict[str, Any]) -> np.ndarray | None:
    """The cached vectors when their sidecar records ``want`` and the file's sha256;
    None (with a warning when something was there) on any mismatch: a hand-made,
    truncated, pickled or stale file is rebuilt, never trusted for its shape alone."""
    side = cache.with_suffix(".json")
    if not cache.exists() and not side.exists():
        return None
    why = None
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or {k: meta.get(k) for k in want} != want:
            why = "it was made from another index, checkpoint or window"
        elif sha256_file(cache) != meta.get("sha256"):
            why = "its content does not match its recorded sha256"
        else:
            vecs = np.load(cache, mmap_mode="r", allow_pickle=False)
            if list(vecs.shape) == want["shape"] and vecs.dtype == np.float32:
                return vecs
            why = "its array has the wrong shape or type"
    except (OSError, ValueError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        why = f"it is unreadable ({exc})"
    log.warning("rebuilding the cached model vectors %s: %s", cache, why)
    return None


def cached_vectors(idx: SearchIndex, model_sha: str, prefix: str, n: int, width: int,
                   compute: Callable[[np.ndarray], np.ndarray]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(window ends, their vectors) for every N-window of the index, ``compute(ends)``
    block by block, cached beside the index as ``<prefix>-<sha>-n<N>.npy``. The cache's
    sidecar (``.json``, written last) records the index key, the model file's sha256, N,
    the shape and the vector file's own sha256; a cache that does not match all of them
    is rebuilt with a warning. One home for the ``model`` and ``learned`` modes."""
    ends = window_ends(idx, n)
    cache: Path | None = None
    want: dict[str, Any] = {}
    if idx.root is not None:
        cache = index_dir(idx.root) / f"{prefix}-{model_sha[:16]}-n{n}.npy"
        want = _cache_key(idx, model_sha, n, ends, width)
        cached = _read_cache(cache, want)
        if cached is not None:
            return ends, cached
    vecs = np.empty((ends.size, width), dtype=np.float32)
    step = 64 * BATCH  # bounded memory for the token windows
    with progress(f"{prefix} vectors", -(-ends.size // step)) as bar:
        for s in range(0, ends.size, step):
            e = ends[s : s + step]
            vecs[s : s + e.size] = compute(e)
            bar.advance()
    if cache is not None and cache.parent.is_dir():
        try:
            with atomic_path(cache) as tmp, open(tmp, "wb") as fh:
                np.save(fh, vecs)
            write_json_atomic(cache.with_suffix(".json"),
                              {**want, "sha256": sha256_file(cache)})
        except OSError as exc:
            log.warning("could not cache model vectors in %s (%s)", cache, exc)
    return ends, vecs


def dataset_embeddings(idx: SearchIndex, model: Any, model_path: str | Path, n: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(window ends, their CandleGPT vectors) for every N-window of the index, cached
    beside the index by checkpoint sha256 and N (:func:`cached_vectors`)."""
    lags = np.arange(n - 1, -1, -1)

    def compute(e: np.ndarray) -> np.ndarray:
        pos = e[:, None] - lags
        times = np.asarray(idx.ts[pos]) if model.calendar is not None else None
        return embed_tokens(model, np.asarray(idx.tokens[pos]), times)

    sha = sha256_file(model_path) if idx.root is not None else ""
    return cached_vectors(idx, sha, "model", n, model.config.n_embd, compute)
