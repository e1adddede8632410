"""The bundled real sample: daily bars of AAPL, IBM, MSFT, GOOG and FB (Quandl WIKI,
public domain, see ``candletok/data/ATTRIBUTION.md``), split- and dividend-adjusted with
``Adj Close`` so that 2:1 splits do not look like -50% days."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import polars as pl

from candletok.core.errors import BarsError
from candletok.data.bars import canonicalize, validate_bars

SAMPLE_FILE = "stocks.csv.gz"


@lru_cache(maxsize=1)
def _sample_all() -> pl.DataFrame:
    raw_bytes = resources.files("candletok").joinpath("data", SAMPLE_FILE).read_bytes()
    raw = pl.read_csv(raw_bytes, infer_schema_length=0)  # all text; canonicalize casts
    return validate_bars(canonicalize(raw, adjust=True), policy="strict")


def sample_symbols() -> list[str]:
    """Symbols available in the bundled sample, sorted."""
    return sorted(_sample_all()["symbol"].unique().to_list())


def load_sample(symbols: list[str] | None = None) -> pl.DataFrame:
    """Bundled daily bars for ``symbols`` (all when None), canonical and adjusted."""
    df = _sample_all()
    if symbols is None:
        return df
    wanted = [s.upper() for s in symbols]
    unknown = [s for s in wanted if s not in set(sample_symbols())]
    if unknown:
        raise BarsError(
            f"{', '.join(unknown)} not in the bundled sample; it has "
            f"{', '.join(sample_symbols())} (or use source='synthetic').",
            rule="unknown_symbol",
        )
    return df.filter(pl.col("symbol").is_in(wanted))
