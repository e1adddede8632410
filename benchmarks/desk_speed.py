"""The trader's desk, timed: stop and target odds and future bar times.

    python -m benchmarks.desk_speed             # small sizes (shared CPUs: indicative)

* **Odds.** The random walk's closed form (:func:`candletok.evaluation.odds.random_walk_odds`,
  K barrier pairs at once) against the Monte Carlo it replaces (fine-step Gaussian paths
  counted by :func:`~candletok.evaluation.odds.path_odds`), with the Monte Carlo's error
  beside it; and ``path_odds`` on CandleGPT-sized path sets (S paths x h bars x K).
* **Future times.** :func:`candletok.tokenize.exchange.future_times` with an exchange
  calendar against the weekly grid alone (:func:`~candletok.tokenize.calendar.next_times`),
  for daily and hourly bars; the first call builds the calendar (``exchange_calendars``),
  later ones reuse it.
"""

from __future__ import annotations

import argparse
import time
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl

from benchmarks._util import best_of, machine
from candletok.evaluation.odds import RANGE_PER_SIGMA, path_odds, random_walk_odds
from candletok.tokenize.calendar import CalendarSpec, next_times
from candletok.tokenize.exchange import future_times


def _ohlc(S: int, n: int, m: int, sigma: float, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.concatenate([np.zeros((S, 1)),
                        np.cumsum(sigma / np.sqrt(m) * rng.standard_normal((S, n * m)), 1)], 1)
    inner = x[:, 1:].reshape(S, n, m)
    op = x[:, :-1:m][:, :n]
    return {"open": np.exp(op), "close": np.exp(x[:, m::m]),
            "high": np.exp(np.maximum(inner.max(-1), op)),
            "low": np.exp(np.minimum(inner.min(-1), op))}


def odds_section(S: int, h: int) -> dict[str, float]:
    k = np.array([0.5, 1.0, 2.0, 3.0])
    sigma = 0.01
    scale = sigma * RANGE_PER_SIGMA
    t_cf = best_of(lambda: random_walk_odds(k * scale, k * scale, sigma, h), 5)
    exact = random_walk_odds(k * scale, k * scale, sigma, h)
    t0 = time.perf_counter()
    paths = _ohlc(S, h, 32, sigma, 0)
    mc = path_odds(paths, 1.0, k * scale, k * scale)
    t_mc = time.perf_counter() - t0
    err = float(np.abs(mc.p_up - exact.p_up).max())
    t_po = best_of(lambda: path_odds(paths, 1.0, k * scale, k * scale), 3)
    print(f"odds, K={k.size} k's, h={h}:")
    print(f"  closed form            {1e3 * t_cf:9.3f} ms   exact")
    print(f"  Monte Carlo, {S} paths x 32 steps/bar {1e3 * t_mc:9.1f} ms   max |error| "
          f"{err:.4f} (bias of discrete highs/lows + noise)")
    print(f"  path_odds alone on {S} paths    {1e3 * t_po:9.2f} ms")
    return {"closed_form_s": t_cf, "monte_carlo_s": t_mc, "path_odds_s": t_po,
            "mc_error": err}


def times_section(n: int) -> dict[str, float]:
    d = pl.date_range(date(2012, 1, 2), date(2013, 3, 28), "1d", eager=True)
    daily = d.filter(d.dt.weekday() < 6).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    hrs = pl.concat([daily.dt.replace_time_zone(None) + timedelta(hours=9, minutes=30 + 60 * i)
                     for i in range(7)]).sort()
    hourly = hrs.dt.replace_time_zone("America/New_York").dt.convert_time_zone("UTC")
    out = {}
    print(f"future times, {n} bars:")
    for name, ts, spec in (("daily", daily, CalendarSpec("UTC")),
                           ("hourly", hourly, CalendarSpec())):
        t0 = time.perf_counter()
        future_times(ts, n, spec, "XNYS")
        first = time.perf_counter() - t0
        t_ex = best_of(lambda ts=ts, spec=spec: future_times(ts, n, spec, "XNYS"))
        t_grid = best_of(lambda ts=ts, spec=spec: next_times(ts, n, spec))
        print(f"  {name:6s} XNYS sessions {1e3 * t_ex:8.2f} ms (first call, building the "
              f"calendar: {1e3 * first:7.1f} ms)   weekly grid {1e3 * t_grid:8.2f} ms")
        out[f"{name}_exchange_s"], out[f"{name}_grid_s"] = t_ex, t_grid
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--paths", type=int, default=5000)
    ap.add_argument("--horizon", type=int, default=10)
    ap.add_argument("--bars", type=int, default=100)
    a = ap.parse_args(argv)
    print(machine(), "(shared CPUs: timings are indicative)")
    return {**odds_section(a.paths, a.horizon), **times_section(a.bars)}


if __name__ == "__main__":
    main()
