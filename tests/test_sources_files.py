"""File source: CSV/Parquet files and folders, forgiving names, exact error rules."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from candletok.core.errors import BarsError, OutputError, SourceError
from candletok.data.files import bars_file, write_bars_folder
from candletok.data.sources import is_path_source, load_bars, normalize_symbols
from candletok.data.synthetic import synthetic_bars


def yahoo_style_csv(path: Path, symbol: str = "AAA", n: int = 30, adj: float = 0.5) -> pl.DataFrame:
    """A CSV as Yahoo's website exports it: Date, Open.., Adj Close, Volume; no symbol."""
    bars = synthetic_bars(symbol, n_bars=n, seed=4)
    raw = bars.select(
        pl.col("ts").dt.strftime("%Y-%m-%d").alias("Date"),
        pl.col("open").alias("Open"), pl.col("high").alias("High"),
        pl.col("low").alias("Low"), pl.col("close").alias("Close"),
        (pl.col("close") * adj).alias("Adj Close"), pl.col("volume").alias("Volume"),
    )
    raw.write_csv(path)
    return bars


def test_single_csv_with_adj_close(tmp_path: Path) -> None:
    bars = yahoo_style_csv(tmp_path / "prices.csv")
    df = load_bars("aaa", source=str(tmp_path / "prices.csv"))
    assert df["symbol"].unique().to_list() == ["AAA"] and df.height == 30
    # Adj Close / Close = 0.5 scales O/H/L/C by 0.5 and volume by 2.
    assert np.allclose(df["close"].to_numpy(), 0.5 * bars["close"].to_numpy())
    assert np.allclose(df["high"].to_numpy(), 0.5 * bars["high"].to_numpy())
    assert np.allclose(df["volume"].to_numpy(), 2 * bars["volume"].to_numpy())


def test_single_file_without_symbol_column_takes_its_stem(tmp_path: Path) -> None:
    yahoo_style_csv(tmp_path / "msft.csv", "MSFT")
    df = load_bars([], source=str(tmp_path / "msft.csv"))
    assert df["symbol"].unique().to_list() == ["MSFT"]
    with pytest.raises(BarsError) as err:
        load_bars(["A", "B"], source=str(tmp_path / "msft.csv"))
    assert err.value.rule == "unknown_symbol"


def test_parquet_with_symbol_column_filters_and_names_unknown(tmp_path: Path) -> None:
    bars = synthetic_bars(["AAA", "BBB", "CCC"], n_bars=20, seed=1)
    odd = bars.rename({"symbol": "Ticker", "ts": "timestamp", "open": "OPEN", "high": "High",
                       "low": "low", "close": "Close", "volume": "VOL"})
    odd.write_parquet(tmp_path / "all.parquet")
    df = load_bars(["bbb", "AAA"], source=str(tmp_path / "all.parquet"))
    assert df.equals(bars.filter(pl.col("symbol").is_in(["AAA", "BBB"])))
    with pytest.raises(BarsError) as err:
        load_bars(["AAA", "ZZZ"], source=str(tmp_path / "all.parquet"))
    assert err.value.rule == "unknown_symbol"
    assert "ZZZ" in str(err.value) and "AAA, BBB, CCC" in str(err.value)


def test_folder_one_file_per_symbol(tmp_path: Path) -> None:
    yahoo_style_csv(tmp_path / "AAA.csv", "AAA", adj=1.0)
    bbb = synthetic_bars("BBB", n_bars=15, seed=2)
    bbb.drop("symbol").write_parquet(tmp_path / "BBB.parquet")
    (tmp_path / "notes.txt").write_text("not data")
    df = load_bars(["AAA", "BBB"], source=str(tmp_path), start="2000-01-10")
    assert df["symbol"].unique().sort().to_list() == ["AAA", "BBB"]
    assert df["ts"].min().isoformat().startswith("2000-01-10")
    assert df.filter(pl.col("symbol") == "BBB").equals(
        bbb.filter(pl.col("ts") >= df["ts"].min()))
    with pytest.raises(BarsError) as err:
        load_bars(["CCC"], source=str(tmp_path))
    assert err.value.rule == "unknown_symbol" and "AAA, BBB" in str(err.value)


def test_volume_optional_and_time_column_spellings(tmp_path: Path) -> None:
    p = tmp_path / "fx.csv"
    p.write_text("Datetime,open,high,low,close\n"
                 "2024-01-02T10:00:00+01:00,1.1,1.2,1.0,1.15\n"
                 "2024-01-02T11:00:00+01:00,1.15,1.25,1.1,1.2\n")
    df = load_bars("EURUSD", source=str(p))
    assert df["volume"].null_count() == 2
    assert df["ts"][0].hour == 9  # +01:00 converted to UTC


def test_missing_required_column(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("date,open,high,close\n2024-01-02,1,2,1.5\n")
    with pytest.raises(BarsError) as err:
        load_bars("X", source=str(p))
    assert err.value.rule == "missing_column" and "low" in str(err.value)


def test_empty_and_header_only_files(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(BarsError) as err:
        load_bars("X", source=str(tmp_path / "empty.csv"))
    assert err.value.rule == "empty"
    (tmp_path / "header.csv").write_text("date,open,high,low,close,volume\n")
    with pytest.raises(BarsError) as err:
        load_bars("X", source=str(tmp_path / "header.csv"))
    assert err.value.rule == "empty"


def test_non_numeric_strings(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("date,open,high,low,close\n2024-01-02,1,2,0.5,1.5\n2024-01-03,1,two,0.5,1\n")
    with pytest.raises(BarsError) as err:
        load_bars("X", source=str(p))
    assert err.value.rule == "bad_dtype" and "'two'" in str(err.value) and err.value.rows == [1]


def test_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "bad.parquet").write_bytes(b"this is not parquet at all")
    with pytest.raises(BarsError) as err:
        load_bars("X", source=str(tmp_path / "bad.parquet"))
    assert err.value.rule == "unreadable"
    p = tmp_path / "dates.csv"
    p.write_text("date,open,high,low,close\nyesterday,1,2,0.5,1.5\n")
    with pytest.raises(BarsError) as err:
        load_bars("X", source=str(p))
    assert err.value.rule == "bad_dtype" and "Column 'date'" in str(err.value)


def test_dirty_rows_are_repaired_and_logged(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    p = tmp_path / "x.csv"
    p.write_text("date,open,high,low,close,volume\n"
                 "2024-01-03,1,2,0.5,1.5,10\n"
                 "2024-01-02,1,2,0.5,1.5,10\n"
                 "2024-01-04,1,0.9,0.5,1.5,10\n"  # high < open: dropped
                 "2024-01-05,0,2,0.5,1.5,-4\n")  # zero price: dropped
    with caplog.at_level(logging.WARNING, logger="candletok"):
        df = load_bars("X", source=str(p))
    assert df.height == 2 and df["ts"].is_sorted()
    assert "inconsistent high/low" in caplog.text and "prices <= 0" in caplog.text


def test_path_detection_and_missing_paths(tmp_path: Path) -> None:
    assert is_path_source("nowhere/bars.csv") and is_path_source(str(tmp_path))
    assert not is_path_source("sample") and not is_path_source("yahoo")
    with pytest.raises(SourceError, match="does not exist"):
        load_bars("X", source=str(tmp_path / "nope.parquet"))
    with pytest.raises(SourceError, match=r"no \.csv or \.parquet"):
        load_bars("X", source=str(tmp_path))


DIRTY = ("date,open,high,low,close,volume\n"
         "2024-01-03,1,2,0.5,1.5,10\n"
         "2024-01-02,1,2,0.5,1.5,10\n"
         "2024-01-04,1,0.9,0.5,1.5,10\n"  # high below the open
         "2024-01-05,0,2,0.5,1.5,4\n"  # a zero price
         "2024-01-08,NaN,2,0.5,1.5,4\n")  # not a number


def test_strict_mode_refuses_broken_rows_instead_of_repairing(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text(DIRTY)
    with pytest.raises(BarsError) as err:
        load_bars("X", source=str(p), repair=False)
    msg = str(err.value)
    assert err.value.rule in ("non_finite", "non_positive", "high_low") and err.value.rows
    assert "x.csv" in msg and "repair=True" in msg and "\n" not in msg
    assert load_bars("X", source=str(p)).height == 2  # the default repairs
    # Only broken rows are refused: unsorted but sound rows load in strict mode, sorted.
    p.write_text("date,open,high,low,close\n2024-01-03,1,2,0.5,1.5\n2024-01-02,1,2,0.5,1.5\n")
    df = load_bars("X", source=str(p), repair=False)
    assert df.height == 2 and df["ts"].is_sorted()


@pytest.mark.parametrize("fmt, text", [("%d/%m/%Y", "31/01/2024"), ("%Y%m%d", "20240131"),
                                       ("%d.%m.%Y %H:%M", "31.01.2024 15:30")])
def test_date_format_reads_dates_polars_cannot_guess(tmp_path: Path, fmt: str,
                                                     text: str) -> None:
    p = tmp_path / "eu.csv"
    p.write_text(f"Date,Open,High,Low,Close\n{text},1,2,0.5,1.5\n")
    df = load_bars("X", source=str(p), date_format=fmt)
    ts = df["ts"][0]
    assert (ts.year, ts.month, ts.day) == (2024, 1, 31) and str(df["ts"].dtype.time_zone) == "UTC"


def test_a_wrong_date_format_names_the_column_and_an_example(tmp_path: Path) -> None:
    p = tmp_path / "eu.csv"
    p.write_text("Date,Open,High,Low,Close\n31/01/2024,1,2,0.5,1.5\n01/02/2024,1,2,0.5,1.5\n")
    with pytest.raises(BarsError) as err:
        load_bars("X", source=str(p), date_format="%m/%d/%Y")
    msg = str(err.value)
    assert err.value.rule == "bad_dtype" and "'Date'" in msg and "'31/01/2024'" in msg
    assert "date_format='%m/%d/%Y'" in msg


# ------------------------------------------------------------- folders, fast path, @lists


def test_partitioned_folder_with_and_without_symbol_column(tmp_path: Path) -> None:
    bars = synthetic_bars(["AAA", "BBB", "CCC"], n_bars=40, seed=3)
    own = tmp_path / "own"  # as `candletok download --out DIR/` writes it
    bare = tmp_path / "bare"  # as pyarrow/Spark write hive partitions: no symbol inside
    for (sym,), part in bars.group_by("symbol"):
        (own / f"symbol={sym}").mkdir(parents=True)
        part.write_parquet(own / f"symbol={sym}" / "part-0.parquet")
        (bare / f"Ticker={sym.lower()}").mkdir(parents=True)
        part.drop("symbol").write_parquet(bare / f"Ticker={sym.lower()}" / "data.parquet")
    (own / "_SUCCESS").write_text("")
    for folder in (own, bare):
        assert load_bars([], source=str(folder)).equals(bars)
        got = load_bars(["CCC", "AAA"], source=str(folder), start="2000-01-20")
        want = bars.filter(pl.col("symbol").is_in(["AAA", "CCC"]), pl.col("ts") >= got["ts"].min())
        assert got.equals(want) and got["ts"].min().day == 20
    with pytest.raises(BarsError) as err:
        load_bars(["ZZZ"], source=str(own))
    assert err.value.rule == "unknown_symbol" and "AAA, BBB, CCC" in str(err.value)


def test_symbol_spelled_otherwise_in_the_file_is_still_found(tmp_path: Path) -> None:
    bars = synthetic_bars(["AAA", "BBB"], n_bars=10, seed=1)
    odd = bars.with_columns(pl.col("symbol").str.to_lowercase().map_elements(
        lambda s: f" {s}", return_dtype=pl.String))
    odd.write_parquet(tmp_path / "odd.parquet")
    assert load_bars(["bbb"], source=str(tmp_path / "odd.parquet")).equals(
        bars.filter(pl.col("symbol") == "BBB"))


@pytest.mark.parametrize("tz", [None, "UTC", "America/New_York"])
def test_date_range_pushed_into_parquet_scans(tmp_path: Path, tz: str | None) -> None:
    bars = synthetic_bars(["AAA", "BBB"], n_bars=60, interval="1h", seed=2)
    raw = bars.with_columns(pl.col("ts").dt.replace_time_zone(None) if tz is None
                            else pl.col("ts").dt.convert_time_zone(tz))
    raw.write_parquet(tmp_path / "x.parquet")
    got = load_bars([], source=str(tmp_path / "x.parquet"), start="2024-01-03 15:00",
                    end="2024-01-05")
    lo = datetime(2024, 1, 3, 15, tzinfo=timezone.utc)
    hi = datetime(2024, 1, 5, tzinfo=timezone.utc)
    assert got.equals(bars.filter(pl.col("ts") >= lo, pl.col("ts") < hi)) and got.height


def test_csv_and_parquet_of_the_same_bars_load_the_same(tmp_path: Path) -> None:
    bars = synthetic_bars(["AAA", "BBB"], n_bars=50, seed=9)
    bars.write_csv(tmp_path / "b.csv")
    bars.write_parquet(tmp_path / "b.parquet")
    a = load_bars([], source=str(tmp_path / "b.csv"))
    assert a.equals(load_bars([], source=str(tmp_path / "b.parquet")))
    assert a.equals(bars)


def test_symbol_list_files(tmp_path: Path) -> None:
    lst = tmp_path / "symbols.txt"
    lst.write_text("# my universe\naaa\n\nBBB  # a comment\nccc, AAA\n")
    assert normalize_symbols(["@" + str(lst), "ddd"]) == ["AAA", "BBB", "CCC", "DDD"]
    assert normalize_symbols("@" + str(lst)) == ["AAA", "BBB", "CCC"]
    df = load_bars("@" + str(lst), source="synthetic", n_bars=5)
    assert df["symbol"].unique().sort().to_list() == ["AAA", "BBB", "CCC"]
    with pytest.raises(SourceError, match="does not exist"):
        normalize_symbols(["@" + str(tmp_path / "nope.txt")])
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(SourceError, match="names no symbols"):
        normalize_symbols(["@" + str(tmp_path / "empty.txt")])


def test_bars_folder_round_trip_with_awkward_symbols(tmp_path: Path) -> None:
    bars = synthetic_bars(["AAA", "EURUSD=X", "^GSPC"], n_bars=20, seed=4)
    folder = tmp_path / "bars"
    written = write_bars_folder(bars.filter(pl.col("symbol") != "AAA"), folder)
    assert [p.parent.name for p in written] == ["symbol=EURUSD%3DX", "symbol=%5EGSPC"]
    write_bars_folder(bars.filter(pl.col("symbol") == "AAA"), folder)  # the folder grows
    assert load_bars([], source=str(folder)).equals(bars)
    assert load_bars(["^gspc"], source=str(folder)).equals(
        bars.filter(pl.col("symbol") == "^GSPC"))
    assert bars_file(folder, "AAA").exists()
    with pytest.raises(OutputError, match="is a file"):
        write_bars_folder(bars, written[0])
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "manifest.json").write_text("{}")
    with pytest.raises(OutputError, match="dataset folder"):
        write_bars_folder(bars, tmp_path / "ds")
