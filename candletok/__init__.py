"""candletok: turn market price bars into a language.

The public surface is small on purpose; everything else lives in its module.
"""

from candletok.bars import BARS_SCHEMA, canonicalize, repair_bars, validate_bars
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
from candletok.sample import load_sample, sample_symbols
from candletok.shards import build_dataset, read_split
from candletok.sources import load_bars
from candletok.synthetic import synthetic_bars
from candletok.tokenizer import Tokenizer, load_tokenizer

__version__ = "0.1.0"

__all__ = [
    "BARS_SCHEMA",
    "BarsError",
    "BinsTokenizer",
    "CandletokError",
    "DatasetError",
    "FeatureConfig",
    "KMeansTokenizer",
    "ModelError",
    "SourceError",
    "TokenDataset",
    "TokenStream",
    "Tokenizer",
    "TokenizerError",
    "__version__",
    "build_dataset",
    "candle_features",
    "canonicalize",
    "load_bars",
    "load_sample",
    "load_tokenizer",
    "read_split",
    "rebuild_bars",
    "repair_bars",
    "sample_symbols",
    "synthetic_bars",
    "validate_bars",
]
