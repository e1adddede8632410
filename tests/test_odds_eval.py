"""Stop and target odds scored by ``evaluate``: the realized outcomes on hand-built bars
(the conservative touch rule), the random-walk forecaster against its closed form and
against simulated Brownian bars, causality, the harness on a tiny sample run (odds Brier
skill, calibration saved and applied by ``predict --odds``, the exchange calendar), the
80-column tables in a pseudo-terminal, and the progress lines."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from _helpers import ROOT, run_main, trained_on_sample
from hypothesis import given, settings
from hypothesis import strategies as st

from candletok.core import progress as prog
from candletok.evaluation.odds import (
    RANGE_PER_SIGMA,
    forward_outcomes,
    random_walk_odds,
    sigma_from_scale,
    touch_weights,
)
from candletok.evaluation.oddsscore import path_event_odds, walk_odds


def _hist(close: list[float], high: list[float], low: list[float], scale: float = 0.01,
          series: list[int] | None = None) -> SimpleNamespace:
    """A history-shaped namespace: what forward_outcomes and walk_odds read."""
    c = np.asarray(close, dtype=np.float64)
    s = np.zeros(c.size, np.int64) if series is None else np.asarray(series)
    ends = np.array([np.flatnonzero(s == k).max() + 1 for k in np.unique(s)])
    prev = np.r_[c[0], c[:-1]]
    return SimpleNamespace(close=c, prev_close=prev, high=np.asarray(high, np.float64),
                           low=np.asarray(low, np.float64), next_scale=np.full(c.size, scale),
                           series=s, ends=ends)


def test_realized_outcomes_on_hand_built_bars() -> None:
    """Entry at row 0's close 100, scale 1%, k=1: target 101.005, stop 99.005."""
    # bar 1 inside, bar 2 reaches the target -> target first
    h = _hist([100, 100.2, 100.8, 100.5], [100, 100.5, 101.2, 100.9], [100, 99.8, 100.1, 99.0])
    up, down = forward_outcomes(h, np.array([0]), [1.0], 3)
    assert (up[0, 0], down[0, 0]) == (1.0, 0.0)  # bar 3's low below the stop comes later
    # the stop in bar 1
    h = _hist([100, 99.5, 101.5], [100, 100.1, 102.0], [100, 98.9, 99.4])
    up, down = forward_outcomes(h, np.array([0]), [1.0], 2)
    assert (up[0, 0], down[0, 0]) == (0.0, 1.0)
    # one bar touches both: the bars cannot say which came first -> the stop (conservative)
    h = _hist([100, 101.5], [100, 101.6], [100, 98.8])
    up, down = forward_outcomes(h, np.array([0]), [1.0], 1)
    assert (up[0, 0], down[0, 0]) == (0.0, 1.0)
    # the other rules split it as documented: an up bar reads low first
    w_up, _, amb = touch_weights(np.array([100.0]), np.array([101.6]), np.array([98.8]),
                                 np.array([101.5]), np.array(101.005), np.array(99.005), "path")
    assert bool(amb) and float(w_up) == 0.0
    # a bar opening beyond the target took it first whatever the rule
    w_up, w_dn, amb = touch_weights(np.array([101.2]), np.array([101.6]), np.array([98.8]),
                                    np.array([99.0]), np.array(101.005), np.array(99.005),
                                    "stop")
    assert (float(w_up), float(w_dn), bool(amb)) == (1.0, 0.0, False)
    # neither within the horizon; k scales the barriers; a wider k is never touched sooner
    h = _hist([100, 100.3, 99.7], [100, 100.6, 100.4], [100, 99.9, 99.5])
    up, down = forward_outcomes(h, np.array([0]), [1.0, 0.5], 2)
    assert (up[0, 0], down[0, 0]) == (0.0, 0.0) and up[1, 0] == 1.0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-0.02, 0.02), min_size=12, max_size=12),
       st.integers(0, 5), st.integers(1, 5), st.floats(0.2, 3.0), st.floats(0.5, 2.0))
def test_outcomes_are_causal_and_one_event_at_most(moves: list[float], r: int, h: int,
                                                   k: float, bump: float) -> None:
    """Changing a bar after origin + h never changes the origin's outcome; each outcome is
    0 or 1 and never both."""
    c = 100 * np.exp(np.cumsum(moves))
    hi, lo = c * 1.004, c / 1.004
    base = forward_outcomes(_hist(list(c), list(hi), list(lo)), np.array([r]), [k], h)
    j = r + h + 1
    if j < c.size:
        c2, hi2, lo2 = c.copy(), hi.copy(), lo.copy()
        c2[j:] *= bump
        hi2[j:] = c2[j:] * 1.05
        lo2[j:] = c2[j:] / 1.05
        moved = forward_outcomes(_hist(list(c2), list(hi2), list(lo2)), np.array([r]), [k], h)
        assert np.array_equal(base[0], moved[0]) and np.array_equal(base[1], moved[1])
    u, d = float(base[0][0, 0]), float(base[1][0, 0])
    assert u in (0.0, 1.0) and d in (0.0, 1.0) and u + d <= 1.0


def test_random_walk_forecaster_is_the_closed_form_and_matches_brownian_bars() -> None:
    """walk_odds is the closed form with sigma from each origin's scale; on bars simulated
    from a driftless Brownian motion (32 steps a bar, highs and lows from the steps), the
    realized share of 'either barrier first' matches it within the sampling error."""
    rng = np.random.default_rng(3)
    sigma, m, h, n_orig = 0.01, 32, 5, 3000
    steps = rng.standard_normal((n_orig, h * m)) * sigma / np.sqrt(m)
    path = 100 * np.exp(np.cumsum(steps, axis=1)).reshape(n_orig, h, m)
    close = path[:, :, -1]
    prev = np.concatenate([np.full((n_orig, 1), 100.0), close[:, :-1]], axis=1)
    high = np.maximum(path.max(-1), prev)
    low = np.minimum(path.min(-1), prev)
    # one series per origin: the origin's bar (close 100), then h simulated bars
    c = np.concatenate([np.full((n_orig, 1), 100.0), close], axis=1).ravel()
    hh = np.concatenate([np.full((n_orig, 1), 100.0), high], axis=1).ravel()
    ll = np.concatenate([np.full((n_orig, 1), 100.0), low], axis=1).ravel()
    series = np.repeat(np.arange(n_orig), h + 1)
    hist = _hist(list(c), list(hh), list(ll), scale=sigma * RANGE_PER_SIGMA,
                 series=list(series))
    rows = np.arange(n_orig) * (h + 1)
    ks = [1.0, 2.0]
    p = walk_odds(hist, rows, ks, h)  # type: ignore[arg-type]
    for i, k in enumerate(ks):
        u = k * hist.next_scale[rows]
        cf = random_walk_odds(u, u, sigma_from_scale(hist.next_scale[rows]), h)
        assert np.allclose(p[i], cf.p_up) and np.allclose(cf.p_up, cf.p_down)
    up, down = forward_outcomes(hist, rows, ks, h)
    for i in range(len(ks)):
        want = 2 * p[i].mean()  # P(either first) = 1 - P(neither)
        got = float((up[i] + down[i]).mean())
        se = np.sqrt(want * (1 - want) / n_orig)
        # 32 steps a bar miss a few touches between steps: a small one-sided shortfall
        assert want - 5 * se - 0.03 < got < want + 4 * se, (i, got, want, se)
        assert abs(up[i].mean() - down[i].mean()) < 5 * se + 0.02  # driftless: symmetric


def test_path_event_odds_count_touches_like_the_outcomes() -> None:
    """The model's odds on its sampled paths read the same rule as the outcomes: paths
    identical to the real bars give the real outcome as their probability."""
    h = _hist([100, 100.2, 100.8, 100.5], [100, 100.5, 101.2, 100.9], [100, 99.8, 100.1, 99.0])
    fwd = np.array([1, 2, 3])
    logs = np.log(np.stack([h.prev_close[fwd], h.high[fwd], h.low[fwd], h.close[fwd]]) / 100)
    logs = np.repeat(logs[None, :, None, :], 3, axis=2)  # (1 origin, 4, 3 paths, 3 bars)
    pu, pd = path_event_odds(logs, np.array([0.01]), [1.0], 3)
    up, down = forward_outcomes(h, np.array([0]), [1.0], 3)
    assert (pu[0, 0], pd[0, 0]) == (up[0, 0], down[0, 0]) == (1.0, 0.0)


def test_progress_prints_plain_lines_in_a_pipe_and_nothing_unless_enabled(monkeypatch) -> None:
    buf = io.StringIO()
    monkeypatch.setenv("CANDLETOK_PROGRESS_AFTER", "0")
    monkeypatch.delenv("CANDLETOK_PROGRESS", raising=False)
    monkeypatch.setitem(prog._STATE, "enabled", False)
    with prog.Progress("quiet", 10, stream=buf) as bar:
        bar.advance(10)
    assert buf.getvalue() == ""
    prog.enable(True)
    try:
        with prog.Progress("work", 20, stream=buf) as bar:
            for _ in range(20):
                bar.advance(label="step")
        lines = buf.getvalue().splitlines()
        assert len(lines) == 10 and lines[-1].startswith("candletok: work: 20/20 (100%")
        monkeypatch.setenv("CANDLETOK_PROGRESS", "0")  # the environment wins
        with prog.Progress("off", 5, stream=buf) as bar:
            bar.advance(5)
        assert "off" not in buf.getvalue()
    finally:
        prog.enable(False)


# ---- the harness on a tiny sample run --------------------------------------------------
@pytest.fixture(scope="module")
def sample_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("odds_eval")
    ds, model = trained_on_sample(root)
    return root, ds, model


def test_evaluate_scores_the_odds_and_predict_applies_their_maps(
        sample_run: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from candletok.evaluation import gptcast
    from candletok.evaluation.calibrate import load_calibration

    root, ds, model = sample_run
    seen: list[str | None] = []
    real = gptcast.future_times

    def spy(ts, n, spec=None, exchange=None):  # type: ignore[no-untyped-def]
        seen.append(exchange)
        return real(ts, n, spec, exchange)

    monkeypatch.setattr(gptcast, "future_times", spy)
    # in a pipe: every column, the odds rows of both forecasters, the maps saved
    code, out, err = run_main(("evaluate", str(ds), "--model", str(model), "--horizon", "1,3",
                               "--samples", "4", "--subsample", "12", "--analogues", "none",
                               "--calendar-exchange", "XLON"), root, capsys, monkeypatch)
    assert code == 0, err
    assert seen and set(seen) == {"XLON"}  # every sampled bar's time from that calendar
    assert "raw skill" in out and "mean P / seen" in out and "…" not in out
    table = out[out.index("stop/target odds"):]
    for f in ("random walk", "CandleGPT"):
        for e in ("target", "stop"):
            assert any(f in line and f" {e} " in line for line in table.splitlines())
    assert "reliability of CandleGPT's target odds, k=1, h=3" in out
    assert "stop/target odds" in out.split("bits per candle")[1]  # the notes say it
    cal = load_calibration(model)
    assert cal is not None
    entry = cal["forecasters"]["CandleGPT"]["odds_target_k1"]["3"]
    assert entry["reference"] == "random walk" and entry["rule"] == "stop"
    assert entry["n"] == 12 and 0 <= entry["base_rate"] <= 1
    assert {"value", "lo", "hi"} <= set(entry["val_skill"])
    # the CLI: the odds table in full width in a pipe, the maps applied by predict --odds
    code, out, err = run_main(("predict", "AAPL", "--model", str(model), "--source", "sample",
                               "--odds", "1,5", "--horizon", "3", "--samples", "32", "--json"),
                              root, capsys, monkeypatch)
    assert code == 0, err
    doc = json.loads(out)
    rows = doc["predictions"][0]["odds"]
    assert rows[0]["calibrated"]["target"]["calibration"] in ("identity", "shrink", "platt",
                                                              "isotonic")
    assert rows[1]["calibrated"] == {} or rows[1]["calibrated"]["target"] is None
    assert "odds_target_k5" in rows[1]["uncalibrated_reason"]
    assert "maps fit on val" in doc["odds_note"]
    code, _, err = run_main(("evaluate", str(ds), "--calendar-exchange", "NOPE"), root,
                            capsys, monkeypatch)
    assert code != 0 and "Unknown exchange calendar" in err and "Traceback" not in err


def _pty(args: list[str], cwd: Path, columns: int = 80) -> tuple[int, str]:
    """``candletok ARGS`` with stdout and stderr on a pseudo-terminal ``columns`` wide."""
    import pty  # noqa: F401  (POSIX only: the test is skipped where it is missing)

    master, slave = os.openpty()
    env = {"PATH": "/usr/bin:/bin", "CANDLETOK_OFFLINE": "1", "COLUMNS": str(columns),
           "LINES": "40", "TERM": "xterm", "PYTHONPATH": str(ROOT), "HOME": str(cwd),
           "OMP_NUM_THREADS": "1", "CANDLETOK_CACHE": str(cwd / "cache")}
    p = subprocess.Popen([sys.executable, "-m", "candletok.cli.main", *args], cwd=cwd,
                         stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            b = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not b:
            break
        chunks.append(b)
    os.close(master)
    return p.wait(timeout=300), b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a POSIX pseudo-terminal")
def test_evaluate_fits_80_columns_in_a_terminal(sample_run: tuple[Path, Path, Path]) -> None:
    root, ds, model = sample_run
    args = ["evaluate", str(ds), "--model", str(model), "--horizon", "1", "--samples", "4",
            "--subsample", "8", "--analogues", "none", "--odds", "1"]
    code, out = _pty(args, root)
    assert code == 0, out
    assert "stop/target odds" in out and "CandleGPT" in out
    assert "…" not in out  # no cell cut, no header cut
    assert "raw skill" not in out and "mean P" not in out  # the narrow tables
    assert "evaluate" in out and "━" in out  # the progress bar was drawn on the terminal
