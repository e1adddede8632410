"""Bars problems a user can fix get said, naming what to fix (issue 20, the bars part of
item 20), one row of the table per case: a ``;``-separated or decimal-comma CSV gets a
hint, a poisoned cache entry is named (and refetched), an unwritable cache warns and the
fetched bars are still served, and a 1-bar symbol is noted and not listed as encoded."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest
from test_sources_cache import Market

from candletok.core.errors import BarsError
from candletok.data import cache, yahoo
from candletok.data.sources import load_bars
from candletok.data.synthetic import synthetic_bars
from candletok.dataset.build import build_dataset

START, END = datetime(2024, 1, 1, tzinfo=timezone.utc), datetime(2024, 3, 1, tzinfo=timezone.utc)


def _error(source: Path) -> str:
    with pytest.raises(BarsError) as e:
        load_bars(["X"], source=str(source))
    assert "\n" not in str(e.value)
    return str(e.value)


def semicolon_csv(tmp: Path, caplog: pytest.LogCaptureFixture) -> str:
    (tmp / "x.csv").write_text("date;open;high;low;close\n2024-01-02;101.5;102;100.5;101\n"
                               "2024-01-03;101.5;102;100.5;101\n")
    return _error(tmp / "x.csv")


def semicolon_decimal_comma_csv(tmp: Path, caplog: pytest.LogCaptureFixture) -> str:
    (tmp / "x.csv").write_text("date;open;high;low;close\n2024-01-02;101,5;102,0;100,5;101\n"
                               "2024-01-03;101,5;102,0;100,5;101\n")
    return _error(tmp / "x.csv")


def quoted_decimal_comma_csv(tmp: Path, caplog: pytest.LogCaptureFixture) -> str:
    (tmp / "x.csv").write_text('date,open,high,low,close\n2024-01-02,"101,5","102,0",'
                               '"100,5","101,0"\n')
    return _error(tmp / "x.csv")


def _yahoo(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Market:
    monkeypatch.setenv("CANDLETOK_CACHE", str(tmp / "cache"))
    monkeypatch.setattr(yahoo, "SLEEP", lambda s: None)
    return Market(["AAA", "BBB"])


def _serves_the_market(market: Market, caplog: pytest.LogCaptureFixture) -> str:
    with caplog.at_level(logging.WARNING):
        got = load_bars(["AAA"], source="yahoo", start=START, end=END, fetch=market)
    want = market.bars.filter(pl.col("symbol") == "AAA", pl.col("ts") >= START,
                              pl.col("ts") < END)
    assert got.select(pl.exclude("volume")).equals(want.select(pl.exclude("volume")))
    return caplog.text


def poisoned_cache_rows(tmp: Path, caplog: pytest.LogCaptureFixture,
                        monkeypatch: pytest.MonkeyPatch) -> str:
    market = _yahoo(tmp, monkeypatch)
    bad = market.bars.filter(pl.col("symbol") == "AAA").with_columns(
        (pl.col("low") * 0.5).alias("high"))  # high below low: a broken entry
    cache.write_cache(None, "AAA", "1d", bad, START, END)
    return _serves_the_market(market, caplog)


def poisoned_cache_symbol(tmp: Path, caplog: pytest.LogCaptureFixture,
                          monkeypatch: pytest.MonkeyPatch) -> str:
    market = _yahoo(tmp, monkeypatch)
    other = market.bars.filter(pl.col("symbol") == "BBB")  # BBB's bars under AAA's name
    cache.write_cache(None, "AAA", "1d", other, START, END)
    return _serves_the_market(market, caplog)


def unwritable_cache(tmp: Path, caplog: pytest.LogCaptureFixture,
                     monkeypatch: pytest.MonkeyPatch) -> str:
    market = _yahoo(tmp, monkeypatch)
    (tmp / "file").write_text("not a folder")
    monkeypatch.setenv("CANDLETOK_CACHE", str(tmp / "file" / "cache"))  # even root can't
    return _serves_the_market(market, caplog)


def one_bar_symbol(tmp: Path, caplog: pytest.LogCaptureFixture) -> str:
    folder = tmp / "bars"
    folder.mkdir()
    synthetic_bars(["AAA"], n_bars=200, seed=1).write_parquet(folder / "AAA.parquet")
    synthetic_bars(["ONE"], n_bars=1, seed=2).write_parquet(folder / "ONE.parquet")
    res = build_dataset(["AAA", "ONE"], tmp / "ds", source=str(folder))
    assert res.manifest["symbols"] == ["AAA"]  # no tokens: not listed as encoded
    assert list(res.errors) == ["ONE"] and res.manifest["errors"] == res.errors
    return res.errors["ONE"]


CASES: list[tuple[Callable[..., str], str]] = [
    (semicolon_csv, r"looks ';'-separated: save it with commas between columns\)"),
    (semicolon_decimal_comma_csv, r"looks ';'-separated.*1\.5 not 1,5"),
    (quoted_decimal_comma_csv, r"Column 'open' .*'101,5'.*decimal commas"),
    (poisoned_cache_rows, r"ignoring .*cache file \S+AAA\.parquet .*rule\(s\) high_low"),
    (poisoned_cache_symbol, r"ignoring .*cache file \S+AAA\.parquet .*bars of \['BBB'\]"),
    (unwritable_cache, r"cache \S+ could not be written .*without caching them"),
    (one_bar_symbol, r"only 1 bar was loaded.*no tokens"),
]


@pytest.mark.parametrize(("case", "said"), CASES, ids=[c.__name__ for c, _ in CASES])
def test_each_bars_problem_is_said(case: Callable[..., str], said: str, tmp_path: Path,
                                   caplog: pytest.LogCaptureFixture,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    kwargs = {"monkeypatch": monkeypatch} if "monkeypatch" in case.__code__.co_varnames else {}
    text = case(tmp_path, caplog, **kwargs)
    assert re.search(said, text), text
