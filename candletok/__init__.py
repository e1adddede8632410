"""candletok: turn market price bars into a language.

The public surface is small on purpose; everything else lives in its module.
"""

from candletok.bars import BARS_SCHEMA, canonicalize, repair_bars, validate_bars
from candletok.errors import (
    BarsError,
    CandletokError,
    DatasetError,
    ModelError,
    SourceError,
    TokenizerError,
)
from candletok.sample import load_sample, sample_symbols

__version__ = "0.1.0"

__all__ = [
    "BARS_SCHEMA",
    "BarsError",
    "CandletokError",
    "DatasetError",
    "ModelError",
    "SourceError",
    "TokenizerError",
    "__version__",
    "canonicalize",
    "load_sample",
    "repair_bars",
    "sample_symbols",
    "validate_bars",
]
