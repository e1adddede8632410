"""Build the recorded yfinance frames the Yahoo tests replay (no network).

Why not hand-written frames: their shape is the whole point of the test. So this script
feeds hand-made per-ticker ``Ticker.history()`` frames (what yfinance 1.7 returns for one
symbol with ``auto_adjust=True``: Open/High/Low/Close float64, Volume int64, index named
``Date``/``Datetime`` in the exchange time zone) through yfinance's *own* ``download()``
assembly code (``yfinance.multi._download_impl``), with ``Ticker`` replaced by a stub.
The result is exactly what ``yf.download`` hands back: MultiIndex columns in either level
order, flat columns with ``multi_level_index=False``, tz-naive daily index, intraday
index in the exchange time zone, and a failed ticker as all-NaN columns (plus the
``Adj Close`` column that ``utils.empty_df()`` drags in).

Run: ``.venv/bin/python tests/data/make_recorded.py`` (writes ``tests/data/yf_*.pkl``).
"""

from __future__ import annotations

import logging
import pickle
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pandas as pd
import yfinance.multi as yfm
from yfinance import utils

HERE = Path(__file__).parent
NY = "America/New_York"


def daily_history(symbol: str, start: str, n: int, seed: int) -> pd.DataFrame:
    """One ticker's daily ``history()`` frame: business days, midnight exchange time."""
    rng = np.random.default_rng(seed)
    idx = pd.bdate_range(start, periods=n, tz=NY, name="Date")
    return _ohlcv(idx, rng, 100.0 + seed)


def intraday_history(symbol: str, day: str, n: int, seed: int) -> pd.DataFrame:
    """One ticker's 5m ``history()`` frame from 09:30 exchange time."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range(f"{day} 09:30", periods=n, freq="5min", tz=NY, name="Datetime")
    return _ohlcv(idx, rng, 50.0 + seed)


def _ohlcv(idx: pd.DatetimeIndex, rng: np.random.Generator, p0: float) -> pd.DataFrame:
    n = len(idx)
    close = p0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[p0, close[:-1]] * np.exp(rng.normal(0, 0.002, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.004, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.004, n)))
    vol = rng.integers(1_000_000, 5_000_000, n).astype("int64")
    return pd.DataFrame(
        {"Open": open_, "High": high, "Low": low, "Close": close, "Volume": vol}, index=idx
    )


class _StubTicker:
    """Stands in for ``yfinance.Ticker``: returns a prepared history or fails like Yahoo."""

    histories: ClassVar[dict[str, pd.DataFrame]] = {}
    errors: ClassVar[dict[str, Exception | str]] = {}

    def __init__(self, ticker: str) -> None:
        self.ticker = ticker
        self._price_history = SimpleNamespace(_last_error=None)

    def history(self, **_: object) -> pd.DataFrame:
        err = self.errors.get(self.ticker)
        if isinstance(err, Exception):
            raise err  # download() catches it: empty frame + logged repr, like a network error
        if err is not None:  # Yahoo's soft failure: logged, empty frame, no exception
            logging.getLogger("yfinance").error(f"${self.ticker}: {err}")
            self._price_history._last_error = err
            return utils.empty_df()
        return self.histories[self.ticker].copy()


def download(tickers: list[str] | str, **kw: object) -> pd.DataFrame:
    """Run yfinance 1.7's real ``download()`` assembly over the stub tickers."""
    args = {"progress": False, "threads": False, "auto_adjust": True, "session": object()}
    args.update(kw)
    yfm.Ticker = _StubTicker  # type: ignore[misc]
    yfm.YfData = lambda session=None: None  # type: ignore[assignment,misc]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return yfm._download_impl(yfm._DownloadCtx(), tickers, **args)


def build() -> dict[str, pd.DataFrame]:
    _StubTicker.histories = {
        "AAPL": daily_history("AAPL", "2024-01-02", 20, 1),
        # MSFT misses one day AAPL has, so the union index pads it with a NaN row.
        "MSFT": daily_history("MSFT", "2024-01-02", 20, 2).drop(
            pd.Timestamp("2024-01-10", tz=NY)
        ),
        "SPY5": intraday_history("SPY5", "2024-03-11", 12, 3),  # EDT (UTC-4) day
        "QQQ5": intraday_history("QQQ5", "2024-03-11", 12, 4),
    }
    _StubTicker.errors = {
        "NOPE": "possibly delisted; no timezone found",
        "DOWN1": ConnectionError(
            "Failed to perform, curl: (6) Could not resolve host: query2.finance.yahoo.com."
        ),
        "DOWN2": ConnectionError(
            "Failed to perform, curl: (6) Could not resolve host: query2.finance.yahoo.com."
        ),
    }
    return {
        "single_daily": download("AAPL", start="2024-01-01", end="2024-02-01"),
        "single_flat": download("AAPL", multi_level_index=False),
        "single_flat_ticker": download("AAPL", multi_level_index=False, group_by="ticker"),
        "multi_column": download(["AAPL", "MSFT"], group_by="column"),
        "multi_ticker": download(["AAPL", "MSFT"], group_by="ticker"),
        "multi_failed": download(["AAPL", "NOPE"], group_by="column"),
        "all_failed": download(["NOPE"]),
        "network_down": download(["DOWN1", "DOWN2"]),
        "intraday_multi": download(["SPY5", "QQQ5"], interval="5m", group_by="ticker"),
        "intraday_single": download(["SPY5"], interval="5m"),
    }


def main() -> None:
    frames = build()
    for name, df in frames.items():
        with open(HERE / f"yf_{name}.pkl", "wb") as fh:
            pickle.dump(df, fh, protocol=4)
        print(f"{name:18s} {df.shape!s:10s} cols={list(df.columns)[:4]} idx={df.index.dtype}")


if __name__ == "__main__":
    main()
