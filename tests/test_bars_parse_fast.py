"""Text dates are parsed in one pass with the format a sample shows (issue "Live and
fast", CSV loading): whatever the column mixes, the result -- the times, or the refusal --
is what trying every format on the whole column gives, as canonicalize did before."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from candletok.core.errors import BarsError
from candletok.data import bars as bars_mod
from candletok.data.bars import _parse_times
from candletok.data.sources import load_bars

SPELLINGS = {
    "date": "2024-01-{d:02d}",
    "minute": "2024-01-{d:02d} 15:30",
    "offset": "2024-01-{d:02d}T15:30:00.000+01:00",
    "zulu": "2024-01-{d:02d}T15:30:00Z",
    "slashes": "{d:02d}/01/2024",
}


def every_format_on_the_whole_column(s: pl.Series) -> pl.Series:
    """The parse before the sample: each Arrow target tried on the whole column, then
    Polars' inference."""
    arr = s.to_arrow()
    if arr.null_count < len(arr):
        for target in (pa.timestamp("us", tz="UTC"), pa.timestamp("us")):
            try:
                parsed = pl.Series(s.name, pc.cast(arr, target))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
            if parsed.dtype.time_zone is None:  # type: ignore[attr-defined]
                parsed = parsed.dt.replace_time_zone("UTC")
            return parsed.cast(pl.Datetime("us", "UTC"))
    return s.str.to_datetime(time_unit="us", time_zone="UTC")


def outcome(fn, s: pl.Series) -> object:  # type: ignore[no-untyped-def]
    try:
        return fn(s).to_list()
    except Exception as exc:  # the refusal's kind is what is compared
        return type(exc)


@settings(max_examples=60, deadline=None)
@given(
    main=st.sampled_from(sorted(SPELLINGS)), n=st.integers(1, 3000),
    others=st.lists(st.tuples(st.sampled_from([*sorted(SPELLINGS), None]),
                              st.integers(0, 10**6)), max_size=3),
)
def test_one_format_pass_equals_trying_every_format(main: str, n: int,
                                                    others: list[tuple[str | None, int]]
                                                    ) -> None:
    values: list[str | None] = [SPELLINGS[main].format(d=1 + i % 28) for i in range(n)]
    for kind, at in others:  # a few values of another spelling (or nulls), anywhere
        values[at % n] = None if kind is None else SPELLINGS[kind].format(d=1 + at % 28)
    s = pl.Series("ts", values, dtype=pl.String)
    assert outcome(_parse_times, s) == outcome(every_format_on_the_whole_column, s)


def test_a_value_the_sample_misses_still_decides(tmp_path: Path) -> None:
    """One zoned time among plain dates, where no sample looks: refused as before (a mix of
    zoned and naive times is ambiguous), not half-parsed."""
    n = 5000
    values = [f"2024-01-{1 + i % 28:02d}" for i in range(n)]
    hidden = 4001
    step = max(1, n // bars_mod._SAMPLE)
    assert hidden >= bars_mod._SAMPLE and hidden % step  # in neither head nor stride
    values[hidden] = "2024-01-02T10:00:00+02:00"
    s = pl.Series("ts", values)
    assert outcome(_parse_times, s) == outcome(every_format_on_the_whole_column, s)
    price = [100.0] * n
    path = tmp_path / "AAA.csv"
    pl.DataFrame({"date": values, "open": price, "high": price, "low": price,
                  "close": price}).write_csv(path)
    with pytest.raises(BarsError, match="could not be read as dates"):
        load_bars([], source=str(path))
    # and once the value is plain too, the column loads (one bar per distinct date)
    values[hidden] = "2024-01-02"
    pl.DataFrame({"date": values, "open": price, "high": price, "low": price,
                  "close": price}).unique("date").write_csv(path)
    got = load_bars([], source=str(path))
    assert got["ts"].dtype == pl.Datetime("us", "UTC") and got.height == len(set(values))
