"""Symbols that differ only by case are refused, naming both (issue 20, item 6): read as
one symbol they would interleave two series or drop one's bars as duplicates."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from candletok.core.errors import BarsError
from candletok.data.sources import load_bars
from candletok.data.synthetic import synthetic_bars


def _raw(symbol: str, seed: int) -> pl.DataFrame:
    return synthetic_bars(["X"], n_bars=30, seed=seed).drop("symbol").with_columns(
        pl.col("ts").dt.replace_time_zone(None))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("asked", [[], ["AAA"], ["aaa"]])
def test_two_files_naming_one_symbol_in_two_cases(tmp_path: Path, suffix: str,
                                                  asked: list[str]) -> None:
    for name, seed in (("AAA", 1), ("aaa", 2)):
        df = _raw(name, seed)
        path = tmp_path / f"{name}{suffix}"
        df.write_csv(path) if suffix == ".csv" else df.write_parquet(path)
    synthetic_bars(["BBB"], n_bars=30, seed=3).write_parquet(tmp_path / "BBB.parquet")
    with pytest.raises(BarsError, match=f"AAA{suffix} and aaa{suffix} both name symbol AAA"
                       ) as e:
        load_bars(asked, source=str(tmp_path))
    assert e.value.rule == "symbol_case" and "\n" not in str(e.value)
    assert load_bars(["BBB"], source=str(tmp_path))["symbol"].unique().to_list() == ["BBB"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("asked", [[], ["CASE"], ["case"]])
def test_one_file_with_two_spellings_of_a_symbol(tmp_path: Path, suffix: str,
                                                 asked: list[str]) -> None:
    bars = synthetic_bars(["CASE", "OTHER"], n_bars=30, seed=4)
    other = synthetic_bars(["CASE"], n_bars=30, seed=5).with_columns(
        pl.lit("case").alias("symbol"))
    both = pl.concat([bars, other])
    path = tmp_path / f"mixed{suffix}"
    both.write_csv(path) if suffix == ".csv" else both.write_parquet(path)
    with pytest.raises(BarsError, match="'CASE' and 'case' differ only by case") as e:
        load_bars(asked, source=str(path))
    assert e.value.rule == "symbol_case" and f"mixed{suffix}" in str(e.value)
    assert load_bars(["OTHER"], source=str(path)).height == 30  # the rest still loads
