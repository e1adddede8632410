"""The ``model`` mode's vectors: CandleGPT's hidden state at a window's last candle.

The model reads exactly the window's N tokens (no BOS: training crops start mid-series
too), so a window's vector depends on its own candles only -- the time rule stays a rule
about window ends. Vectors of every window of a dataset are computed once per
(checkpoint, N) and cached inside the search index folder, which is replaced whenever the
index is rebuilt. torch is imported only here, and only when the mode is used.

A checkpoint with calendar inputs also reads each candle's calendar ids, from the
window's own open times (the index's ``ts``; the query's candles' times), so a window's
vector still depends on its own candles only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from candletok.core.atomic import atomic_path, sha256_file
from candletok.core.errors import ModelError
from candletok.search.index import SearchIndex, index_dir, ranges_to_indices
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


def dataset_embeddings(idx: SearchIndex, model: Any, model_path: str | Path, n: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(window ends, their vectors) for every N-window of the index, cached on disk by
    checkpoint sha256 and N beside the index."""
    ends = window_ends(idx, n)
    cache: Path | None = None
    if idx.root is not None:
        cache = index_dir(idx.root) / f"model-{sha256_file(model_path)[:16]}-n{n}.npy"
        if cache.exists():
            vecs = np.load(cache, mmap_mode="r")
            if vecs.shape[0] == ends.size:
                return ends, vecs
    lags = np.arange(n - 1, -1, -1)
    vecs = np.empty((ends.size, model.config.n_embd), dtype=np.float32)
    for s in range(0, ends.size, 64 * BATCH):  # bounded memory for the token windows
        e = ends[s : s + 64 * BATCH]
        pos = e[:, None] - lags
        times = np.asarray(idx.ts[pos]) if model.calendar is not None else None
        vecs[s : s + e.size] = embed_tokens(model, np.asarray(idx.tokens[pos]), times)
    if cache is not None and cache.parent.is_dir():
        try:
            with atomic_path(cache) as tmp, open(tmp, "wb") as fh:
                np.save(fh, vecs)
        except OSError as exc:
            log.warning("could not cache model vectors in %s (%s)", cache, exc)
    return ends, vecs
