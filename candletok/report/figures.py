"""The report's interactive charts, as plotly figures.

Why plotly: its candlestick, bar and scatter traces draw zoom, pan and hover without any
code of ours, a figure is plain JSON, and the whole plotly.js bundle ships inside the
Python package (``plotly.offline.get_plotlyjs``), so the page inlines it once and opens
offline. Bokeh inlines too but has no candlestick trace (bars are drawn by hand) and
lightweight-charts is a JavaScript library whose Python wrappers need a browser or a
server; see docs/report.md.

Conventions of the project's charts (:mod:`candletok.viz`): trading bars without gaps
(the x axis is the bars' own times as categories), a volume panel under the prices, the
symbol on the price axis, the stored bars (never candles rebuilt from tokens), prices to
the instrument's tick (:func:`~candletok.core.display.price_decimals`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from candletok.report.gather import Fan, MatchView, ReportData

UP, DOWN = "#26a69a", "#ef5350"
BAND, MEDIAN, REAL = "rgba(30,136,229,0.22)", "#1565c0", "#212121"
WINDOW = "rgba(255,213,79,0.28)"


def axis_format(d: ReportData) -> str:
    """The price axis' tick format: the instrument's decimals, but no more than two above
    a price of 10 (adjusted prices carry five decimals that a tick label only clutters;
    the hover keeps them all)."""
    big = float(d.bars["low"].min() or 0.0) >= 10.0
    return f",.{min(d.decimals, 2) if big else d.decimals}f"


def _go() -> Any:
    import plotly.graph_objects as go

    return go


def times(ts: pl.Series | np.ndarray, fmt: str) -> list[str]:
    """Bar times as the report writes them (the date, with hours and minutes UTC for
    intraday bars): the category labels of every x axis."""
    s = ts if isinstance(ts, pl.Series) else pl.Series(np.asarray(ts, "datetime64[us]"))
    if s.dtype == pl.Datetime("us", "UTC"):
        s = s.dt.replace_time_zone(None)
    return s.dt.strftime(fmt).to_list()


def hover(bars: pl.DataFrame, decimals: int, fmt: str, head: str = "") -> list[str]:
    """Each bar's hover text: its time, open, high, low, close and volume (the stored
    bar's), formatted column-wise (no loop over bars in Python beyond the join)."""
    t = np.asarray(times(bars["ts"], fmt), dtype=object)
    f = f"%.{decimals}f"
    parts = [np.char.mod(f, bars[c].to_numpy().astype(np.float64)) for c in
             ("open", "high", "low", "close")]
    vol = bars["volume"].to_numpy().astype(np.float64) if "volume" in bars.columns else \
        np.full(bars.height, np.nan)
    v = np.where(np.isfinite(vol), np.char.mod("%.0f", np.nan_to_num(vol)), "-")
    text = (head + t + "<br>O " + parts[0] + "  H " + parts[1] + "<br>L " + parts[2]
            + "  C " + parts[3] + "<br>V " + v.astype(object))
    return [str(x) for x in text]


def price_figure(d: ReportData) -> Any:
    """The query's recent stored bars as candlesticks over their volume; the query's
    window shaded."""
    from plotly.subplots import make_subplots

    go = _go()
    b = d.bars
    x = times(b["ts"], d.time_format)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.75, 0.25],
                        vertical_spacing=0.03)
    fig.add_trace(go.Candlestick(
        x=x, open=b["open"], high=b["high"], low=b["low"], close=b["close"], name=d.symbol,
        hovertext=hover(b, d.decimals, d.time_format), hoverinfo="text",
        increasing_line_color=UP, decreasing_line_color=DOWN), row=1, col=1)
    up = (b["close"] >= b["open"]).to_numpy()
    fig.add_trace(go.Bar(x=x, y=b["volume"].fill_nan(None), name="volume",
                         marker_color=np.where(up, UP, DOWN).tolist(), opacity=0.6,
                         hovertemplate="%{x}<br>V %{y:,.0f}<extra></extra>"), row=2, col=1)
    n = int(d.search.summary["window"])
    if n <= len(x):  # category axes place shapes by the bars' serial numbers
        fig.add_vrect(x0=len(x) - n - 0.5, x1=len(x) - 0.5, fillcolor=WINDOW, line_width=0,
                      row=1, col=1,
                      annotation_text=f"query: last {n}", annotation_position="top right")
    fig.update_layout(title=f"{d.symbol}: the last {b.height} bars to "
                            f"{d.T.strftime(d.time_format)} (T), the stored bars",
                      xaxis_rangeslider_visible=False, showlegend=False, height=520,
                      margin=dict(l=60, r=20, t=50, b=40), dragmode="pan")
    fig.update_xaxes(type="category", nticks=10, range=[-0.5, len(x) - 0.5])
    fig.update_yaxes(title_text=f"{d.symbol} price", tickformat=axis_format(d),
                     row=1, col=1)
    fig.update_yaxes(title_text="volume", row=2, col=1)
    return fig


def _pct(m: MatchView, col: str) -> np.ndarray:
    return 100.0 * (m.bars[col].to_numpy() / m.last_close - 1.0)


def _query_line(d: ReportData) -> tuple[np.ndarray, np.ndarray]:
    n = int(d.search.summary["window"])
    q = d.bars["close"].to_numpy()[-n:]
    return np.arange(1 - q.size, 1), 100.0 * (q / q[-1] - 1.0)


def _title(d: ReportData, m: MatchView) -> str:
    fwd = ", ".join(f"+{h}: {'-' if r is None else f'{100 * np.expm1(r):+.2f}%'}"
                    for h, r in m.forward.items())
    dist = "" if not np.isfinite(m.distance) or d.search.summary["mode"] == "exact" else \
        f" · d={m.distance:.2f}"
    return (f"match #{m.rank} of {len(d.matches)}: {m.symbol} to "
            f"{m.end.strftime(d.time_format)}{dist} · what followed: {fwd}")


def match_browser(d: ReportData) -> Any:
    """Every match in its own context, one at a time with a slider: its stored bars as
    percent from its last close (x: bars from that close), the window shaded, what
    followed after it, the query's closes drawn over it. Hover gives each bar's real time
    and prices. One candlestick trace restyled per step (each step carries its match's
    bars only), so the page grows with the matches, not with their square."""
    go = _go()
    fig = go.Figure()
    if not d.matches:
        fig.update_layout(title="no match before T", height=200)
        return fig
    qx, qy = _query_line(d)
    steps = []
    for m in d.matches:
        steps.append(dict(
            method="update", label=str(m.rank),
            args=[{"x": [m.offset.tolist()], "open": [_pct(m, "open").tolist()],
                   "high": [_pct(m, "high").tolist()], "low": [_pct(m, "low").tolist()],
                   "close": [_pct(m, "close").tolist()],
                   "hovertext": [hover(m.bars, d.decimals, d.time_format,
                                       f"{m.symbol} ")]},
                  {"title.text": _title(d, m)}, [0]]))
    first = steps[0]["args"][0]
    fig.add_trace(go.Candlestick(
        x=first["x"][0], open=first["open"][0], high=first["high"][0], low=first["low"][0],
        close=first["close"][0], hovertext=first["hovertext"][0], hoverinfo="text",
        name="match", increasing_line_color=UP, decreasing_line_color=DOWN))
    fig.add_trace(go.Scatter(x=qx, y=qy, mode="lines+markers", name="query closes",
                             line=dict(color=REAL, dash="dash", width=1.5),
                             hovertemplate="query %{x:+d}: %{y:+.2f}%<extra></extra>"))
    n = int(d.search.summary["window"])
    fig.add_vrect(x0=-n + 0.5, x1=0.5, fillcolor=WINDOW, line_width=0)
    fig.add_vrect(x0=0.5, x1=max(d.search.summary["horizons"]) + 0.5,
                  fillcolor="rgba(144,202,249,0.18)", line_width=0,
                  annotation_text="what followed", annotation_position="top left")
    fig.add_hline(y=0, line_dash="dot", line_color="grey")
    fig.update_layout(
        title=_title(d, d.matches[0]), height=460, xaxis_rangeslider_visible=False,
        sliders=[dict(active=0, steps=steps, currentvalue=dict(prefix="match #"),
                      pad=dict(t=40))],
        xaxis_title="bars from the match's last close (0)",
        yaxis_title="% from the match's last close", margin=dict(l=60, r=20, t=60, b=40),
        legend=dict(orientation="h", y=1.02, x=1, xanchor="right"))
    return fig


def matches_overview(d: ReportData) -> Any:
    """All matches at once: each match's closes as percent from its last close, aligned
    there, one thin line each (hover names it), the query's closes in black."""
    go = _go()
    fig = go.Figure()
    for m in d.matches:
        t = times(m.bars["ts"], d.time_format)
        fig.add_trace(go.Scatter(
            x=m.offset, y=_pct(m, "close"), mode="lines", name=f"#{m.rank} {m.symbol}",
            line=dict(width=1), opacity=0.55, text=t,
            hovertemplate=f"#{m.rank} {m.symbol} %{{text}}<br>%{{y:+.2f}}%<extra></extra>"))
    qx, qy = _query_line(d)
    fig.add_trace(go.Scatter(x=qx, y=qy, mode="lines+markers", name="query",
                             line=dict(color=REAL, width=2.5),
                             hovertemplate="query %{x:+d}: %{y:+.2f}%<extra></extra>"))
    fig.add_vline(x=0, line_dash="dot", line_color="grey")
    fig.update_layout(title=f"all {len(d.matches)} matches aligned at their last close",
                      xaxis_title="bars from the last close", yaxis_title="% from it",
                      height=380, showlegend=False, margin=dict(l=60, r=20, t=50, b=40))
    return fig


def outcome_figure(d: ReportData) -> Any:
    """Per horizon, the matches' forward returns over the base rate's (densities; the
    base sample is binned here, so the page holds bins, not every window)."""
    from plotly.subplots import make_subplots

    go = _go()
    hs = list(d.outcomes)
    o = d.search.outcomes
    fig = make_subplots(rows=1, cols=len(hs), subplot_titles=[
        f"+{h} bar{'s' if h > 1 else ''}" for h in hs])
    for j, h in enumerate(hs, start=1):
        m, base = (100.0 * np.expm1(a) for a in d.outcomes[h])
        row = o.filter(pl.col("horizon") == h).rows_by_key("who", named=True)
        pm, pb = row["matches"][0], row["base"][0]
        lo, hi = np.quantile(base, [0.005, 0.995]) if base.size else (-1.0, 1.0)
        if m.size:
            lo, hi = min(lo, float(m.min())), max(hi, float(m.max()))
        edges = np.linspace(lo, hi, 41)
        mid = 0.5 * (edges[1:] + edges[:-1])
        if base.size:
            dens, _ = np.histogram(np.clip(base, lo, hi), edges, density=True)
            fig.add_trace(go.Bar(x=mid, y=dens, marker_color="#b0bec5", opacity=0.8,
                                 name=f"base rate: {pb['p_up']:.0%} up (n {pb['n']:,})",
                                 showlegend=j == 1, legendgroup="base",
                                 hovertemplate="%{x:.2f}%: density %{y:.3f}<extra>base"
                                               "</extra>"), row=1, col=j)
        if m.size:
            dens, _ = np.histogram(m, edges, density=True)
            fig.add_trace(go.Bar(x=mid, y=dens, marker_color="rgba(21,101,192,0.6)",
                                 name=f"matches: {pm['p_up']:.0%} up (n {pm['n']})",
                                 showlegend=j == 1, legendgroup="matches",
                                 hovertemplate="%{x:.2f}%: density %{y:.3f}<extra>matches"
                                               "</extra>"), row=1, col=j)
        fig.add_vline(x=0, line_color="black", line_width=1, row=1, col=j)
        fig.update_xaxes(title_text="forward return (%)", row=1, col=j)
    fig.update_layout(barmode="overlay", bargap=0, height=340,
                      title="what followed the matches vs every window before T (base rate)",
                      margin=dict(l=50, r=20, t=70, b=40),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def fan_figure(d: ReportData, fan: Fan, last: int = 60) -> Any:
    """The last ``last`` stored bars, then the sampled paths' 10-90% band and median per
    future bar, the harness's 10-90% return band at each answered horizon (the interval
    ``evaluate`` scores), and for a past T the real bars that came, over the fan."""
    go = _go()
    b = d.bars.tail(last)
    hx = times(b["ts"], d.time_format)
    fx = times(fan.ts, d.time_format)
    real = fan.real
    if real is not None:  # the real bars' own times, where they are known
        rx = times(real["ts"], d.time_format)
        fx = rx + fx[len(rx):]
    q10, q50, q90 = np.quantile(fan.closes, [0.1, 0.5, 0.9], axis=0)
    fig = go.Figure()
    fig.add_trace(go.Candlestick(
        x=hx, open=b["open"], high=b["high"], low=b["low"], close=b["close"],
        name=f"{d.symbol} (real)", hovertext=hover(b, d.decimals, d.time_format),
        hoverinfo="text", increasing_line_color=UP, decreasing_line_color=DOWN))
    lastx = [hx[-1]]
    c0 = [fan.last_close]
    fig.add_trace(go.Scatter(x=lastx + fx, y=c0 + q90.tolist(), mode="lines",
                             line=dict(width=0), showlegend=False, hoverinfo="skip"))
    fig.add_trace(go.Scatter(
        x=lastx + fx, y=c0 + q10.tolist(), mode="lines", line=dict(width=0), fill="tonexty",
        fillcolor=BAND, name=f"10-90% of {fan.closes.shape[0]} sampled closes",
        hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=lastx + fx, y=c0 + q50.tolist(), mode="lines",
                             line=dict(color=MEDIAN, width=2), name="median sampled close",
                             hovertemplate="%{x}<br>median %{y:." + str(d.decimals)
                                           + "f}<extra></extra>"))
    _harness_band(fig, d, fx)
    if real is not None:
        fig.add_trace(go.Candlestick(
            x=fx[:real.height], open=real["open"], high=real["high"], low=real["low"],
            close=real["close"], name="what really came",
            hovertext=hover(real, d.decimals, d.time_format, "real "), hoverinfo="text",
            increasing_line_color="#424242", decreasing_line_color="#000000", opacity=0.9))
    when = f"after {d.T.strftime(d.time_format)}"
    fig.update_layout(
        title=f"{d.symbol}: {fan.closes.shape[1]} bars {when}, sampled by the model "
              f"(future times: {fan.times_from})", height=480, dragmode="pan",
        xaxis_rangeslider_visible=False, margin=dict(l=60, r=20, t=50, b=40),
        legend=dict(orientation="h", y=-0.15))
    fig.update_xaxes(type="category", nticks=10)
    fig.update_yaxes(title_text=f"{d.symbol} price", tickformat=axis_format(d))
    return fig


def _harness_band(fig: Any, d: ReportData, fx: list[str]) -> None:
    """The answer's 10-90% close at each answered horizon, as error bars: the numbers
    ``predict`` shows and ``evaluate`` scores (its coverage is in the verdicts)."""
    go = _go()
    xs, mid, lo, hi = [], [], [], []
    for a in d.answers:
        q = a.quantiles
        if a.horizon > len(fx) or any(q.get(k) is None for k in ("q10", "q50", "q90")):
            continue
        c = a.last_close
        xs.append(fx[a.horizon - 1])
        mid.append(c * np.exp(q["q50"]))
        lo.append(c * np.exp(q["q10"]))
        hi.append(c * np.exp(q["q90"]))
    if not xs:
        return
    m = np.asarray(mid)
    fig.add_trace(go.Scatter(
        x=xs, y=m, mode="markers", marker=dict(color="#6a1b9a", size=8, symbol="diamond"),
        error_y=dict(type="data", symmetric=False, array=(np.asarray(hi) - m).tolist(),
                     arrayminus=(m - np.asarray(lo)).tolist(), color="#6a1b9a"),
        name="the answer's 10-90% close at h (what evaluate scores)",
        hovertemplate="%{x}<br>median %{y:." + str(d.decimals) + "f}<extra>answer</extra>"))


def reliability_figure(ev: dict[str, Any]) -> Any | None:
    """Per horizon, each learned forecaster's reliability on the evaluated split (mean
    forecast vs share up, bins of at least 10 forecasts) against the diagonal and the
    base rate, from ``evaluate --json``'s direction rows; None when it has none."""
    from plotly.subplots import make_subplots

    go = _go()
    rows = [r for r in ev.get("direction") or [] if r.get("reliability")]
    hs = sorted({int(r["horizon"]) for r in rows})
    if not hs:
        return None
    fig = make_subplots(rows=1, cols=len(hs), subplot_titles=[f"h = {h}" for h in hs])
    names = list(dict.fromkeys(r["forecaster"] for r in rows))
    palette = ["#1565c0", "#ef6c00", "#2e7d32", "#6a1b9a", "#c62828", "#00838f", "#5d4037"]
    for j, h in enumerate(hs, start=1):
        fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", showlegend=False,
                                 line=dict(color="grey", dash="dot"), hoverinfo="skip"),
                      row=1, col=j)
        for r in (r for r in rows if int(r["horizon"]) == h):
            t = np.array([(b[1], b[2], b[3]) for b in r["reliability"] if b[3] >= 10],
                         dtype=np.float64).reshape(-1, 3)
            if not t.size:
                continue
            k = names.index(r["forecaster"]) % len(palette)
            fig.add_trace(go.Scatter(
                x=t[:, 0], y=t[:, 1], mode="lines+markers", name=r["forecaster"],
                legendgroup=r["forecaster"], showlegend=j == 1,
                line=dict(color=palette[k]), customdata=t[:, 2],
                hovertemplate=f"{r['forecaster']}<br>forecast %{{x:.3f}}<br>share up "
                              "%{y:.3f}<br>n %{customdata:.0f}<extra></extra>"),
                row=1, col=j)
        fig.update_xaxes(title_text="forecast P(up)", row=1, col=j)
        fig.update_yaxes(title_text="share that closed up", row=1, col=j)
    fig.update_layout(title=f"reliability of P(close up) on {ev.get('split', '?')}",
                      height=380, margin=dict(l=60, r=20, t=70, b=40))
    return fig
