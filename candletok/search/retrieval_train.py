"""Training the search model (:mod:`candletok.search.retrieval`) on a dataset's train
windows, its design chosen on val.

Each candidate (calendar inputs off or on, embedding = last hidden layer or the outcome
heads) is an MLP fit by AdamW on the standardized outcomes of the train windows whose
forward windows close before val starts; its best epoch is the one with the lowest val
loss. The candidates are then compared on what a search does with them: for every val
window, the mean outcome of its ``k`` nearest train windows in the candidate's space,
scored by the squared error of every standardized outcome (return and log range at each
horizon). The same score for the raw weighted features (the ``nearest`` mode's space)
and for the train mean (no search) stands beside them, and the winner is saved with the
table, so the file says what was chosen and by how much.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from candletok.core.atomic import atomic_path
from candletok.core.errors import DatasetError
from candletok.search.index import SearchIndex, open_index
from candletok.search.retrieval import (
    EMBEDS,
    SearchModel,
    calendar_inputs,
    outcome_targets,
    search_model_path,
    window_matrix,
)

log = logging.getLogger(__name__)

CALENDARS = ("auto", "on", "off")


@dataclass(frozen=True)
class SearchTrainConfig:
    """How a search model is trained. ``calendar`` and ``embed`` ``auto``: chosen on val
    among the candidates; a fixed value trains that one only."""

    window: int = 5
    horizons: tuple[int, ...] = (1, 5, 10)
    calendar: str = "auto"
    embed: str = "auto"
    hidden: int = 64
    width: int = 32
    epochs: int = 15
    batch: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-4
    k: int = 20  # neighbours of the val retrieval score (similar's default --top)
    val_queries: int = 2000  # val windows the retrieval score asks (seeded subsample)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.calendar not in CALENDARS:
            raise DatasetError(f"calendar must be one of {', '.join(CALENDARS)}, not "
                               f"{self.calendar!r}.")
        if self.embed not in ("auto", *EMBEDS):
            raise DatasetError(f"embed must be auto, {' or '.join(EMBEDS)}, not {self.embed!r}.")
        if self.window < 1 or self.epochs < 1 or self.k < 1 or not self.horizons:
            raise DatasetError("window, epochs and k must be at least 1, with a horizon.")


@dataclass
class Split:
    """One split's windows: inputs before standardization and standardized targets."""

    ends: np.ndarray
    X: np.ndarray
    Y: np.ndarray


@dataclass
class SearchTrainResult:
    path: Path
    model: SearchModel
    table: list[dict[str, Any]] = field(default_factory=list)  # val retrieval scores
    seconds: float = 0.0


def _split_ends(idx: SearchIndex, n: int, hmax: int, lo_us: int | None, hi_us: int | None
                ) -> np.ndarray:
    """Window ends whose own window lies in their series, ending at or after ``lo_us``,
    and whose forward window of ``hmax`` bars closes before ``hi_us``."""
    from candletok.search.embed import window_ends

    e = window_ends(idx, n)
    end = np.asarray(idx.starts)[idx.sid[e] + 1]
    e = e[e + hmax < end]
    ts = np.asarray(idx.ts)
    ok = np.ones(e.size, dtype=bool)
    if lo_us is not None:
        ok &= ts[e] >= lo_us
    if hi_us is not None:
        ok &= ts[e + hmax] < hi_us
    return e[ok]


def _us(iso: str | None) -> int | None:
    from candletok.search.query import to_us

    return None if iso is None else to_us(iso, "boundary")


def _fit_one(tr: Split, va: Split, cfg: SearchTrainConfig, embed_from: str
             ) -> tuple[list[tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, np.ndarray],
                        float, int]:
    """AdamW on the train windows; the weights of the epoch with the lowest val loss."""
    import torch
    from torch import nn

    torch.manual_seed(cfg.seed)
    d_in, d_out = tr.X.shape[1], tr.Y.shape[1]
    net = nn.Sequential(nn.Linear(d_in, cfg.hidden), nn.ReLU(),
                        nn.Linear(cfg.hidden, cfg.width), nn.ReLU(),
                        nn.Linear(cfg.width, d_out))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    Xt, Yt = torch.from_numpy(tr.X), torch.from_numpy(tr.Y)
    Xv, Yv = torch.from_numpy(va.X), torch.from_numpy(va.Y)
    rng = np.random.default_rng(cfg.seed)
    best, best_state, best_epoch = float("inf"), None, 0
    for epoch in range(1, cfg.epochs + 1):
        net.train()
        order = torch.from_numpy(rng.permutation(Xt.shape[0]))
        for s in range(0, Xt.shape[0], cfg.batch):
            b = order[s : s + cfg.batch]
            loss = torch.mean((net(Xt[b]) - Yt[b]) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            v = float(torch.mean((net(Xv) - Yv) ** 2)) if Xv.shape[0] else float(loss)
        if v < best:
            best, best_epoch = v, epoch
            best_state = {k: t.detach().clone() for k, t in net.state_dict().items()}
    assert best_state is not None
    net.load_state_dict(best_state)
    lin = [m for m in net if isinstance(m, nn.Linear)]

    def np_(m: Any) -> tuple[np.ndarray, np.ndarray]:
        return m.weight.detach().numpy().copy(), m.bias.detach().numpy().copy()

    return [np_(m) for m in lin[:-1]], np_(lin[-1]), best, best_epoch


def knn_score(train_vecs: np.ndarray, val_vecs: np.ndarray, Ytr: np.ndarray,
              Yva: np.ndarray, k: int) -> dict[str, float]:
    """Mean squared error of the mean standardized outcomes of each val window's ``k``
    nearest train windows (exact L2), overall and for the return and the range columns
    (even and odd columns)."""
    from candletok.search.vectors import dot_search

    t = np.asarray(train_vecs, dtype=np.float32)
    sq = np.einsum("ij,ij->i", t, t, dtype=np.float64)
    pred = np.empty_like(Yva)
    for i, q in enumerate(np.asarray(val_vecs, dtype=np.float32)):  # one search per query
        r = dot_search(t, sq, q, k)
        pred[i] = Ytr[r.indices].mean(axis=0)
    err = (pred - Yva) ** 2
    return {"mse": float(err.mean()), "mse_return": float(err[:, 0::2].mean()),
            "mse_range": float(err[:, 1::2].mean()), "_err": err.mean(axis=1)}


def paired_p(err_a: np.ndarray, err_b: np.ndarray, block: int) -> float:
    """One-sided p-value that ``err_a`` is lower on average than ``err_b`` (same val
    windows, in time order): a t-test on the means of blocks of ``block`` windows, so
    overlapping forward windows are not counted as independent (normal approximation)."""
    d = np.asarray(err_a, np.float64) - np.asarray(err_b, np.float64)
    nb = d.size // max(1, block)
    if nb < 3:
        return 1.0
    m = d[: nb * block].reshape(nb, -1).mean(axis=1)
    se = float(m.std(ddof=1)) / math.sqrt(nb)
    if se == 0.0:
        return 0.0 if m.mean() < 0 else 1.0
    return 0.5 * math.erfc(-float(m.mean()) / se / math.sqrt(2.0))


def _standardize(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = np.nanmean(X, axis=0)
    sd = np.nanstd(X, axis=0)
    return np.nan_to_num(mu), np.where(np.isfinite(sd) & (sd > 1e-9), sd, 1.0)


def _choose(fitted: list[tuple[dict[str, Any], SearchModel]], block: int
            ) -> tuple[str, SearchModel, float | None]:
    """The candidate with the lowest val retrieval error, calendar inputs only when the
    best with them beats the best without them with one-sided p < 0.05 (blocks of the
    longest horizon; a noise-level win keeps the simpler model). Returns (name, model,
    that p or None when only one kind was trained)."""
    def best(rows: list[tuple[dict[str, Any], SearchModel]]) -> tuple[dict[str, Any], SearchModel]:
        return min(rows, key=lambda rs: rs[0]["mse"])

    off = [rs for rs in fitted if rs[1].calendar is None]
    on = [rs for rs in fitted if rs[1].calendar is not None]
    if not off or not on:
        r, m = best(fitted)
        return r["candidate"], m, None
    (r_off, m_off), (r_on, m_on) = best(off), best(on)
    p = paired_p(r_on["_err"], r_off["_err"], block)
    r, m = (r_on, m_on) if r_on["mse"] < r_off["mse"] and p < 0.05 else (r_off, m_off)
    return r["candidate"], m, p


def train_search(dataset: str | Path, out: str | Path, config: SearchTrainConfig | None = None,
                 facts: dict[str, Any] | None = None) -> SearchTrainResult:
    """Train, choose on val and save (atomically) the search model of ``dataset`` at
    ``out`` (a checkpoint path ``m.pt`` means ``m.search.pt`` beside it). The caller
    refuses an existing file (``--overwrite``)."""
    import torch

    from candletok.dataset.manifest import read_manifest
    from candletok.model.config import calendar_spec
    from candletok.search.nearest import index_features

    cfg = config or SearchTrainConfig()
    t0 = time.perf_counter()
    idx = open_index(dataset)
    tok = idx.tokenizer()
    man = read_manifest(dataset)
    bounds = man.get("boundaries", {})
    val_us, test_us = _us(bounds.get("val_from")), _us(bounds.get("test_from"))
    if val_us is None:
        raise DatasetError("The dataset has no val split to choose the search model on; "
                           "encode it with --val-from.")
    H = tuple(sorted({int(h) for h in cfg.horizons}))
    n, hmax = cfg.window, max(H)
    e_tr = _split_ends(idx, n, hmax, None, val_us)
    e_va = _split_ends(idx, n, hmax, val_us, test_us)
    if e_va.size > cfg.val_queries:  # the retrieval score: one exact search per window
        pick = np.random.default_rng(cfg.seed).choice(e_va.size, cfg.val_queries, False)
        e_va = e_va[np.sort(pick)]
    if e_tr.size < 10 * cfg.k or e_va.size < cfg.k:
        raise DatasetError(f"Too few windows to train a search model ({e_tr.size} train, "
                           f"{e_va.size} val); use a longer dataset or a smaller window.")
    F, _ = index_features(idx, tok)
    Yr_tr, Yr_va = outcome_targets(idx, e_tr, H), outcome_targets(idx, e_va, H)
    y_mu, y_sd = _standardize(Yr_tr)
    Ytr = ((Yr_tr - y_mu) / y_sd).astype(np.float32)
    Yva = ((Yr_va - y_mu) / y_sd).astype(np.float32)
    W_tr, W_va = window_matrix(F, e_tr, n), window_matrix(F, e_va, n)
    spec = calendar_spec("on", idx.interval)
    cal_opts = {"auto": (False, True), "on": (True,), "off": (False,)}[cfg.calendar]
    emb_opts = EMBEDS if cfg.embed == "auto" else (cfg.embed,)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    mu0, sd0 = _standardize(W_tr)

    def z(W: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
        Z = (W - mu) / sd
        return np.where(np.isfinite(Z), Z, 0.0).astype(np.float32)

    table: list[dict[str, Any]] = [
        {"candidate": "train mean (no search)", "val_loss": None,
         **{k: float(v) for k, v in {
             "mse": float((Yva ** 2).mean()), "mse_return": float((Yva[:, 0::2] ** 2).mean()),
             "mse_range": float((Yva[:, 1::2] ** 2).mean())}.items()}},
        {"candidate": "raw weighted features (nearest's space)", "val_loss": None,
         **knn_score(z(W_tr, mu0, sd0), z(W_va, mu0, sd0), Ytr, Yva, cfg.k)}]
    fitted: list[tuple[dict[str, Any], SearchModel]] = []
    for cal in cal_opts:
        A_tr, A_va = W_tr, W_va
        if cal:
            A_tr = np.concatenate([W_tr, calendar_inputs(np.asarray(idx.ts[e_tr]), spec)], 1)
            A_va = np.concatenate([W_va, calendar_inputs(np.asarray(idx.ts[e_va]), spec)], 1)
        mu, sd = _standardize(A_tr)
        tr, va = Split(e_tr, z(A_tr, mu, sd), Ytr), Split(e_va, z(A_va, mu, sd), Yva)
        for emb in emb_opts:
            layers, head, vloss, epoch = _fit_one(tr, va, cfg, emb)
            sm = SearchModel(n, H, tuple(tok.feature_names),
                             spec.to_dict() if cal else None, emb, layers, head, mu, sd,
                             tok.fingerprint)
            row = {"candidate": f"calendar {'on' if cal else 'off'}, {emb} embedding",
                   "val_loss": vloss, "best_epoch": epoch,
                   **knn_score(sm.embed(tr.X), sm.embed(va.X), Ytr, Yva, cfg.k)}
            table.append(row)
            fitted.append((row, sm))
    chosen, sm, cal_p = _choose(fitted, hmax)
    for r in table:
        r.pop("_err", None)
    sm.facts = {
        "trained_on": {"dataset": str(Path(dataset).resolve()),
                       "dataset_fingerprint": idx.key, "vocab_fingerprint": tok.fingerprint,
                       "symbols": list(idx.symbols), "interval": idx.interval,
                       "train_windows": int(e_tr.size), "val_windows": int(e_va.size),
                       "val_from": bounds.get("val_from"), "test_from": bounds.get("test_from")},
        "config": {**asdict(cfg), "horizons": list(H)},
        "targets": [f"{kind}_{h}" for h in H for kind in ("return_vol", "log_range_vol")],
        "target_mean": y_mu.tolist(), "target_sd": y_sd.tolist(),
        "chosen_on_val": chosen,
        "calendar_chosen_on_val": cfg.calendar == "auto" and sm.calendar is not None,
        "calendar_p": cal_p,
        "val_table": table, **(facts or {}),
    }
    sm.facts["seconds"] = round(time.perf_counter() - t0, 3)
    path = search_model_path(out)
    with atomic_path(path) as tmp:
        torch.save(sm.to_dict(), tmp)
    from candletok.search.retrieval import load_search_model

    loaded = load_search_model(path)
    return SearchTrainResult(path, loaded, table, time.perf_counter() - t0)


__all__ = ["SearchTrainConfig", "SearchTrainResult", "knn_score", "train_search"]
