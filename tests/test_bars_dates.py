"""Integer date columns (issue 20, item 5): YYYYMMDD is a date, epoch integers are read
in the unit their magnitude shows, ``date_format`` applies to integers, and what stays
ambiguous is refused in one sentence."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from candletok.core.errors import BarsError
from candletok.data.sources import load_bars

UNITS = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}


def _file(tmp_path: Path, dates: list[object], name: str = "AAA.parquet") -> Path:
    n = len(dates)
    price = [100.0 + i for i in range(n)]
    df = pl.DataFrame({"date": dates, "open": price, "high": [p + 1 for p in price],
                       "low": [p - 1 for p in price], "close": price, "volume": [1.0] * n})
    path = tmp_path / name
    if name.endswith(".csv"):
        df.write_csv(path)
    else:
        df.write_parquet(path)
    return path


@settings(max_examples=30, deadline=None)
@given(first=st.dates(date(1900, 1, 1), date(2200, 1, 1)), n=st.integers(2, 30),
       csv=st.booleans())
def test_yyyymmdd_integers_are_dates(tmp_path_factory: pytest.TempPathFactory, first: date,
                                     n: int, csv: bool) -> None:
    days = [first + timedelta(days=i) for i in range(n)]
    ints = [d.year * 10_000 + d.month * 100 + d.day for d in days]
    path = _file(tmp_path_factory.mktemp("d"), ints, "AAA.csv" if csv else "AAA.parquet")
    got = load_bars(["AAA"], source=str(path))["ts"].to_list()
    assert got == [datetime(d.year, d.month, d.day, tzinfo=timezone.utc) for d in days]


@settings(max_examples=30, deadline=None)
@given(unit=st.sampled_from(sorted(UNITS)),
       first=st.datetimes(datetime(1974, 1, 1), datetime(2200, 1, 1)),
       n=st.integers(2, 20))
def test_epoch_integers_in_any_unit_round_trip(tmp_path_factory: pytest.TempPathFactory,
                                               unit: str, first: datetime, n: int) -> None:
    first = first.replace(microsecond=0, tzinfo=timezone.utc)
    times = [first + timedelta(hours=i) for i in range(n)]
    ints = [int(t.timestamp()) * UNITS[unit] for t in times]
    path = _file(tmp_path_factory.mktemp("e"), ints)
    assert load_bars(["AAA"], source=str(path))["ts"].to_list() == times


def test_date_format_is_honoured_for_integer_columns(tmp_path: Path) -> None:
    path = _file(tmp_path, [202401311530, 202401311600, 202401311630])
    got = load_bars(["AAA"], source=str(path), date_format="%Y%m%d%H%M")["ts"].to_list()
    t0 = datetime(2024, 1, 31, 15, 30, tzinfo=timezone.utc)
    assert got == [t0 + timedelta(minutes=30 * i) for i in range(3)]


@pytest.mark.parametrize("ints", [
    [5, 6, 7],  # no date, and seconds of January 1970
    [1420070400, 1420156800000],  # seconds and milliseconds mixed
    [20150101, 20151332],  # YYYYMMDD-like but month 13: not dates, too small for epochs
])
def test_ambiguous_integers_are_refused_in_one_sentence(tmp_path: Path,
                                                        ints: list[int]) -> None:
    path = _file(tmp_path, ints)
    with pytest.raises(BarsError, match="neither YYYYMMDD dates nor epoch times") as e:
        load_bars(["AAA"], source=str(path))
    assert "\n" not in str(e.value) and "AAA.parquet" in str(e.value)


@pytest.mark.parametrize("csv", [False, True])
def test_date_time_integers_are_read_as_their_digits(tmp_path: Path, csv: bool) -> None:
    """201709221500 is 2017-09-22 15:00 (YYYYMMDDHHMM), not an epoch time in ms of 1976;
    likewise YYYYMMDDHHMMSS."""
    t0 = datetime(2017, 9, 22, 15, 0, tzinfo=timezone.utc)
    want = [t0 + timedelta(hours=i) for i in range(30)]
    for fmt in ("%Y%m%d%H%M", "%Y%m%d%H%M%S"):
        name = "AAA.csv" if csv else "AAA.parquet"
        path = _file(tmp_path, [int(t.strftime(fmt)) for t in want], name)
        assert load_bars(["AAA"], source=str(path))["ts"].to_list() == want


def test_date_format_puts_back_an_integers_leading_zero(tmp_path: Path) -> None:
    """Day-first integer dates lose their leading zero (04012000 is stored as 4012000):
    --date-format %d%m%Y still reads them."""
    days = [date(2000, 1, 4) + timedelta(days=i) for i in range(12)]
    path = _file(tmp_path, [int(d.strftime("%d%m%Y")) for d in days])
    got = load_bars(["AAA"], source=str(path), date_format="%d%m%Y")["ts"].dt.date().to_list()
    assert got == days
