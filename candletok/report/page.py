"""The report page: one self-contained HTML file, the summary in words at the top, then
the charts and tables of :mod:`candletok.report.figures` and what ``evaluate`` measured.

Self-contained means offline: plotly.js is inlined once from the installed Python package
(``plotly.offline.get_plotlyjs``), every figure is a ``<div>`` with its JSON, and nothing
is fetched (no CDN, no fonts, no MathJax). The file is written atomically and an existing
one is replaced only with ``overwrite``.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np

from candletok.core.atomic import refuse_existing, write_text_atomic
from candletok.core.display import format_price
from candletok.report import figures
from candletok.report.gather import ReportData, gather

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;
max-width:1180px;padding:16px 24px;color:#212121;background:#fff}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.15em;margin-top:1.6em;
border-bottom:1px solid #ddd;padding-bottom:.2em}
.summary{background:#f5f7fa;border-left:4px solid #1565c0;padding:8px 16px;margin:12px 0}
.summary li{margin:.35em 0}.note{color:#555;font-size:.92em}
table{border-collapse:collapse;font-size:.86em;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#eceff1}td.num{text-align:right;font-variant-numeric:tabular-nums}
details{margin:8px 0}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _table(head: list[str], rows: list[list[Any]], cls: str = "") -> str:
    """An HTML table; cells that look like numbers align right."""
    def cell(v: Any) -> str:
        s = str(v)
        num = s[:1] in "+-0123456789" and s not in ("-",)
        return f"<td{' class=num' if num else ''}>{_e(s)}</td>"

    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(cell(v) for v in r) + "</tr>" for r in rows)
    return f"<table class='{cls}'><tr>{th}</tr>{body}</table>"


def _frac(v: Any) -> str:
    return "-" if v is None or not math.isfinite(float(v)) else f"{float(v):.1%}"


def _est(e: dict[str, Any] | None, digits: int = 3, signed: bool = True) -> str:
    """An estimate saved as JSON (``value``, ``lo``, ``hi``) as the CLI prints one."""
    if not e or e.get("value") is None:
        return "-"
    f = f"{{:{'+' if signed else ''}.{digits}f}}"
    if e.get("lo") is None or e.get("hi") is None:
        return f.format(e["value"])
    return f"{f.format(e['value'])} [{f.format(e['lo'])}, {f.format(e['hi'])}]"


def _pct_log(r: Any) -> str:
    return "-" if r is None or not math.isfinite(float(r)) else f"{100 * math.expm1(r):+.2f}%"


# ---- the words at the top ------------------------------------------------------------------
def _search_words(d: ReportData) -> list[str]:
    s = d.search.summary
    h0 = s["horizons"][0]
    o = d.search.outcomes
    m = o.filter((o["horizon"] == h0) & (o["who"] == "matches")).row(0, named=True)
    b = o.filter((o["horizon"] == h0) & (o["who"] == "base")).row(0, named=True)
    back = f" (backed off from {s['last']})" if s["backed_off"] else ""
    n = int(s["window"])
    said = [f"The search ({s['mode']} mode) found {s['matches']} windows of history like "
            f"{d.symbol}'s last {n} candle{'s' * (n > 1)}{back} that ended before T."]
    verdict = [w for w in d.search.words if w.startswith(f"{h0} bar")]
    said += verdict or [
        f"After {h0} bar{'s' * (h0 > 1)}, {_frac(m['p_up'])} of them closed up (95% CI "
        f"{_frac(m['p_lo'])}-{_frac(m['p_hi'])}) against a base rate of {_frac(b['p_up'])}."]
    said.append(f"(The search's base rate is the share up of every window before T: "
                f"{_frac(b['p_up'])}, 95% CI {_frac(b['p_lo'])}-{_frac(b['p_hi'])}.)")
    cal = d.calibrated
    if cal is not None and cal.horizons:
        said.append(f"On val: {cal.horizons[0].words}")
    elif cal is None:
        said.append("The analogue P(up) was not calibrated on val (--no-calibrate): what "
                    "the search has shown on val is unknown here.")
    return said


def _model_words(d: ReportData) -> list[str]:
    if d.model is None:
        return ["No model was given: there is no forecast, and no evaluate verdict."]
    a = next((x for x in d.answers if x.horizon == 1), d.answers[0] if d.answers else None)
    if a is None:
        return ["The model gave no answer at T."]
    if a.p_up is not None:
        p = f"a calibrated P(close up next bar) of {a.p_up:.1%} (raw {_frac(a.p_up_raw)}, " \
            f"map {a.calibration})"
    else:
        p = f"a raw P(close up next bar) of {_frac(a.p_up_raw)}, not calibrated ({a.p_up_reason})"
    rng = a.range_pct
    said = [f"The model gives {p}, against a base rate of {a.base_rate:.1%} "
            f"({a.base_rate_name}).",
            f"What it has shown at h=1: {a.val_skill}; {a.test_skill}."]
    if rng is not None:
        said.append(f"Its next-bar range (high/low, constant fit on val) is {rng:.2f}% "
                    f"of price.")
    elif a.range_raw is not None:
        said.append(f"Its raw next-bar range is {100 * math.expm1(a.range_raw):.2f}% "
                    "(the constant was never fit: run evaluate).")
    return said + [n[:1].upper() + n[1:] for n in a.notes]


def _skill_shown(d: ReportData) -> tuple[bool, bool]:
    """Whether the model and the search have each shown direction skill on val at the
    first horizon (the whole interval above zero)."""
    from candletok.evaluation.calibrate import saved_fit

    fit = saved_fit(d.calibration, None, 1) if d.calibration else None
    vs = (fit or {}).get("val_skill") or {}
    model = bool(vs.get("lo") is not None and vs["lo"] > 0)
    cal = d.calibrated
    search = bool(cal is not None and cal.horizons and cal.horizons[0].skill_shown)
    return model, search


def meaning(d: ReportData) -> str:
    """What the two answers mean for the next bar, in one or two sentences."""
    model, search = _skill_shown(d)
    o = d.search.outcomes
    h0 = d.search.summary["horizons"][0]
    b = o.filter((o["horizon"] == h0) & (o["who"] == "base")).row(0, named=True)
    if not model and not search:
        said = (f"Neither has shown skill at calling the direction on val, so read the next "
                f"move as the base rate: about {_frac(b['p_up'])} up (every window before T). "
                f"A tilt away from it "
                f"is not evidence.")
    else:
        who = " and ".join(w for w, ok in (("the model", model), ("the search", search)) if ok)
        said = (f"{who[:1].upper() + who[1:]} showed direction skill on val (its interval "
                f"above zero); lean on its calibrated number, not the raw one, and check "
                f"the test verdicts below.")
    a = next((x for x in d.answers if x.horizon == 1), None)
    if a is not None and a.range_pct is not None:
        said += (f" For sizing, the model expects a range of about {a.range_pct:.2f}% "
                 f"next bar (see its range verdict below).")
    return said


def summary_html(d: ReportData) -> str:
    s = d.search.summary
    when = d.T.strftime(d.time_format)
    asked = "its last bar" if d.at is None else f"--at {d.at}"
    items = ["<li><b>Search.</b> " + " ".join(_e(w) for w in _search_words(d)) + "</li>",
             "<li><b>Model.</b> " + " ".join(_e(w) for w in _model_words(d)) + "</li>",
             f"<li><b>What it means for the next bar.</b> {_e(meaning(d))}</li>"]
    last = format_price(float(d.bars["close"][-1]), d.decimals)
    return (f"<h1>{_e(d.symbol)} at {_e(when)} (T)</h1>"
            f"<p class=note>Asked at {_e(asked)}: nothing after T is used. Last close "
            f"{_e(last)} · dataset {_e(d.dataset)} · {s['index_candles']:,} candles of "
            f"{s['symbols']} symbols searched · bars {_e(d.interval)}"
            f"{' · times in UTC' if s.get('intraday') else ''}.</p>"
            f"<div class=summary><ul>{''.join(items)}</ul></div>")


# ---- tables --------------------------------------------------------------------------------
def outcome_table(d: ReportData) -> str:
    o = d.search.outcomes
    rows = []
    for r in o.iter_rows(named=True):
        rows.append([r["horizon"], r["who"], r["n"], f"{r['n_eff']:.1f}",
                     f"{_frac(r['p_up'])} [{_frac(r['p_lo'])}-{_frac(r['p_hi'])}]",
                     "-" if r["p_value"] is None or not math.isfinite(r["p_value"])
                     else f"{r['p_value']:.2g}",
                     _pct_log(r["mean_log"]),
                     " / ".join("-" if r[k] is None or not math.isfinite(r[k]) else
                                f"{r[k]:+.2f}%" for k in ("q10_pct", "q50_pct", "q90_pct"))])
    return _table(["h", "", "n", "eff. n", "P(up) [95% CI]", "binomial p", "geo mean",
                   "q10 / q50 / q90"], rows)


def analogue_table(d: ReportData) -> str:
    cal = d.calibrated
    if cal is None:
        return "<p class=note>Not calibrated on val (--no-calibrate).</p>"
    rows = [[h.horizon, _frac(h.matches_p_up), f"{h.n_eff:.1f}", _frac(h.p_up_raw),
             _frac(h.p_up_calibrated), _frac(h.base_rate), _est(h.val_skill),
             f"{h.calibration} (n={h.val_n})" if h.val_n else h.calibration]
            for h in cal.horizons]
    return (_table(["h", "matches' P(up)", "eff. n", "raw analogue P(up)", "calibrated P(up)",
                    "base rate (train)", "val skill vs base [95%]", "map"], rows)
            + "".join(f"<p class=note>{_e(n)}</p>" for n in cal.notes))


def match_table(d: ReportData) -> str:
    hs = d.search.summary["horizons"]
    rows = [[m.rank, m.symbol, m.bars["ts"][int(np.flatnonzero(m.offset == 0)[0])
                                           - m.window + 1].strftime(d.time_format),
             m.end.strftime(d.time_format), format_price(m.last_close, d.decimals),
             *([] if d.search.summary["mode"] == "exact" else [f"{m.distance:.3f}"]),
             *[_pct_log(m.forward[h]) for h in hs]] for m in d.matches]
    head = ["#", "symbol", "from", "to", "last close",
            *([] if d.search.summary["mode"] == "exact" else ["distance"]),
            *[f"+{h}" for h in hs]]
    return (f"<details><summary>all {len(d.matches)} matches as a table</summary>"
            f"{_table(head, rows)}</details>")


def answer_table(d: ReportData) -> str:
    rows = []
    for a in d.answers:
        q = a.quantiles
        band = " / ".join(format_price(a.last_close * math.exp(q[k]), d.decimals)
                          if q.get(k) is not None else "-" for k in ("q10", "q50", "q90"))
        rows.append([a.horizon, _frac(a.p_up), _frac(a.p_up_raw), _frac(a.base_rate),
                     band, a.val_skill, a.test_skill])
    return _table(["h", "calibrated P(up)", "raw P(up)", "base rate", "close q10 / q50 / q90",
                   "val", "test"], rows)


def band_words(d: ReportData) -> str:
    """What was measured of the band the fan's answer draws: the 80% (10-90%) interval's
    coverage on the evaluated split per horizon (``evaluate --json``), or that it was not
    measured here. The band has no val-fit map of its own; its coverage is its check."""
    from candletok.evaluation.calibrate import model_forecaster

    name = model_forecaster(d.calibration)
    rows = [r for r in (d.evaluation or {}).get("quantiles") or []
            if r.get("forecaster") == name and r.get("coverage")]
    if not rows:
        return ("The 10-90% band's coverage was not measured here (give the report "
                "`evaluate --json`'s output as its evaluation file to see it).")
    cov = "; ".join(f"h={r['horizon']}: {_est(r['coverage'], 3, False)}" for r in rows)
    return (f"Coverage of {name}'s 10-90% band on {d.evaluation.get('split', '?')} "
            f"(80% wanted): {cov}.")


def verdict_html(d: ReportData) -> str:
    """The evaluate verdicts: the full tables when ``evaluate --json`` was given, else
    what the calibration file beside the model records; plainly said when neither."""
    parts = []
    ev = d.evaluation
    if ev is not None:
        parts.append(f"<p class=note>From {_e(d.evaluation_from)} (split "
                     f"{_e(ev.get('split'))}; intervals: 95% block bootstrap over dates).</p>")
        parts.append("<h3>P(close up at t+h): Brier skill vs the base rate</h3>" + _table(
            ["forecaster", "h", "n", "Brier", "skill vs base [95%]", "ECE", "calibration",
             "verdict"],
            [[r["forecaster"], r["horizon"], r["n"], _est(r.get("brier"), 4, False),
              "-" if r.get("reference") else _est(r.get("skill")),
              _est(r.get("ece"), 4, False), r.get("calibration"), r.get("verdict")]
             for r in ev.get("direction") or []]))
        refs = list((ev.get("references") or {}).get("range") or [])
        if ev.get("range"):
            parts.append("<h3>next bar's range ln(H/L): QLIKE (lower is better)</h3>" + _table(
                ["forecaster", "n", "QLIKE [95%]", *(f"skill vs {k}" for k in refs),
                 "verdict"],
                [[r["forecaster"], r["n"], _est(r.get("qlike"), 3, False),
                  *(_est((r.get("skill") or {}).get(k)) for k in refs), r.get("verdict")]
                 for r in ev["range"]]))
        if ev.get("quantiles"):
            parts.append("<h3>forward return quantiles: pinball skill and 80% coverage</h3>"
                         + _table(["forecaster", "h", "n", "pinball skill", "80% coverage",
                                   "verdict"],
                                  [[r["forecaster"], r["horizon"], r["n"],
                                    _est(r.get("skill")), _est(r.get("coverage"), 3, False),
                                    r.get("verdict")] for r in ev["quantiles"]]))
    cal = d.calibration
    if cal is not None:
        parts.append(_calibration_table(cal))
    if ev is None and cal is None:
        why = d.calibration_note or "no model was given"
        parts.append(f"<p><b>No evaluation is available</b> for this model: {_e(why)}. Run "
                     "<code>candletok evaluate DIR --model FILE --json &gt; eval.json</code> "
                     "and pass <code>--evaluation eval.json</code>.</p>")
    elif ev is None:
        parts.append("<p class=note>No reliability diagram: the calibration file keeps the "
                     "maps and verdicts, not the reliability bins. Save <code>candletok "
                     "evaluate ... --json &gt; eval.json</code> and pass "
                     "<code>--evaluation eval.json</code> for the full tables.</p>")
    return "".join(parts)


def _calibration_table(cal: dict[str, Any]) -> str:
    ev = cal.get("evaluated") or {}
    split = ev.get("split", "test")
    rows = []
    for name, rec in sorted((cal.get("forecasters") or {}).items()):
        for h, fit in sorted((rec.get("p_up") or {}).items(), key=lambda kv: int(kv[0])):
            got = ((ev.get("p_up") or {}).get(name) or {}).get(str(h)) or {}
            rows.append([name, h, (fit.get("map") or {}).get("kind", "-"),
                         _frac(fit.get("base_rate")), fit.get("n", "-"),
                         _est(fit.get("val_skill")), got.get("n", "-"), _est(got.get("skill")),
                         got.get("verdict", "-")])
    return ("<h3>saved by evaluate beside the model (calibration file)</h3>" + _table(
        ["forecaster", "h", "map (chosen on val)", "base rate", "val n",
         "val skill [95%]", f"{split} n", f"{split} skill [95%]", f"{split} verdict"], rows))


# ---- the page ------------------------------------------------------------------------------
def _div(fig: Any, div_id: str, **attrs: Any) -> str:
    """A figure as a ``<div>`` of the page (plotly.js is inlined once, in the head)."""
    body = fig.to_html(full_html=False, include_plotlyjs=False, include_mathjax=False,
                       div_id=div_id, config={"scrollZoom": True, "displaylogo": False})
    extra = " ".join(f"data-{k}='{_e(v)}'" for k, v in attrs.items())
    return f"<section class=chart id='{div_id}-box' {extra}>{body}</section>"


def render(d: ReportData) -> str:
    """The whole page as text (see the module doc)."""
    from plotly.offline import get_plotlyjs

    s = d.search.summary
    parts = [summary_html(d),
             "<h2>Recent bars</h2>", _div(figures.price_figure(d), "price"),
             f"<h2>Every match ({len(d.matches)} of {s['matches']} found)</h2>",
             "<p class=note>Drag the slider to browse the matches one by one, each in its "
             "own context: its stored bars as % from its last close, the window shaded, "
             "what followed in blue, the query's closes dashed. Hover a bar for its real "
             "time and prices.</p>",
             _div(figures.match_browser(d), "matches", matches=len(d.matches)),
             _div(figures.matches_overview(d), "overview", matches=len(d.matches)),
             match_table(d),
             "<h2>Outcomes against the base rate</h2>",
             _div(figures.outcome_figure(d), "outcomes"), outcome_table(d),
             "<h3>calibrated analogue P(up)</h3>", analogue_table(d)]
    parts.append("<h2>Forecast</h2>")
    if d.fan is not None:
        past = d.fan.real is not None and d.fan.real.height > 0
        parts += [_div(figures.fan_figure(d, d.fan), "fan"),
                  f"<p class=note>{_e(d.fan.caveat)}."
                  + (" The real bars after T are drawn over the fan." if past else "")
                  + f" {_e(band_words(d))}</p>", answer_table(d)]
    else:
        parts.append("<p>No model was given (--model): no forecast is drawn.</p>")
    parts.append("<h2>What evaluate measured</h2>")
    parts.append(verdict_html(d))
    rel = figures.reliability_figure(d.evaluation) if d.evaluation else None
    if rel is not None:
        parts.append(_div(rel, "reliability"))
    parts += [f"<p class=note>{_e(n)}</p>" for n in d.notes]
    parts.append("<p class=note>Written by <code>candletok report</code>; every chart is "
                 "interactive (drag to pan, scroll to zoom, double-click to reset).</p>")
    title = f"candletok report: {d.symbol} at {d.T.strftime(d.time_format)}"
    return (f"<!DOCTYPE html><html lang=en><head><meta charset='utf-8'><title>{_e(title)}"
            f"</title><style>{CSS}</style><script>{get_plotlyjs()}</script></head><body>"
            + "\n".join(parts) + "</body></html>")


def write_report(dataset: str | Path, symbol: str, out: str | Path, *,
                 overwrite: bool = False, **kwargs: Any) -> tuple[Path, ReportData]:
    """Gather (:func:`~candletok.report.gather.gather`, ``kwargs``) and write the report
    of ``symbol`` to ``out``; refused before any work when ``out`` exists and not
    ``overwrite``."""
    out = Path(out)
    refuse_existing(out, overwrite)
    d = gather(dataset, symbol, **kwargs)
    write_text_atomic(out, render(d))
    return out, d
