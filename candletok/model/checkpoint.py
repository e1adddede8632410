"""Checkpoint files: atomic writes, validated reads, and loading a trained CandleGPT.

A checkpoint is one ``torch.save`` dict (``format`` = :data:`CHECKPOINT_FORMAT`) holding
the model and optimizer state, both configurations, the vocabulary (fingerprint and JSON)
and what ``predict`` needs (``token_up_rate`` and the facts of :func:`fit_facts`: the bars'
``interval``, the ``dataset_fingerprint``, the train ``symbols`` and ``train_base_rate``),
so a model file is enough to use the model. Reads are ``weights_only``: a checkpoint cannot
run code.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from candletok.core.atomic import atomic_path
from candletok.core.errors import CandletokError, ModelError
from candletok.core.fallback import say_fallback
from candletok.core.times import normalize_interval
from candletok.dataset.manifest import read_manifest
from candletok.model.arch import TokenModel, build_model, checkpoint_arch
from candletok.model.gpt import CandleGPT
from candletok.model.split import SplitSource, Vocabulary
from candletok.model.updown import real_up

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "candletok-model/1"


def resolve_device(device: str | torch.device) -> torch.device:
    """Map ``auto``, ``cpu`` or ``cuda`` to a torch device; anything else is one clear error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ModelError(f"Unknown device {device!r}; use auto, cpu or cuda.") from exc
    if dev.type not in ("cpu", "cuda"):
        raise ModelError(f"Unknown device {device!r}; use auto, cpu or cuda.")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError("CUDA was requested but is not available; use device='cpu' or "
                         "device='auto'.")
    return dev


def tensor_bytes(obj: Any) -> int:
    """The bytes of every tensor in a nested state (about what ``torch.save`` writes):
    the space a full disk would have needed."""
    if isinstance(obj, torch.Tensor):
        return obj.nelement() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write a checkpoint atomically (temp file, fsync, rename); a full disk is one
    sentence with the space it needs."""
    with atomic_path(path, need=tensor_bytes(state) or None) as tmp:
        torch.save(state, tmp)
    return Path(path)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"No model checkpoint at {p}; train one with `candletok train DIR`.")
    try:
        ck = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise ModelError(f"{p} is not a readable candletok model checkpoint (damaged, or "
                         "not written by `candletok train`; --debug shows why).") from exc
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(f"{p} is not a {CHECKPOINT_FORMAT} checkpoint; train a new model.")
    return ck


def check_fingerprint(model_fp: str | None, other: Vocabulary | str | None,
                      what: str = "the dataset") -> None:
    """Refuse a dataset or tokenizer (or a fingerprint) whose vocabulary differs from the
    model's. An unknown fingerprint (None) on either side cannot be compared: that is not
    a mismatch (an old checkpoint, a tokenizer built in memory), but the check did not
    happen, so it is said once as a warning rather than passed over in silence."""
    fp = other if other is None or isinstance(other, str) else other.fingerprint
    if model_fp is None or fp is None:
        side = ("the model's" if model_fp is None else f"{what}'s") + (
            " and " + f"{what}'s" if model_fp is None and fp is None else "")
        say_fallback(log, f"{side} vocabulary fingerprint is unknown, so candletok cannot "
                     f"check that {what} uses the model's vocabulary; tokens may mean "
                     "other candles than the model learned")
        return
    if model_fp is not None and fp is not None and fp != model_fp:
        raise ModelError(
            f"The model was trained on vocabulary {str(model_fp)[:12]} but {what} uses "
            f"{str(fp)[:12]}; use data encoded with the model's vocab or train a new model."
        )


def restore_weights(path: str | Path, ck: dict[str, Any], load: Callable[[CandleGPT], Any],
                    model: CandleGPT | None = None) -> CandleGPT:
    """The checkpoint's model (or ``model``) after ``load(model)``, as one clear error when
    the weights (or the optimizer state ``load`` also restores) do not fit the saved
    configuration."""
    try:
        model = model or build_model(checkpoint_arch(ck), ck["gpt_config"])
        load(model)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ModelError(f"{path} holds weights that do not fit its saved configuration; "
                         "the file is damaged or from another candletok version.") from exc
    return model


def load_model(
    path: str | Path, dataset: Vocabulary | None = None, device: str | torch.device = "cpu"
) -> CandleGPT:
    """Load a trained model (eval mode), of the architecture its checkpoint records
    (``arch``: CandleGPT, or the CandleLSTM baseline). With ``dataset`` (anything with a
    ``fingerprint`` and a ``vocab_size``: a TokenDataset, a tokenizer), refuse it when its
    vocabulary differs from the one the model was trained on. The checkpoint's metadata is
    on ``model.meta``."""
    dev = resolve_device(device)
    ck = read_checkpoint(path, map_location=dev)
    # The best-on-val weights when the run kept them, else the last step's.
    model = restore_weights(
        path, ck, lambda m: m.load_state_dict(ck.get("best_model") or ck["model"]))
    model.fingerprint = ck.get("fingerprint")
    model.meta = {k: v for k, v in ck.items() if k not in ("model", "optimizer", "rng")}
    if dataset is not None:
        check_fingerprint(model.fingerprint, dataset)
        vs = dataset.vocab_size
        if vs != model.config.vocab_size:
            raise ModelError(
                f"The model has {model.config.vocab_size} tokens but the dataset has {vs}; "
                "use data encoded with the model's vocab."
            )
    return model.to(dev).eval()


def model_interval(model: TokenModel, asked: str | None) -> str:
    """The bar interval to feed ``model``: ``asked``, or the one it was trained on (saved in
    the checkpoint; daily when the checkpoint predates that). Asking for another interval
    than the training one is an error: a daily model has not seen 5-minute candles."""

    trained = model.meta.get("interval")
    trained = normalize_interval(trained) if trained else None
    if asked is not None and trained is not None and normalize_interval(asked) != trained:
        raise ModelError(f"The model was trained on {trained} bars, not {asked}; use "
                         f"interval='{trained}' or train a model on {asked} bars.")
    return asked or trained or "1d"


def dataset_fingerprint(root: str | Path) -> str | None:
    """A digest of a dataset's content: its vocabulary fingerprint, interval and every
    shard's path, rows and sha256 (the manifest's own checksums); None when ``root`` holds
    no readable manifest. Two folders with the same bars and vocabulary share it."""
    try:
        m = read_manifest(root)
        shards = [[split, s["path"], int(s["rows"]), s["sha256"]]
                  for split, meta in sorted(m["splits"].items()) for s in meta["shards"]]
    except (CandletokError, KeyError, TypeError, ValueError):
        return None
    body = json.dumps({"fingerprint": m.get("fingerprint"), "interval": m.get("interval"),
                       "shards": shards}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()[:32]


def fit_facts(ds: SplitSource) -> dict[str, Any]:
    """What a model is fit on, recorded in its checkpoint so that ``predict`` can refuse
    bars of another interval and say when a symbol was never in the training data: the
    bar ``interval``, the ``dataset_fingerprint``, the split's ``symbols`` and
    ``train_base_rate`` (the share of its candles whose close rose: the one base rate a
    forecast is compared with). A fact the split cannot tell is None."""
    root = ds.root
    symbols = getattr(ds, "symbols", None)
    try:
        up = real_up(ds)
    except (OSError, CandletokError):
        up = None
    known = None if up is None else up[~np.isnan(up)]
    return {
        "interval": normalize_interval(ds.interval) if ds.interval else None,
        "dataset_fingerprint": None if root is None else dataset_fingerprint(root),
        "symbols": None if symbols is None else [str(x) for x in symbols],
        "train_base_rate": float(known.mean()) if known is not None and known.size else None,
    }


@dataclass(frozen=True)
class FitFacts:
    """The facts of :func:`fit_facts` as a checkpoint (or a calibration file) holds them;
    None where the file predates recording one."""

    interval: str | None = None
    dataset_fingerprint: str | None = None
    symbols: tuple[str, ...] | None = None
    train_base_rate: float | None = None

    @classmethod
    def of(cls, meta: Mapping[str, Any] | None) -> FitFacts:
        m = meta or {}
        iv, syms, rate = m.get("interval"), m.get("symbols"), m.get("train_base_rate")
        return cls(normalize_interval(iv) if iv else None, m.get("dataset_fingerprint"),
                   None if syms is None else tuple(str(x) for x in syms),
                   None if rate is None else float(rate))

    def unknown(self) -> list[str]:
        """The names of the facts not recorded, in words."""
        names = {"interval": "bar interval", "dataset_fingerprint": "dataset fingerprint",
                 "symbols": "symbols"}
        return [w for k, w in names.items() if getattr(self, k) is None]

    def has_symbol(self, symbol: str) -> bool | None:
        """Whether ``symbol`` was in the data (None: the symbols were not recorded)."""
        return None if self.symbols is None else symbol in self.symbols
