"""The ``similar`` chart: the query, its best matches with what followed, and the
distribution of forward returns against the base rate.

Chart conventions of the project (``candletok.viz``): dates on the x axis with trading
days drawn without gaps (x is the bar number, ticks on the first bar of a natural period),
the symbol on the price axis; the candle drawing and the date ticks are viz's own.
Candles are the stored bars (format 2 datasets keep each candle's own open, high, low
and close), never candles rebuilt from tokens, with their volume under them when the data
has it. Every date on the chart (ticks and titles) is written in one format, the result's
``time_format``. A match is drawn in the units its distance is measured in: volatility
units (ln(price / its last close) over its last candle's causal scale), with the query's
closes in its own volatility units over it, so a match from a calm year and one from a
wild year compare as the search compared them. Distances print with the significant
digits they need (``core.display.significant``). The figure is made without pyplot (no
global backend, no display).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from candletok.core.atomic import atomic_path
from candletok.core.display import format_price, significant
from candletok.search.query import candles
from candletok.search.stats import base_sample
from candletok.search.timerule import series_limits
from candletok.viz.candles import date_ticks, draw_candles, draw_volume

if TYPE_CHECKING:
    from candletok.search.result import SimilarResult

def _ticks(ax: Any, ts: pl.Series, most: int, fmt: str, must: int | None = None) -> None:
    """Date labels on the bar-index axis by the shared convention (the first bar of a
    natural period), plus the bar ``must`` (a match's last candle) when given; every label
    in ``fmt``, the format the chart's titles write bar times in (one date format per
    chart: with the time for intraday bars)."""
    times = ts.dt.replace_time_zone(None).cast(pl.Datetime("us")).to_numpy()
    pos, labels = date_ticks(times, max_ticks=most, fmt=fmt)
    ticks = list(zip(pos.tolist(), labels, strict=True))
    if must is not None and 0 <= must < times.size:
        # first, so it wins over a period label on the same bar
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


def _volume(df: pl.DataFrame) -> np.ndarray:
    if "volume" not in df.columns:
        return np.full(df.height, np.nan)
    return df["volume"].cast(pl.Float64).fill_null(float("nan")).to_numpy()


def _has_volume(v: np.ndarray) -> bool:
    return bool(v.size and np.isfinite(v).any() and np.nanmax(v) > 0)


def grid_shape(n: int, most_cols: int = 5) -> tuple[int, int]:
    """(columns, rows) of the match panels: the column count from 3 to ``most_cols`` (as
    many as there are matches when fewer) that leaves the fewest unfilled places in the
    last row (the wider on a tie), so 20 matches fill 5 x 4 and 8 fill 4 x 2; a last row
    that is not full is centred, never padded with empty panels."""
    if n <= 0:
        return 1, 1
    best = min(range(min(n, most_cols), min(n, 3) - 1, -1), key=lambda c: (-n) % c)
    return best, math.ceil(n / best)


def _volume_axis(vax: Any, x: np.ndarray, df: pl.DataFrame, label: bool) -> None:
    o, _, _, c = _ohlc(df)
    draw_volume(vax, x, _volume(df), c >= o, width=0.7)
    vax.tick_params(axis="y", labelsize=6)
    if label:
        vax.set_ylabel("volume", fontsize=7)


def _query_panel(ax: Any, vax: Any | None, res: SimilarResult) -> None:
    ctx = res.context if res.context is not None else res.query
    n_q = res.summary["window"]
    x = np.arange(ctx.height, dtype=np.float64)
    draw_candles(ax, x, *_ohlc(ctx))
    ax.axvspan(ctx.height - n_q - 0.5, ctx.height - 0.5, color="#ffd54f", alpha=0.25,
               label=f"query: last {n_q} candle{'s' if n_q > 1 else ''}")
    ax.autoscale_view()
    ax.set_xlim(-1, ctx.height)
    bottom = ax
    if vax is not None:
        _volume_axis(vax, x, ctx, label=True)
        vax.axvspan(ctx.height - n_q - 0.5, ctx.height - 0.5, color="#ffd54f", alpha=0.25)
        ax.tick_params(labelbottom=False)
        bottom = vax
    _ticks(bottom, ctx["ts"], most=8, fmt=res.time_format)
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


def _vol_units(prices: np.ndarray, last: float, scale: float) -> np.ndarray:
    """ln(price / last close) in volatility units (the causal scale of the last candle):
    the units the features, and so the distances, are measured in."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(np.asarray(prices, np.float64) / last) / scale


def _query_scale(res: SimilarResult) -> float:
    q = res.query
    return float(q["scale"][-1]) if "scale" in q.columns else float("nan")


def match_title(res: SimilarResult, rank: int) -> str:
    """A match panel's title: its rank, symbol and last bar, and its distance to the
    query with the significant digits it needs (modes whose matches all have the query's
    tokens have no distance to show)."""
    m = res.matches.row(rank - 1, named=True)
    dist = m["distance"]
    shown = math.isfinite(dist) and not _same_tokens(res)
    return (f"#{rank} {m['symbol']} to {res.when(m['end'])}"
            + (f"  d={significant(dist)}" if shown else ""))


def _match_panel(ax: Any, vax: Any | None, res: SimilarResult, e: int, rank: int,
                 limits: np.ndarray, ylabel: bool = True) -> None:
    """One match: its window and forward bars (cut at T) in volatility units from its last
    close (the unit its distance is measured in), the query's closes in its own units
    over it, and the bars' volume under it when ``vax`` is given."""
    idx, rule = res._idx, res._rule
    assert idx is not None and rule is not None
    n, H = rule.window, max(rule.horizons)
    sid = int(idx.sid[e])
    a = max(int(idx.starts[sid]), e - n + 1 - 2)  # two bars of lead-in
    b = min(int(limits[sid]), e + H + 1)
    df = candles(idx, a, b)
    last, unit = float(idx.close[e]), float(idx.scale[e])
    o, h, lo, c = (_vol_units(v, last, unit) for v in _ohlc(df))
    x = np.arange(df.height, dtype=np.float64)
    end = e - a
    draw_candles(ax, x, o, h, lo, c, width=0.7)
    ax.axvspan(end - n + 0.5, end + 0.5, color="#ffd54f", alpha=0.25)
    if b - 1 > e:
        ax.axvspan(end + 0.5, x[-1] + 0.5, color="#90caf9", alpha=0.18)
    q = res.query.tail(n)["close"].to_numpy()
    ax.plot(np.arange(end - q.size + 1, end + 1), _vol_units(q, q[-1], _query_scale(res)),
            color="#424242", lw=1.0, ls="--", label="query closes (its own vol units)")
    ax.axhline(0.0, color="grey", lw=0.6, ls=":")
    ax.autoscale_view()
    ax.set_xlim(-1, max(df.height, end + H + 1))
    bottom = ax
    if vax is not None:
        _volume_axis(vax, x, df, label=False)
        ax.tick_params(labelbottom=False)
        bottom = vax
    _ticks(bottom, df["ts"], most=2, fmt=res.time_format, must=end)
    ax.set_title(match_title(res, rank), fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    if ylabel:
        ax.set_ylabel("vol units from its last close", fontsize=7)


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


def plot_similar(res: SimilarResult, out: str | Path, n_matches: int | None = None) -> Path:
    """Write :func:`similar_figure` as a PNG (atomically)."""
    fig = similar_figure(res, n_matches)
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")  # margins set by the grid: one draw
    return out


def similar_figure(res: SimilarResult, n_matches: int | None = None) -> Any:
    """The chart: the query (with its volume) on top, ``n_matches`` match panels (None:
    every listed match) on a grid that fits them, then one forward-return histogram per
    horizon (matches over the base rate), spread over the full width."""
    from matplotlib.figure import Figure

    idx, rule = res._idx, res._rule
    assert idx is not None and rule is not None and res._e is not None
    shown = res._e if n_matches is None else res._e[:max(0, int(n_matches))]
    cols, mrows = grid_shape(shown.size)
    volume = _has_volume(np.asarray(idx.volume))
    hs = list(rule.horizons)[:6]
    height = 4.0 + 2.9 * mrows + 2.8
    fig = Figure(figsize=(max(14.0, 3.0 * cols), height), dpi=100)
    # the two-line title keeps about an inch above the query, whatever the figure's height
    gs = fig.add_gridspec(2 + mrows, 1, height_ratios=[1.6] + [1.0] * mrows + [1.0],
                          hspace=0.55, top=1.0 - 1.0 / height, bottom=0.55 / height,
                          left=0.055, right=0.985)
    ratios = (3.0, 1.0) if volume else (1.0,)

    def cell(spec: Any) -> tuple[Any, Any | None]:
        sub = spec.subgridspec(len(ratios), 1, height_ratios=ratios, hspace=0.06)
        ax = fig.add_subplot(sub[0])
        return ax, (fig.add_subplot(sub[1], sharex=ax) if volume else None)

    _query_panel(*cell(gs[0]), res)
    limits = series_limits(idx, rule.T)
    for r in range(mrows):
        k = min(cols, shown.size - r * cols)  # panels in this row; a short last row is centred
        row = gs[1 + r].subgridspec(1, 2 * cols, wspace=0.6)
        for j in range(k):
            i = r * cols + j
            lead = cols - k + 2 * j
            ax, vax = cell(row[0, lead:lead + 2])
            _match_panel(ax, vax, res, int(shown[i]), i + 1, limits, ylabel=j == 0)
            if i == 0:
                ax.legend(fontsize=6, loc="lower left")
    if shown.size == 0:
        ax = fig.add_subplot(gs[1])
        ax.text(0.5, 0.5, "no match before T", ha="center", va="center")
        ax.set_axis_off()
    hist = gs[1 + mrows].subgridspec(1, max(1, len(hs)), wspace=0.25)
    for j, h in enumerate(hs):
        _returns_panel(fig.add_subplot(hist[0, j]), res, h)
    s = res.summary
    asked = f" (asked {s['last']}, backed off)" if s["backed_off"] else ""
    drawn = (f"all {shown.size} listed" if shown.size == res._e.size
             else f"{shown.size} of the {res._e.size} listed")
    dist = ("" if _same_tokens(res) else "; d: the window's summed squared feature distance "
            "to the query")
    fig.suptitle(
        f"What followed {s['symbol']}'s last {s['window']} candle"
        f"{'s' if s['window'] > 1 else ''}{asked}: {s['matches']} matches before "
        f"{res.when(s['T'])} "
        f"(effective n {s['n_eff']:.1f}), {drawn} drawn\nthe stored bars; matches in "
        f"volatility units (the causal scale of their last candle){dist}", fontsize=11,
        y=1.0 - 0.15 / height, va="top")
    return fig
