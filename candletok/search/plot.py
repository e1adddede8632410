"""The ``similar`` chart: the query, its best matches with what followed, and the
distribution of forward returns against the base rate.

Chart conventions of the project (``candletok.viz``): dates on the x axis with trading
days drawn without gaps (x is the bar number, ticks on the first bar of a natural period),
the symbol on the price axis; the candle drawing and the date ticks are viz's own.
Candles are the stored bars (format 2 datasets keep each candle's own open, high, low
and close), never candles rebuilt from tokens. The figure is made without pyplot (no global
backend, no display).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from candletok.core.atomic import atomic_path
from candletok.core.display import format_price
from candletok.search.query import candles
from candletok.search.stats import base_sample
from candletok.search.timerule import series_limits
from candletok.viz.candles import date_ticks, draw_candles

if TYPE_CHECKING:
    from candletok.search.result import SimilarResult

def _ticks(ax: Any, ts: pl.Series, most: int, must: int | None = None,
           fmt: str = "%Y-%m-%d") -> None:
    """Date labels on the bar-index axis by the shared convention (the first bar of a
    natural period), plus the bar ``must`` (a match's last candle, written in ``fmt``:
    with its time for intraday bars) when given."""
    times = ts.dt.replace_time_zone(None).cast(pl.Datetime("us")).to_numpy()
    pos, labels = date_ticks(times, max_ticks=most)
    ticks = list(zip(pos.tolist(), labels, strict=True))
    if must is not None and 0 <= must < times.size:
        # first, so it wins over a period label on the same bar (its own time, intraday)
        ticks.insert(0, (must, times[must].astype("datetime64[us]").item().strftime(fmt)))
    gap = max(1, times.size // (2 * most + 1))
    kept: list[tuple[int, str]] = []
    for p, lab in sorted(ticks, key=lambda t: (t[0] != must, t[0])):  # `must` first
        if all(abs(p - q) > gap for q, _ in kept):
            kept.append((p, lab))
    kept.sort()
    ax.set_xticks([p for p, _ in kept], [lab for _, lab in kept], rotation=30, ha="right",
                  fontsize=7)


def _ohlc(df: pl.DataFrame) -> tuple[np.ndarray, ...]:
    return tuple(df[c].to_numpy().astype(np.float64) for c in ("open", "high", "low", "close"))


def _query_panel(ax: Any, res: SimilarResult) -> None:
    ctx = res.context if res.context is not None else res.query
    n_q = res.summary["window"]
    x = np.arange(ctx.height, dtype=np.float64)
    draw_candles(ax, x, *_ohlc(ctx))
    ax.axvspan(ctx.height - n_q - 0.5, ctx.height - 0.5, color="#ffd54f", alpha=0.25,
               label=f"query: last {n_q} candle{'s' if n_q > 1 else ''}")
    ax.autoscale_view()
    ax.set_xlim(-1, ctx.height)
    _ticks(ax, ctx["ts"], most=8)
    s = res.summary
    ax.set_ylabel(f"{s['symbol']} price")
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")  # prices, not offsets
    last = format_price(float(ctx["close"][-1]), s.get("price_decimals", 2))
    ax.set_title(f"{s['symbol']} to {res.when(s['T'])} (T): the query, {s['mode']} mode; "
                 f"last close {last}", loc="left", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)


def _same_tokens(res: SimilarResult) -> bool:
    """Whether every match has the query's tokens (its mode's flag), so one distance."""
    from candletok.search.modes import MODES

    mode = res.summary["mode"]
    return bool(res.summary.get("same_tokens", mode in MODES and MODES.get(mode).same_tokens))


def _match_panel(ax: Any, res: SimilarResult, e: int, rank: int, limits: np.ndarray) -> None:
    """One match: its window and forward bars (cut at T), as % from its last close."""
    idx, rule = res._idx, res._rule
    assert idx is not None and rule is not None
    n, H = rule.window, max(rule.horizons)
    sid = int(idx.sid[e])
    a = max(int(idx.starts[sid]), e - n + 1 - 2)  # two bars of lead-in
    b = min(int(limits[sid]), e + H + 1)
    df = candles(idx, a, b)
    last = float(idx.close[e])
    o, h, lo, c = (100.0 * (v / last - 1.0) for v in _ohlc(df))
    x = np.arange(df.height, dtype=np.float64)
    end = e - a
    draw_candles(ax, x, o, h, lo, c, width=0.7)
    ax.axvspan(end - n + 0.5, end + 0.5, color="#ffd54f", alpha=0.25)
    if b - 1 > e:
        ax.axvspan(end + 0.5, x[-1] + 0.5, color="#90caf9", alpha=0.18)
    q = res.query.tail(n)["close"].to_numpy()
    ax.plot(np.arange(end - q.size + 1, end + 1), 100.0 * (q / q[-1] - 1.0), color="#424242",
            lw=1.0, ls="--", label="query closes")
    ax.axhline(0.0, color="grey", lw=0.6, ls=":")
    ax.autoscale_view()
    ax.set_xlim(-1, max(df.height, end + H + 1))
    _ticks(ax, df["ts"], most=2, must=end, fmt=res.time_format)
    m = res.matches.row(rank - 1, named=True)
    dist = m["distance"]
    ax.set_title(f"#{rank} {m['symbol']} to {res.when(m['end'])}"
                 + (f"  d={dist:.2f}" if math.isfinite(dist) and not _same_tokens(res) else ""),
                 fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_ylabel(f"% from {m['symbol']}'s last close", fontsize=7)


def _returns_panel(ax: Any, res: SimilarResult, h: int) -> None:
    """Histogram of the matches' h-bar forward returns over the base rate's (densities)."""

    assert res._idx is not None and res._rule is not None
    m = 100.0 * np.expm1(res.forward[h]["matches"])
    base = 100.0 * np.expm1(base_sample(res._idx, res._rule, h))
    row = res.outcomes.filter(pl.col("horizon") == h).rows_by_key("who", named=True)
    pm, pb = row["matches"][0]["p_up"], row["base"][0]["p_up"]
    lo, hi = np.quantile(base, [0.005, 0.995]) if base.size else (-1.0, 1.0)
    if m.size:
        lo, hi = min(lo, float(m.min())), max(hi, float(m.max()))
    bins = np.linspace(lo, hi, 41)
    if base.size:
        ax.hist(np.clip(base, lo, hi), bins=bins, density=True, histtype="stepfilled",
                color="#b0bec5", alpha=0.7, label=f"base rate: up {pb:.0%}")
    if m.size:
        ax.hist(m, bins=bins, density=True, histtype="step", color="#1565c0", lw=1.6,
                label=f"{m.size} matches: up {pm:.0%}")
    ax.axvline(0.0, color="black", lw=0.7)
    ax.set_title(f"{h}-bar forward return (%)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    ax.tick_params(labelsize=7)


def plot_similar(res: SimilarResult, out: str | Path, n_matches: int = 8) -> Path:
    """Write the chart as PNG: query on top, up to ``n_matches`` match panels, then one
    forward-return histogram per horizon (matches over the base rate)."""
    from matplotlib.figure import Figure

    idx, rule = res._idx, res._rule
    assert idx is not None and rule is not None and res._e is not None
    shown = res._e[:n_matches]
    cols = 4
    mrows = max(1, math.ceil(shown.size / cols))
    hs = list(rule.horizons)[:4]
    fig = Figure(figsize=(14, 3.2 + 2.6 * mrows + 2.8), dpi=100)
    gs = fig.add_gridspec(2 + mrows, max(cols, len(hs)),
                          height_ratios=[1.4] + [1.0] * mrows + [1.0], hspace=0.75, wspace=0.3)
    _query_panel(fig.add_subplot(gs[0, :]), res)
    limits = series_limits(idx, rule.T)
    for i, e in enumerate(shown.tolist()):
        ax = fig.add_subplot(gs[1 + i // cols, i % cols])
        _match_panel(ax, res, int(e), i + 1, limits)
        if i == 0:
            ax.legend(fontsize=6, loc="lower left")
    if shown.size == 0:
        ax = fig.add_subplot(gs[1, :])
        ax.text(0.5, 0.5, "no match before T", ha="center", va="center")
        ax.set_axis_off()
    for j, h in enumerate(hs):
        _returns_panel(fig.add_subplot(gs[1 + mrows, j]), res, h)
    s = res.summary
    asked = f" (asked {s['last']}, backed off)" if s["backed_off"] else ""
    fig.suptitle(
        f"What followed {s['symbol']}'s last {s['window']} candle"
        f"{'s' if s['window'] > 1 else ''}{asked}: {s['matches']} matches before "
        f"{res.when(s['T'])} "
        f"(effective n {s['n_eff']:.1f}); the stored bars", fontsize=11)
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    return out
