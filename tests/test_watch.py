"""``candletok watch`` end to end with a fake clock and a fake Yahoo (the injectable
``fetch`` every download goes through): bars that arrive late, twice, out of order, after a
gap, a bar still forming, a network error; the printed answers equal ``predict`` on the
same bars, and a restart resumes from the cache."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from _helpers import run_main, trained_on_synthetic

from candletok.data import yahoo

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
H = timedelta(hours=1)
N, HISTORY = 34, 24  # bars in all; bars published before the watch starts


@dataclass
class FakeClock:
    t: datetime
    slept: list[float] = field(default_factory=list)

    def now(self) -> datetime:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += timedelta(seconds=max(seconds, 1.0))


def hourly(n: int, seed: int = 5) -> pl.DataFrame:
    r = np.random.default_rng(seed)
    c, rows = 50.0, []
    for i in range(n):
        o = c * np.exp(r.normal(0, 0.002))
        c = o * np.exp(r.normal(0, 0.008))
        rows.append({"symbol": "AAA", "ts": T0 + i * H, "open": o,
                     "high": max(o, c) * np.exp(abs(r.normal(0, 0.003))),
                     "low": min(o, c) * np.exp(-abs(r.normal(0, 0.003))), "close": c,
                     "volume": float(1000 + i)})
    return pl.DataFrame(rows).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))


class FakeYahoo:
    """Bar i is published ``delay[i]`` seconds after it closes (absent until then); while
    it is open a forming version of it (other prices) is served. Some polls repeat rows,
    shuffle them, or fail like a dropped connection."""

    def __init__(self, bars: pl.DataFrame, clock: FakeClock, delay: dict[int, float],
                 fail_calls: set[int]) -> None:
        self.bars, self.clock, self.delay, self.fail_calls = bars, clock, delay, fail_calls
        self.calls: list[tuple[datetime, datetime]] = []

    def __call__(self, symbols: list[str], *, interval: str, start: datetime | None,
                 end: datetime | None) -> Any:
        import pandas as pd

        self.calls.append((start, end))  # type: ignore[arg-type]
        if len(self.calls) in self.fail_calls:
            raise ConnectionError("Connection reset by peer (timed out)")
        now, rows = self.clock.now(), []
        for i, r in enumerate(self.bars.iter_rows(named=True)):
            if not (start <= r["ts"] < end):  # type: ignore[operator]
                continue
            if now >= r["ts"] + H + timedelta(seconds=self.delay.get(i, 0.0)):
                rows.append(r)
                if i % 4 == 0:
                    rows.append(r)  # served twice
            elif r["ts"] <= now < r["ts"] + H:  # still forming: not its final prices
                rows.append(dict(r, close=r["open"], high=r["high"] * 1.01))
        rows = rows[::-1] if len(self.calls) % 2 else rows  # out of order
        if not rows:
            return pd.DataFrame()
        idx = pd.DatetimeIndex([r["ts"] for r in rows])
        return pd.DataFrame({"Open": [r["open"] for r in rows],
                             "High": [r["high"] for r in rows],
                             "Low": [r["low"] for r in rows],
                             "Close": [r["close"] for r in rows],
                             "Volume": [r["volume"] for r in rows]}, index=idx)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("watch")
    trained_on_synthetic(root)
    return root


@pytest.fixture
def predictor(work: Path):  # type: ignore[no-untyped-def]
    from candletok.predict.predictor import Predictor

    return Predictor.from_checkpoint(work / "m.pt", work / "ds")


def same(a, b) -> None:  # type: ignore[no-untyped-def]
    assert (a.origin, a.last_close) == (b.origin, b.last_close)
    for k in ("p_up_raw", "range_raw"):
        assert abs(getattr(a, k) - getattr(b, k)) <= 1e-6


def scenario(tmp_path: Path) -> tuple[pl.DataFrame, FakeClock, FakeYahoo]:
    bars = hourly(N)
    clock = FakeClock(T0 + HISTORY * H + timedelta(seconds=5))
    # bar 25 is 400 s late; the feed lags two hours at 28 and 29, which come with 30 (a
    # gap); polls 3 and 4 fail; every 4th bar is served twice, every other poll reversed
    delay = {HISTORY + 1: 400.0, 28: 2 * 3600.0 + 60, 29: 3600.0 + 60, 30: 60.0}
    return bars, clock, FakeYahoo(bars, clock, delay, fail_calls={3, 4})


def test_watch_answers_every_bar_once_as_predict_does(predictor, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from candletok.predict.live import Watcher, YahooFeed

    bars, clock, fake = scenario(tmp_path)
    feed = YahooFeed("1h", fetch=fake, cache_dir=tmp_path / "cache")
    w = Watcher(predictor, ["AAA"], "1h", feed, clock, exchange="none", grace=30, poll=300)
    res = w.run(max_bars=N - HISTORY, max_polls=200)
    assert res.reason == "max_bars" and res.bars == N - HISTORY and res.errors == 2
    kinds = [e.kind for e in res.events]
    assert kinds == ["start"] + ["bar"] * (N - HISTORY)
    got_ts = [e.ts for e in res.events]
    assert got_ts == bars["ts"].to_list()[HISTORY - 1:]  # each bar once, in time order
    for i, ev in zip(range(HISTORY - 1, N), res.events, strict=True):
        same(ev.answers[0], predictor.predict(bars.head(i + 1))[0])  # never a forming bar
    assert clock.t >= T0 + N * H + timedelta(seconds=30)
    # a restart an hour later resumes from the cache: the history is every bar seen, and
    # only the tail after the cached range is fetched
    clock.t += H
    n_calls = len(fake.calls)
    w2 = Watcher(predictor, ["AAA"], "1h", feed, clock, exchange="none")
    res2 = w2.run(max_polls=1)
    assert res2.events[0].kind == "start" and res2.events[0].ts == bars["ts"][-1]
    same(res2.events[0].answers[0], predictor.predict(bars)[0])
    assert fake.calls[n_calls][0] >= T0 + (N - 1) * H  # the history came from the cache


def test_cli_watch_prints_one_json_line_per_bar(work: Path, tmp_path: Path, capsys,  # type: ignore[no-untyped-def]
                                                 monkeypatch, predictor) -> None:
    from candletok.cli import cmd_watch

    bars, clock, fake = scenario(tmp_path)
    monkeypatch.setattr(yahoo, "yf_download", fake)
    monkeypatch.setattr(cmd_watch, "make_clock", lambda stop: clock)
    code, out, err = run_main(
        ("watch", "AAA", "--model", str(work / "m.pt"), "--dataset", str(work / "ds"),
         "--interval", "1h", "--json", "--max-bars", "4", "--exchange", "none", "--poll", "300"),
        tmp_path, capsys, monkeypatch, CANDLETOK_CACHE=str(tmp_path / "cache"))
    assert code == 0, err
    lines = [json.loads(x) for x in out.splitlines()]
    assert [x["event"] for x in lines] == ["start", "bar", "bar", "bar", "bar"]
    for i, x in zip(range(HISTORY - 1, HISTORY + 4), lines, strict=True):
        ref = predictor.predict(bars.head(i + 1))[0]
        assert x["ts"] == ref.origin.isoformat()
        assert abs(x["answers"][0]["p_up_raw"] - ref.p_up_raw) <= 1e-6
    assert "the feed failed" in err and "4 new bars" in err
    code, out, err = run_main(
        ("watch", "AAA", "--model", str(work / "m.pt"), "--dataset", str(work / "ds"),
         "--interval", "1h", "--max-bars", "1", "--exchange", "none", "--poll", "300"),
        tmp_path, capsys, monkeypatch, CANDLETOK_CACHE=str(tmp_path / "cache"))
    assert code == 0, err
    assert out.count("AAA  close") == 2 and "P(up)" in out  # a line per bar in a pipe


def test_sigterm_while_waiting_exits_cleanly(work: Path, tmp_path: Path, capsys,  # type: ignore[no-untyped-def]
                                             monkeypatch) -> None:
    """The stop event (what Ctrl-C or SIGTERM sets) ends the wait at once: the run prints
    what it did and exits as the shell expects of that signal (143 for SIGTERM)."""
    import signal

    from candletok.cli import cmd_watch

    _bars, clock, fake = scenario(tmp_path)
    monkeypatch.setattr(yahoo, "yf_download", fake)

    def stopping(stop):  # type: ignore[no-untyped-def]
        def sleep(seconds: float) -> None:
            stop.signum = signal.SIGTERM
            stop.set()
        clock.sleep = sleep  # type: ignore[method-assign]
        return clock

    monkeypatch.setattr(cmd_watch, "make_clock", stopping)
    code, out, err = run_main(
        ("watch", "AAA", "--model", str(work / "m.pt"), "--dataset", str(work / "ds"),
         "--interval", "1h", "--exchange", "none"),
        tmp_path, capsys, monkeypatch, CANDLETOK_CACHE=str(tmp_path / "cache"))
    assert code == 143 and "0 new bars" in err
    assert out.count("AAA  close") == 1  # the answer on the history, then the stop


def test_cli_watch_odds_and_analogues_equal_predict_and_similar(  # type: ignore[no-untyped-def]
        work: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """``watch --odds --dataset`` on a file another process appends to (the fake clock
    decides which of its daily bars have closed): each bar's odds are what ``predict
    --odds`` prints on the bars up to it, and its analogues what ``similar`` prints."""
    from candletok.cli import cmd_watch

    day = timedelta(days=1)
    bars = hourly(HISTORY + 3).with_columns(
        pl.Series("ts", [T0 + i * day for i in range(HISTORY + 3)]).cast(
            pl.Datetime("us", "UTC")))
    feed = tmp_path / "feed.csv"
    bars.write_csv(feed)
    clock = FakeClock(T0 + HISTORY * day + timedelta(seconds=5))
    monkeypatch.setattr(cmd_watch, "make_clock", lambda stop: clock)
    odds = ("--odds", "1,2", "--samples", "40")
    code, out, err = run_main(
        ("watch", "AAA", "--model", str(work / "m.pt"), "--dataset", str(work / "ds"),
         "--source", str(feed), "--interval", "1d", "--horizon", "1,3", "--json",
         "--max-bars", "2", "--exchange", "none", *odds), tmp_path, capsys, monkeypatch)
    assert code == 0, err
    lines = [json.loads(x) for x in out.splitlines()]
    assert [x["event"] for x in lines] == ["start", "bar", "bar"]
    for n, x in zip(range(HISTORY, HISTORY + 3), lines, strict=True):
        assert x["ts"] == bars["ts"][n - 1].isoformat()
        head = tmp_path / f"head{n}.csv"
        bars.head(n).write_csv(head)
        code, pout, perr = run_main(
            ("predict", "AAA", "--model", str(work / "m.pt"), "--source", str(head),
             "--horizon", "3", "--calendar-exchange", "none", "--json", *odds),
            tmp_path, capsys, monkeypatch)
        assert code == 0, perr
        ref = json.loads(pout)["predictions"][0]["odds"]
        assert len(x["odds"]) == 2 and [r["k"] for r in x["odds"]] == [1.0, 2.0]
        assert x["odds"] == ref  # the same seeded paths: the same numbers
        assert {r["horizon"] for r in x["odds"]} == {3}  # the longest --horizon
        code, sout, serr = run_main(
            ("similar", "AAA", "--dataset", str(work / "ds"), "--source", str(head),
             "--horizon", "1,3", "--json"), tmp_path, capsys, monkeypatch)
        assert code == 0, serr
        sim, a = json.loads(sout), x["analogues"]
        assert a["matches"] == sim["summary"]["matches"] > 0
        assert a["window"] == sim["summary"]["window"]
        for got in a["horizons"]:
            h = got["horizon"]
            m, b = (next(r for r in sim["outcomes"] if r["horizon"] == h and r["who"] == who)
                    for who in ("matches", "base"))
            assert (got["n"], got["p_up"], got["p_lo"], got["p_hi"]) == pytest.approx(
                (m["n"], m["p_up"], m["p_lo"], m["p_hi"]))
            assert got["base_rate"] == pytest.approx(b["p_up"])
            cal = next(c for c in sim["calibration"]["horizons"] if c["horizon"] == h)
            assert got["p_up_calibrated"] == pytest.approx(cal["p_up_calibrated"])
        assert [m["symbol"] for m in a["top"]] == [m["symbol"] for m in sim["matches"][:5]]
    # a line per bar in a pipe: the odds and the analogues after the answers
    code, out, err = run_main(
        ("watch", "AAA", "--model", str(work / "m.pt"), "--dataset", str(work / "ds"),
         "--source", str(feed), "--interval", "1d", "--max-bars", "0", "--exchange",
         "none", *odds), tmp_path, capsys, monkeypatch)
    assert code == 0, err
    line = out.splitlines()[0]
    assert "P(up)" in line and "odds h=1 k=1 target" in line and "analogues " in line
    # an updating table in a terminal: the odds and the analogues in their own columns
    from rich.console import Console

    from candletok.predict.live import SourceFeed, Watcher
    from candletok.predict.predictor import Predictor
    from candletok.predict.watchextras import AnalogueAsk, OddsAsk

    pred = Predictor.from_checkpoint(work / "m.pt", work / "ds")
    clock.t = T0 + HISTORY * day + timedelta(seconds=5)  # as the first run started
    w = Watcher(pred, ["AAA"], "1d", SourceFeed(str(feed), "1d"), clock, horizons=(1, 3),
                exchange="none", odds=OddsAsk((1.0, 2.0), 3, 40, "none"),
                analogues=AnalogueAsk(work / "ds", (1, 3)))
    ev = w.run(max_bars=0, max_polls=1).events[0]
    screen = Console(record=True, width=400)
    screen.print(cmd_watch._table({"AAA": ev}, "1d"))
    text = screen.export_text()
    assert "odds" in text and "analogues" in text and "k=2 target" in text
    assert ev.analogues == lines[0]["analogues"]  # what the first run printed at its start


@pytest.mark.parametrize("bad", [("--odds", "-1"), ("--odds", "1", "--samples", "0")])
def test_cli_watch_refuses_bad_odds_in_one_sentence(work: Path, tmp_path: Path, capsys,  # type: ignore[no-untyped-def]
                                                    monkeypatch, bad) -> None:
    code, out, err = run_main(("watch", "AAA", "--model", str(work / "m.pt"), *bad),
                              tmp_path, capsys, monkeypatch)
    assert code != 0 and out == ""
    assert "--odds" in err or "--samples" in err
