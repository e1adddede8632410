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
    "load_bars": "candletok.data.sources",
    "BinsTokenizer": "candletok.tokenize.bins",
    "KMeansTokenizer": "candletok.tokenize.kmeans",
    "Tokenizer": "candletok.tokenize.base",
    "load_tokenizer": "candletok.tokenize.registry",
    "build_dataset": "candletok.dataset.build",
    "BuildConfig": "candletok.dataset.build",
    "read_split": "candletok.dataset.manifest",
    "TokenDataset": "candletok.dataset.torchdata",
    "TokenStream": "candletok.dataset.torchdata",
    "CandleGPT": "candletok.model.gpt",
    "GPTConfig": "candletok.model.gpt",
    "TrainConfig": "candletok.model.train",
    "train": "candletok.model.train",
    "load_model": "candletok.model.checkpoint",
    "predict_next": "candletok.predict.predict",
    "Predictor": "candletok.predict.predictor",
    "similar": "candletok.search.similar",
    "motifs": "candletok.search.motifs",
    "evaluate_forecasts": "candletok.evaluation.evaluate",
    "calibrated_similar": "candletok.evaluation.simcal",
    # kept for the scripts written against 0.1; their home is the subpackage
    "load_sample": "candletok.data.sample",
    "sample_symbols": "candletok.data.sample",
    "synthetic_bars": "candletok.data.synthetic",
    "validate_bars": "candletok.data.bars",
}

__all__ = [
    "BarsError",
    "BinsTokenizer",
    "BuildConfig",
    "CandleGPT",
    "CandletokError",
    "DatasetError",
    "GPTConfig",
    "KMeansTokenizer",
    "ModelError",
    "OutputError",
    "Predictor",
    "SourceError",
    "TokenDataset",
    "TokenStream",
    "Tokenizer",
    "TokenizerError",
    "TrainConfig",
    "__version__",
    "build_dataset",
    "calibrated_similar",
    "evaluate_forecasts",
    "load_bars",
    "load_model",
    "load_sample",
    "load_tokenizer",
    "motifs",
    "predict_next",
    "read_split",
    "sample_symbols",
    "similar",
    "synthetic_bars",
    "train",
    "validate_bars",
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
    from candletok.data.bars import validate_bars
    from candletok.data.sample import load_sample, sample_symbols
    from candletok.data.sources import load_bars
    from candletok.data.synthetic import synthetic_bars
    from candletok.dataset.build import BuildConfig, build_dataset
    from candletok.dataset.manifest import read_split
    from candletok.dataset.torchdata import TokenDataset, TokenStream
    from candletok.evaluation.evaluate import evaluate_forecasts
    from candletok.evaluation.simcal import calibrated_similar
    from candletok.model.checkpoint import load_model
    from candletok.model.gpt import CandleGPT, GPTConfig
    from candletok.model.train import TrainConfig, train
    from candletok.predict.predict import predict_next
    from candletok.search.motifs import motifs
    from candletok.search.similar import similar
    from candletok.tokenize.base import Tokenizer
    from candletok.tokenize.bins import BinsTokenizer
    from candletok.tokenize.kmeans import KMeansTokenizer
    from candletok.tokenize.registry import load_tokenizer
