"""`similar` with calibrated analogue probabilities: skill where a pattern was planted, the
words "no skill" on a random walk, a map cached and reused, JSON fields as fractions, and
no look past the query's time T (the val replay included)."""

from __future__ import annotations

import json
import math
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_evaluate import planted_bars
from test_search_cli import run_cli

from candletok.dataset.build import build_dataset
from candletok.evaluation import simcal
from candletok.evaluation.simcal import calibrated_similar
from candletok.search.index import index_dir

SYMS = ("AAA", "BBB", "CCC")
VAL_FROM, TEST_FROM = "2001-06-01", "2002-01-01"
PARAMS = {"gap_bins": 1, "body_bins": 4, "upper_bins": 2, "lower_bins": 2}
FAST = {"last": 1, "horizons": (1, 2), "val_origins": 60, "n_boot": 200}


def build(bars: pl.DataFrame, out: Path, vocab: Path | None = None) -> Path:
    def loader(symbols: list[str], **_: Any) -> pl.DataFrame:
        return bars.filter(pl.col("symbol").is_in(symbols))

    build_dataset(list(SYMS), out, loader=loader, vocab=vocab, tokenizer_params=PARAMS,
                  val_from=VAL_FROM, test_from=TEST_FROM, overwrite=True)
    return out


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The next close moves against the last one 80% of the time."""
    return build(planted_bars(900, SYMS, seed=1, flip=0.8),
                 tmp_path_factory.mktemp("simcal") / "planted")


@pytest.fixture(scope="module")
def walk_bars() -> pl.DataFrame:
    return planted_bars(900, SYMS, seed=2, flip=0.5)


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory, walk_bars: pl.DataFrame) -> Path:
    return build(walk_bars, tmp_path_factory.mktemp("simcal") / "walk")


def test_a_planted_pattern_shows_positive_val_skill(planted: Path) -> None:
    # the coarse alphabet (exact's default) finds the planted reversal on val too
    co = calibrated_similar(planted, "AAA", **FAST).calibration.horizons[0]
    assert co.val_skill["lo"] > 0 and co.skill_shown, co
    # the vocabulary's tokens (the body bins the pattern was planted for): a clear lean
    r = calibrated_similar(planted, "AAA", **FAST, alphabet="tokens")
    h1 = r.calibration.horizons[0]
    assert h1.horizon == 1 and h1.val_n >= 40
    assert h1.val_skill["lo"] > 0 and h1.skill_shown, h1
    assert "has shown skill" in h1.words
    # the calibrated number leans, clearly, where the matches point
    lean = h1.p_up_calibrated - h1.base_rate
    assert abs(lean) > 0.1 and lean * (h1.matches_p_up - h1.base_rate) > 0, h1
    # the raw number is the matches' share shrunk toward the base rate (prior 20)
    want = (h1.n_eff * h1.matches_p_up + 20 * h1.base_rate) / (h1.n_eff + 20)
    assert h1.p_up_raw == pytest.approx(want)


def test_a_random_walk_says_in_words_that_there_is_no_skill(walk: Path) -> None:
    r = calibrated_similar(walk, "BBB", **FAST)
    for h in r.calibration.horizons:
        s = h.val_skill
        assert s is not None and not h.skill_shown and not s["lo"] > 0, h
        assert "has shown no skill for this horizon on val" in h.words
        assert f"the base rate, {h.base_rate:.1%}, is the better guide" in h.words


def test_the_map_is_cached_then_reused(walk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kw = {**FAST, "top": 7, "mode": "nearest", "last": 2}  # settings no other test uses
    first = calibrated_similar(walk, "AAA", **kw).calibration
    path = Path(first.cache)
    assert not first.from_cache and path.parent == index_dir(walk) and path.is_file()
    mtime = path.stat().st_mtime_ns
    calls: list[int] = []
    real = simcal.fit_val_maps
    monkeypatch.setattr(simcal, "fit_val_maps", lambda *a, **k: calls.append(1) or real(*a, **k))
    second = calibrated_similar(walk, "CCC", **kw).calibration  # another query, same settings
    assert second.from_cache and calls == [] and path.stat().st_mtime_ns == mtime
    a, b = first.horizons[0], second.horizons[0]
    assert (a.val_skill, a.calibration, a.base_rate) == (b.val_skill, b.calibration, b.base_rate)
    other = calibrated_similar(walk, "AAA", **{**kw, "top": 8}).calibration  # new settings
    assert not other.from_cache and other.cache != first.cache and calls == [1]
    calibrated_similar(walk, "AAA", **kw, refit=True)
    assert calls == [1, 1]
    assert calibrated_similar(walk, "AAA", **kw, calibrate=False).calibration is None


def test_a_query_before_val_gets_no_map(walk: Path) -> None:
    cal = calibrated_similar(walk, "AAA", **{**FAST, "val_origins": 5}, at="2001-03-01").calibration
    assert cal.cut == "none" and cal.cache is None and "before the val years" in cal.notes[0]
    assert all(h.p_up_calibrated is None and h.p_up_raw is None for h in cal.horizons)


def test_cli_prints_and_json_carries_the_calibration(walk: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    args = ("similar", "AAA", "--dataset", str(walk), "--last", "1", "--horizon", "1,2",
            "--val-origins", "60")
    code, out, err = run_cli(args, walk.parent, capsys, monkeypatch)
    assert code == 0, err
    flat = " ".join(out.split())
    for words in ("calibrated P(close up after h bars)", "val skill vs base [95%]",
                  "base rate (train)", "has shown no skill", "seeded val origins"):
        assert words in flat, words
    code, text, err = run_cli((*args, "--json"), walk.parent, capsys, monkeypatch)
    assert code == 0, err
    cal = json.loads(text)["calibration"]
    assert cal["val_origins_asked"] > 0 and cal["from_cache"]  # the table run cached it
    for h in cal["horizons"]:
        for k in ("matches_p_up", "p_up_raw", "p_up_calibrated", "base_rate"):
            assert 0.0 <= h[k] <= 1.0, (k, h[k])
        s = h["val_skill"]
        assert s["lo"] <= s["value"] <= s["hi"] and isinstance(h["skill_shown"], bool)
    code, text, err = run_cli((*args, "--json", "--no-calibrate"), walk.parent, capsys,
                              monkeypatch)
    assert code == 0 and json.loads(text)["calibration"] is None
    code, _, err = run_cli((*args[:-1], "0"), walk.parent, capsys, monkeypatch)
    assert code != 0 and "--val-origins" in err and "Traceback" not in err


def _after_t_changed(bars: pl.DataFrame, T: datetime, seed: int) -> pl.DataFrame:
    """The same bars up to T; after T, other bars (another random walk) at the same times."""
    other = planted_bars(900, SYMS, seed=seed, flip=0.5)
    late = (bars["ts"] > T).to_numpy()
    return bars.with_columns([pl.Series(c, [o if l else b for b, o, l in
                                            zip(bars[c], other[c], late, strict=True)])
                              for c in ("open", "high", "low", "close")])


@settings(max_examples=4, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(day=st.sampled_from([600, 700, 780, 850]), seed=st.integers(3, 1000))
def test_bars_after_t_change_no_calibrated_number(walk: Path, walk_bars: pl.DataFrame,
                                                   day: int, seed: int) -> None:
    """T inside val (the map is fit on val origins cut at T) or in test: changing every bar
    after T in every symbol, re-encoded with the same vocabulary, changes nothing."""
    T = walk_bars["ts"].sort().unique()[day]
    assert datetime.fromisoformat(VAL_FROM).replace(tzinfo=timezone.utc) < T
    kw = {**FAST, "val_origins": 30, "at": T}
    want = calibrated_similar(walk, "AAA", **kw)
    with tempfile.TemporaryDirectory() as tmp:
        alt = build(_after_t_changed(walk_bars, T, seed), Path(tmp) / "alt",
                    vocab=walk / "vocab.json")
        got = calibrated_similar(alt, "AAA", **kw)
    a, b = want.calibration, got.calibration
    assert a.cut == b.cut and a.val_origins_asked == b.val_origins_asked > 0
    assert a.val_origins_available == b.val_origins_available
    for x, y in zip(a.horizons, b.horizons, strict=True):
        dx, dy = x.__dict__, y.__dict__
        for k, v in dx.items():
            if isinstance(v, float):
                assert (math.isnan(v) and math.isnan(dy[k])) or v == pytest.approx(dy[k]), k
            else:
                assert v == dy[k], k
