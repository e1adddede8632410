"""candletok: turn market price bars into a language.

The public surface is small on purpose; everything else lives in its module.
"""

from candletok.bars import BARS_SCHEMA, canonicalize, repair_bars, validate_bars
from candletok.baselines import NGramModel, fit_baselines, score_baselines, uniform_bits
from candletok.bins import BinsTokenizer
from candletok.dataset import TokenDataset, TokenStream
from candletok.errors import (
    BarsError,
    CandletokError,
    DatasetError,
    ModelError,
    SourceError,
    TokenizerError,
)
from candletok.features import FeatureConfig, candle_features, rebuild_bars
from candletok.kmeans import KMeansTokenizer
from candletok.model import CandleGPT, GPTConfig
from candletok.plot import plot_fan
from candletok.predict import Calibration, Prediction, calibration, predict_next
from candletok.sample import load_sample, sample_symbols
from candletok.shards import build_dataset, read_split
from candletok.sources import load_bars
from candletok.synthetic import synthetic_bars
from candletok.tokenizer import Tokenizer, load_tokenizer
from candletok.train import TrainConfig, TrainResult, evaluate, load_model, train

__version__ = "0.1.0"

__all__ = [
    "BARS_SCHEMA",
    "BarsError",
    "BinsTokenizer",
    "Calibration",
    "CandleGPT",
    "CandletokError",
    "DatasetError",
    "FeatureConfig",
    "GPTConfig",
    "KMeansTokenizer",
    "ModelError",
    "NGramModel",
    "Prediction",
    "SourceError",
    "TokenDataset",
    "TokenStream",
    "Tokenizer",
    "TokenizerError",
    "TrainConfig",
    "TrainResult",
    "__version__",
    "build_dataset",
    "calibration",
    "candle_features",
    "canonicalize",
    "evaluate",
    "fit_baselines",
    "load_bars",
    "load_model",
    "load_sample",
    "load_tokenizer",
    "plot_fan",
    "predict_next",
    "read_split",
    "rebuild_bars",
    "repair_bars",
    "sample_symbols",
    "score_baselines",
    "synthetic_bars",
    "train",
    "uniform_bits",
    "validate_bars",
]
