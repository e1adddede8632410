"""validate_bars / repair_bars on a zoo of broken inputs, plus hypothesis properties."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from candletok.core.errors import BarsError
from candletok.data.bars import (
    BARS_SCHEMA,
    bar_problems,
    canonicalize,
    repair_bars,
    validate_bars,
)

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def make_bars(n: int = 6, symbols: tuple[str, ...] = ("AAA",), seed: int = 0) -> pl.DataFrame:
    """Valid canonical bars built directly (not by the generator under test elsewhere)."""
    rng = np.random.default_rng(seed)
    frames = []
    for s in symbols:
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
        open_ = close * np.exp(rng.normal(0, 0.005, n))
        high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, n))
        low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, n))
        frames.append(pl.DataFrame({
            "symbol": [s] * n,
            "ts": [T0 + timedelta(days=i) for i in range(n)],
            "open": open_, "high": high, "low": low, "close": close,
            "volume": rng.uniform(0, 1e6, n),
        }, schema=BARS_SCHEMA))
    return pl.concat(frames)


def _set(df: pl.DataFrame, row: int, col: str, value: object) -> pl.DataFrame:
    values = df[col].to_list()
    values[row] = value
    return df.with_columns(pl.Series(col, values, dtype=df.schema[col]))


# ------------------------------------------------------------------ the zoo, strict


@pytest.mark.parametrize(
    ("col", "value", "rule"),
    [
        ("open", float("nan"), "non_finite"),
        ("close", float("inf"), "non_finite"),
        ("high", float("-inf"), "non_finite"),
        ("low", 0.0, "non_positive"),
        ("open", -3.0, "non_positive"),
        ("close", None, "null"),
        ("symbol", "", "empty_symbol"),
        ("volume", -1.0, "negative_volume"),
        ("volume", float("nan"), "negative_volume"),
    ],
)
def test_strict_names_rule_and_row(col: str, value: object, rule: str) -> None:
    df = _set(make_bars(), 3, col, value)
    with pytest.raises(BarsError) as err:
        validate_bars(df, "strict")
    assert err.value.rule == rule
    assert err.value.rows == [3]


def test_high_below_low_and_body() -> None:
    df = make_bars()
    df = _set(df, 2, "high", float(df["low"][2]) * 0.9)
    with pytest.raises(BarsError) as err:
        validate_bars(df)
    assert (err.value.rule, err.value.rows) == ("high_low", [2])
    df2 = _set(make_bars(), 4, "low", float(make_bars()["high"][4]) * 1.1)
    with pytest.raises(BarsError) as err:
        validate_bars(df2)
    assert (err.value.rule, err.value.rows) == ("high_low", [4])


def test_duplicates_and_unsorted() -> None:
    df = make_bars()
    dup = _set(df, 4, "ts", df["ts"][3])
    with pytest.raises(BarsError) as err:
        validate_bars(dup)
    assert err.value.rule == "duplicate_ts" and err.value.rows == [3, 4]
    swapped = pl.concat([df[:2], df[3:4], df[2:3], df[4:]])
    with pytest.raises(BarsError) as err:
        validate_bars(swapped)
    assert err.value.rule == "unsorted" and err.value.rows == [2, 3]


def test_empty_missing_column_and_bad_dtype() -> None:
    with pytest.raises(BarsError) as err:
        validate_bars(make_bars().clear())
    assert err.value.rule == "empty"
    with pytest.raises(BarsError) as err:
        validate_bars(make_bars().drop("low"))
    assert err.value.rule == "missing_column" and "low" in str(err.value)
    with pytest.raises(BarsError) as err:
        validate_bars(make_bars().with_columns(pl.col("close").cast(pl.String)))
    assert err.value.rule == "bad_dtype"
    naive = make_bars().with_columns(pl.col("ts").dt.replace_time_zone(None))
    with pytest.raises(BarsError) as err:
        validate_bars(naive)
    assert err.value.rule == "bad_dtype"


def test_canonicalize_wrong_columns_and_text() -> None:
    raw = pl.DataFrame({"Date": ["2024-01-02"], "Open": ["1"], "High": ["2"], "Close": ["1.5"]})
    with pytest.raises(BarsError) as err:
        canonicalize(raw, symbol="X")
    assert err.value.rule == "missing_column" and "low" in str(err.value)
    raw = pl.DataFrame({"Date": ["2024-01-02", "2024-01-03"], "Open": ["1", "n/a"],
                        "High": ["2", "2"], "Low": ["0.5", "0.5"], "Close": ["1.5", "1"]})
    with pytest.raises(BarsError) as err:
        canonicalize(raw, symbol="X")
    assert err.value.rule == "bad_dtype" and err.value.rows == [1] and "n/a" in str(err.value)
    assert "Column 'Open'" in str(err.value)  # named as the table names it
    raw = raw.with_columns(pl.Series("Date", ["2024-01-02", "Jan third"]),
                           pl.lit("1").alias("Open"))
    with pytest.raises(BarsError) as err:
        canonicalize(raw, symbol="X")
    assert err.value.rule == "bad_dtype" and "Column 'Date'" in str(err.value)


def test_validate_returns_microsecond_utc() -> None:
    ms = make_bars().with_columns(pl.col("ts").cast(pl.Datetime("ms", "UTC")))
    out = validate_bars(ms)
    assert out.schema["ts"] == pl.Datetime("us", "UTC")
    assert out["ts"].to_list() == make_bars()["ts"].to_list()


# ------------------------------------------------------------------ repair counts


def test_repair_counts_every_kind(caplog: pytest.LogCaptureFixture) -> None:
    df = make_bars(12)
    df = _set(df, 1, "open", float("nan"))
    df = _set(df, 2, "close", 0.0)
    df = _set(df, 3, "high", float(df["low"][3]) * 0.5)
    df = _set(df, 4, "close", None)
    df = _set(df, 5, "volume", -5.0)
    df = _set(df, 7, "ts", df["ts"][6])  # duplicate of row 6
    df = pl.concat([df[8:], df[:8]])  # and out of order
    out, report = repair_bars(df)
    assert report.rows_in == 12
    assert (report.dropped_non_finite, report.dropped_non_positive, report.dropped_high_low,
            report.dropped_null, report.dropped_duplicates, report.volume_nulled) == (
        1, 1, 1, 1, 1, 1)
    assert report.resorted
    assert report.rows_out == out.height == 12 - 5
    validate_bars(out, "strict")
    with caplog.at_level(logging.WARNING, logger="candletok"):
        validate_bars(df, "repair")
    assert "repaired bars" in caplog.text and "duplicate" in caplog.text


def test_repair_keeps_valid_prices_unchanged() -> None:
    df = make_bars(8, ("A", "B"))
    out, report = repair_bars(df)
    assert not report.changed
    assert out.equals(df)


def test_repair_of_all_broken_rows_is_empty_error() -> None:
    df = make_bars(3).with_columns(pl.lit(-1.0).alias("close"))
    with pytest.raises(BarsError) as err:
        repair_bars(df)
    assert err.value.rule == "empty"


# ------------------------------------------------------------------ properties

CORRUPTIONS = {
    "nan": ("open", float("nan"), "non_finite"),
    "inf": ("low", float("inf"), "non_finite"),
    "zero": ("close", 0.0, "non_positive"),
    "negative": ("high", -1.0, "non_positive"),
    "null": ("open", None, "null"),
    "neg_volume": ("volume", -2.0, "negative_volume"),
}


@st.composite
def valid_bars(draw: st.DrawFn) -> pl.DataFrame:
    n = draw(st.integers(1, 30))
    nsym = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    df = make_bars(n, tuple(f"S{i}" for i in range(nsym)), seed=seed)
    if draw(st.booleans()):
        df = df.with_columns(pl.lit(None, dtype=pl.Float64).alias("volume"))
    return df


@settings(max_examples=40, deadline=None)
@given(valid_bars())
def test_any_valid_bars_pass_strict(df: pl.DataFrame) -> None:
    out = validate_bars(df, "strict")
    assert out.equals(df)


@settings(max_examples=60, deadline=None)
@given(valid_bars(), st.sampled_from(sorted(CORRUPTIONS)), st.data())
def test_any_single_corrupted_row_is_caught(df: pl.DataFrame, kind: str, data: st.DataObject
                                            ) -> None:
    row = data.draw(st.integers(0, df.height - 1))
    col, value, rule = CORRUPTIONS[kind]
    bad = _set(df, row, col, value)
    with pytest.raises(BarsError) as err:
        validate_bars(bad, "strict")
    assert err.value.rule == rule
    assert err.value.rows == [row]


@settings(max_examples=60, deadline=None)
@given(valid_bars(), st.lists(st.tuples(st.sampled_from(sorted(CORRUPTIONS)), st.integers(0, 99)),
                              max_size=6), st.booleans(), st.booleans())
def test_repair_output_always_passes_strict(
    df: pl.DataFrame, hits: list[tuple[str, int]], dup: bool, shuffle: bool
) -> None:
    for kind, r in hits:
        col, value, _ = CORRUPTIONS[kind]
        df = _set(df, r % df.height, col, value)
    if dup:
        df = pl.concat([df, df[:1]])
    if shuffle:
        df = df.reverse()
    try:
        out, report = repair_bars(df)
    except BarsError as exc:  # only allowed when nothing valid is left
        assert exc.rule == "empty"
        return
    assert validate_bars(out, "strict").height == out.height == report.rows_out
    assert report.rows_out <= report.rows_in == df.height


# ------------------------------------------------------------------ the one-pass check


@settings(max_examples=60, deadline=None)
@given(valid_bars(), st.sampled_from(sorted(CORRUPTIONS)), st.data())
def test_one_pass_check_never_misses_a_broken_rule(df: pl.DataFrame, kind: str,
                                                   data: st.DataObject) -> None:
    assert bar_problems(df) == []
    row = data.draw(st.integers(0, df.height - 1))
    col, value, rule = CORRUPTIONS[kind]
    assert rule in bar_problems(_set(df, row, col, value))


@settings(max_examples=40, deadline=None)
@given(valid_bars(), st.data())
def test_one_pass_check_finds_disorder_and_repeats(df: pl.DataFrame, data: st.DataObject
                                                   ) -> None:
    if df.height < 2:
        return
    i = data.draw(st.integers(0, df.height - 2))
    swapped = pl.concat([df[:i], df[i + 1 : i + 2], df[i : i + 1], df[i + 2 :]])
    assert bar_problems(swapped) == ["order"]
    assert bar_problems(pl.concat([df, df[i : i + 1]]).sort("symbol", "ts")) == ["order"]
    # a symbol split into two runs is out of order too, even with rising times
    if df["symbol"].n_unique() > 1:
        first = df["symbol"][0]
        split = pl.concat([df.filter(pl.col("symbol") == first).head(1),
                           df.filter(pl.col("symbol") != first),
                           df.filter(pl.col("symbol") == first).slice(1)])
        if split["symbol"][-1] == first:
            assert bar_problems(split) == ["order"]
