"""The evaluation chart: reliability diagrams of P(close up) and the range forecasts.

One PNG. The top row holds one reliability diagram per horizon: each forecaster's
calibrated probabilities, binned, against how often the close was up, with 95% Wilson
intervals on the observed frequencies, the diagonal of perfect calibration and the base
rate. The bottom panel follows the project's chart conventions (:mod:`candletok.viz`):
trading days without gaps on the x axis, ticks at the first bar of each period, and the
symbol on the value axis; it shows the next candle's realized high-low range against each
range forecaster's (calibrated) forecast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from candletok.core.atomic import atomic_path
from candletok.core.display import is_intraday
from candletok.core.stats import wilson
from candletok.viz.candles import date_ticks

COLORS = {"base rate": "#9e9e9e", "EWMA": "#fb8c00", "HistVol20": "#8e24aa",
          "GARCH-t": "#5d4037", "HAR-RV": "#00897b",
          "CandleGPT": "#1565c0", "exact analogues": "#c62828",
          "nearest analogues": "#00838f", "model analogues": "#6d4c41"}
OTHER = ("#2e7d32", "#ad1457", "#f9a825", "#37474f", "#7cb342")
MIN_BIN = 10  # reliability bins with fewer forecasts are left out of the diagram
# Range forecasters often lie on one another (CandleGPT's and the n-gram's range is close
# to a constant times EWMA's): EWMA, the reference the others are scored against, is
# drawn last and dashed with sparse markers, so it stays visible where lines coincide and
# the solid lines under it show through its gaps.
LINE_STYLES: dict[str, dict[str, Any]] = {
    "EWMA": {"ls": (0, (5, 2)), "lw": 1.7, "zorder": 6, "marker": "o", "ms": 2.5},
    "CandleGPT": {"ls": "-", "lw": 1.3, "zorder": 5},
}
OTHER_STYLE: dict[str, Any] = {"ls": "-", "lw": 1.0, "zorder": 4, "alpha": 0.9}


def _color(name: str, names: list[str]) -> str:
    """One color per forecaster in every panel: its own, or the next free one by name."""
    if name in COLORS:
        return COLORS[name]
    others = sorted(n for n in names if n not in COLORS)
    return OTHER[others.index(name) % len(OTHER)] if name in others else OTHER[0]


def _reliability(ax: Any, report: Any, horizon: int, names: list[str]) -> None:
    rows = [r for r in report.direction if r.horizon == horizon]
    base = next((r for r in rows if r.forecaster == "base rate"), None)
    lo, hi = 0.45, 0.55
    for r in rows:
        if r.forecaster == "base rate":
            continue
        t = np.array([(mp, of, n) for _, mp, of, n in r.reliability if n >= MIN_BIN],
                     dtype=np.float64).reshape(-1, 3)
        if t.size == 0:
            continue
        ci = np.array([wilson(of * n, n) for _, of, n in t])
        err = np.abs(ci - t[:, 1:2])
        ax.errorbar(t[:, 0], t[:, 1], yerr=err.T, fmt="o-", ms=4, lw=1, capsize=2,
                    color=_color(r.forecaster, names), label=r.forecaster, alpha=0.85)
        lo, hi = min(lo, t[:, 0].min(), ci[:, 0].min()), max(hi, t[:, 0].max(), ci[:, 1].max())
    pad = 0.03
    lo, hi = max(0.0, lo - pad), min(1.0, hi + pad)
    ax.plot([lo, hi], [lo, hi], color="black", lw=0.8, ls=":", label="perfect calibration")
    if base is not None:
        b = base.reliability[0][1] if base.reliability else 0.5
        ax.axhline(b, color=COLORS["base rate"], lw=0.8, ls="--", label="base rate")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel(f"forecast P(close up in {horizon} bar{'s' if horizon > 1 else ''})")
    ax.set_ylabel("observed frequency (95% Wilson)")
    ax.set_title(f"h = {horizon}: calibrated on val, scored on {report.split}", fontsize=9)


def x_label(ts_us: Any) -> str:
    """The range chart's x-axis label: daily bars say that trading days stand without
    gaps; bars shorter than a day (``core.display.is_intraday``) that closed hours and
    days take no room, and that times are UTC."""
    if is_intraday(None, np.asarray(ts_us).astype(np.int64)):
        return "time (UTC) of the forecast candle (bars without gaps: closed hours take no room)"
    return "date of the forecast candle (trading days, no gaps)"


def _range_chart(ax: Any, report: Any, names: list[str]) -> None:
    d = report.plot_data
    if not d:
        ax.set_axis_off()
        return
    n = d["realized"].size
    x = np.arange(n)
    ax.bar(x, 100 * d["realized"], width=1.0, color="#cfd8dc", label="realized ln(H/L)")
    skill = {r.forecaster: r for r in report.range}
    for name, series in d["forecasts"].items():
        r = skill.get(name)  # the QLIKE alone: skills against four references overflow
        tail = "" if r is None else f" (QLIKE {r.qlike.value:.3f})"
        style = dict(LINE_STYLES.get(name, OTHER_STYLE))
        if "marker" in style:
            style["markevery"] = max(1, n // 30)
        ax.plot(x, 100 * series, color=_color(name, names), label=f"{name}{tail}", **style)
    ticks, labels = date_ticks(np.asarray(d["ts"]).astype("datetime64[us]"))
    ax.set_xticks(ticks)
    ax.set_xticklabels(labels, rotation=0, fontsize=8)
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylabel(f"{d['symbol']}  high-low range (%)")
    ax.set_xlabel(x_label(d["ts"]))
    ax.set_title(f"{d['symbol']}: next candle's range, forecast at the previous close "
                 f"({report.split} split)", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=4,
              frameon=False)


def plot_evaluation(report: Any, out: str | Path) -> Path:
    """Write the evaluation chart of an :class:`~candletok.evaluation.evaluate.EvalReport`."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state

    hs = list(report.horizons)
    fig = Figure(figsize=(4.2 * max(len(hs), 2), 9), dpi=110)
    grid = fig.add_gridspec(2, len(hs), height_ratios=[1.1, 1.0])
    names = sorted({r.forecaster for r in report.direction} | {r.forecaster for r in report.range})
    handles: dict[str, Any] = {}
    for j, h in enumerate(hs):
        ax = fig.add_subplot(grid[0, j])
        _reliability(ax, report, h, names)
        for hd, lb in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lb, hd)
    _range_chart(fig.add_subplot(grid[1, :]), report, names)
    fig.legend(list(handles.values()), list(handles), loc="upper center", ncol=4, fontsize=8,
               frameon=False, title=f"reliability of P(close up) (bins of fewer than {MIN_BIN} "
               "forecasts left out)", title_fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    return out
