"""candletok: turn market price bars into a language.

The public surface is small on purpose, and lazy: ``import candletok`` loads no torch
(a worker that only tokenizes never pays for it); a name that needs torch imports it on
first use. Everything else lives in its stage's subpackage (see docs/architecture.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from candletok.core.errors import (
    BarsError,
    CandletokError,
    DatasetError,
    ModelError,
    OutputError,
    SourceError,
    TokenizerError,
)

__version__ = "0.2.0"

_LAZY: dict[str, str] = {
    # load
    "load_bars": "candletok.data.sources",
    # tokenize
    "Tokenizer": "candletok.tokenize.base",
    "BinsTokenizer": "candletok.tokenize.bins",
    "KMeansTokenizer": "candletok.tokenize.kmeans",
    "load_tokenizer": "candletok.tokenize.registry",
    # build
    "BuildConfig": "candletok.dataset.build",
    "build_dataset": "candletok.dataset.build",
    "TokenDataset": "candletok.dataset.torchdata",
    # train
    "TrainConfig": "candletok.model.config",
    "train": "candletok.model.train",
    "load_model": "candletok.model.checkpoint",
    # predict, search, evaluate
    "predict_next": "candletok.predict.predict",
    "Predictor": "candletok.predict.predictor",
    "similar": "candletok.search.similar",
    "evaluate_forecasts": "candletok.evaluation.evaluate",
}

# What a user needs, about twenty names; the rest lives in its stage's subpackage
# (candletok.data.sample.load_sample, candletok.search.motifs, candletok.model.gpt.CandleGPT...).
__all__ = [
    "BarsError",
    "BinsTokenizer",
    "BuildConfig",
    "CandletokError",
    "DatasetError",
    "KMeansTokenizer",
    "ModelError",
    "OutputError",
    "Predictor",
    "SourceError",
    "TokenDataset",
    "Tokenizer",
    "TokenizerError",
    "TrainConfig",
    "__version__",
    "build_dataset",
    "evaluate_forecasts",
    "load_bars",
    "load_model",
    "load_tokenizer",
    "predict_next",
    "similar",
    "train",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'candletok' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # what type checkers and IDEs see
    from candletok.data.sources import load_bars
    from candletok.dataset.build import BuildConfig, build_dataset
    from candletok.dataset.torchdata import TokenDataset
    from candletok.evaluation.evaluate import evaluate_forecasts
    from candletok.model.checkpoint import load_model
    from candletok.model.config import TrainConfig
    from candletok.model.train import train
    from candletok.predict.predict import predict_next
    from candletok.search.similar import similar
    from candletok.tokenize.base import Tokenizer
    from candletok.tokenize.bins import BinsTokenizer
    from candletok.tokenize.kmeans import KMeansTokenizer
    from candletok.tokenize.registry import load_tokenizer
