"""``candletok report``: the page's content, its refusal of bad input, and the page in a
real headless Chromium (skipped with the reason where none is installed)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from tests._helpers import run_main, trained_on_sample

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
AT = "2012-06-01"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny model on the sample, and its report of AAPL at a past date (fan of 8 bars,
    the real bars after T drawn over it), written once for every test here."""
    import torch

    from candletok.report.page import write_report

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("report")
    ds, model = trained_on_sample(root)
    out, data = write_report(ds, "AAPL", root / "aapl.html", model=model, at=AT,
                             fan_horizon=8, samples=40, calibrate=False)
    return {"root": root, "ds": ds, "model": model, "out": out, "data": data,
            "html": out.read_text(encoding="utf-8")}


def test_page_is_self_contained_and_shows_what_was_found(made: dict[str, Any]) -> None:
    html, d = made["html"], made["data"]
    # offline: plotly.js inlined once, nothing fetched from anywhere
    head, body = html.split("</head>", 1)
    assert head.count("<script") == 1 and "<script src" not in head  # plotly.js, inline
    assert not re.search(r"<script[^>]* src|<link|https?://|cdn", body)
    assert html.count("Plotly.newPlot") >= 5 and len(html) > 1_000_000
    # every match of the exact search is listed (not the 20 most recent)
    assert d.search.summary["matches"] == len(d.matches) > 20
    steps = re.search(r'"steps":\[(.*?)\]\}\]', html)
    assert steps is not None and steps.group(1).count('"label":') == len(d.matches)
    assert f"data-matches='{len(d.matches)}'" in html
    # real bars and times: the query ends at T, the last bar's stored prices are in a hover
    assert d.bars["ts"].max().date().isoformat() == AT
    last = d.bars.row(-1, named=True)
    dec = d.decimals
    br = "\\u003cbr\\u003e"  # plotly's JSON escapes "<br>"
    assert f"{AT}{br}O {last['open']:.{dec}f}  H {last['high']:.{dec}f}" in html
    # a past T: the real bars that came are the stored ones right after T
    assert d.fan is not None and d.fan.real is not None and d.fan.real.height == 8
    assert d.fan.real["ts"].min() > d.bars["ts"].max()
    assert d.fan.closes.shape == (40, 8)
    # the summary in words, the base rate beside the search, and no made-up verdicts
    assert "What it means for the next bar." in html and "base rate" in html
    assert "No evaluation is available" in html  # no evaluate was run for this model


def test_matches_are_the_stored_bars_aligned_at_their_last_close(made: dict[str, Any]
                                                                 ) -> None:
    d = made["data"]
    for m in d.matches[:5]:
        k = int(np.flatnonzero(m.offset == 0)[0])
        assert m.bars["ts"][k] == m.end  # offset 0 is the window's last candle
        assert m.bars["ts"].max() <= d.T  # what followed is cut at T
        fwd = m.forward[1]
        if fwd is not None and k + 1 < m.bars.height:
            assert np.isclose(np.log(m.bars["close"][k + 1] / m.last_close), fwd)


def test_the_page_at_t_ignores_bars_after_t(made: dict[str, Any]) -> None:
    """Causality: changing every bar after T (prices up 30%, volume doubled) changes no
    bar, match or outcome the report shows at T."""
    from candletok.data.sources import load_bars
    from candletok.dataset.build import build_dataset
    from candletok.report.gather import gather
    from tests._helpers import COARSE

    later = pl.col("ts") > pl.datetime(2012, 6, 1, time_zone="UTC")  # after T

    def changed(symbols: list[str], **kw: Any) -> pl.DataFrame:
        bars = load_bars(symbols, **kw)
        return bars.with_columns(
            *(pl.when(later).then(pl.col(c) * 1.3).otherwise(pl.col(c)).alias(c)
              for c in ("open", "high", "low", "close")),
            pl.when(later).then(pl.col("volume") * 2).otherwise(pl.col("volume")))

    b = json.loads((made["ds"] / "manifest.json").read_text(encoding="utf-8"))["boundaries"]
    cut = made["root"] / "changed"
    build_dataset(["AAPL", "MSFT"], cut, source="sample", start="2009-01-01",
                  tokenizer_params=COARSE, val_from=b["val_from"][:10],
                  test_from=b["test_from"][:10], loader=changed)
    full, other = made["data"], gather(cut, "AAPL", at=AT, calibrate=False)
    assert other.bars.equals(full.bars)
    assert [(m.symbol, m.end, m.forward) for m in other.matches] == \
        [(m.symbol, m.end, m.forward) for m in full.matches]
    assert other.search.outcomes.equals(full.search.outcomes)
    for h, (m, base) in full.outcomes.items():
        assert np.array_equal(other.outcomes[h][0], m)
        assert np.array_equal(other.outcomes[h][1], base)


def test_cli_refuses_an_existing_file_and_a_symbol_outside(
        made: dict[str, Any], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    root = made["root"]
    code, _, err = run_main(("report", "AAPL", "--dataset", str(made["ds"]), "--out",
                             str(made["out"])), root, capsys, monkeypatch)
    assert code == 1 and "already exists" in err and "--overwrite" in err
    code, _, err = run_main(("report", "ZZZ", "--dataset", str(made["ds"]), "--out",
                             str(root / "z.html")), root, capsys, monkeypatch)
    assert code == 1 and "ZZZ is not in" in err and not (root / "z.html").exists()


def test_cli_writes_a_report_without_a_model(made: dict[str, Any],
                                             capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    root = made["root"]
    out = root / "msft.html"
    code, text, err = run_main(("report", "MSFT", "--dataset", str(made["ds"]), "--out",
                                str(out), "--no-calibrate", "--recent", "30"), root,
                               capsys, monkeypatch)
    assert code == 0, err
    assert "matches" in text and "no model: no fan" in text
    page = out.read_text(encoding="utf-8")
    assert "No model was given" in page and "id='fan-box'" not in page


def test_saved_evaluation_is_shown_and_a_bad_one_refused(
        made: dict[str, Any], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``--evaluation FILE`` (what ``evaluate --json`` printed): its tables and one
    reliability diagram per horizon; a file of another kind is one sentence, exit 1."""
    root = made["root"]
    est = {"value": 0.01, "lo": -0.02, "hi": 0.04}
    doc = {"split": "test", "direction": [
        {"forecaster": "CandleGPT", "horizon": 1, "n": 40, "brier": est, "skill": est,
         "ece": est, "calibration": "platt", "verdict": "no skill: interval includes zero",
         "reliability": [[0.4, 0.45, 0.5, 20], [0.5, 0.55, 0.6, 20]]}]}
    ev = root / "eval.json"
    ev.write_text(json.dumps(doc), encoding="utf-8")
    out = root / "with_eval.html"
    code, _, err = run_main(("report", "AAPL", "--dataset", str(made["ds"]), "--out", str(out),
                             "--no-calibrate", "--evaluation", str(ev)), root, capsys,
                            monkeypatch)
    assert code == 0, err
    page = out.read_text(encoding="utf-8")
    assert "no skill: interval includes zero" in page and "id='reliability-box'" in page
    assert "+0.010 [-0.020, +0.040]" in page
    ev.write_text("[1, 2]", encoding="utf-8")
    code, _, err = run_main(("report", "AAPL", "--dataset", str(made["ds"]), "--out",
                             str(root / "bad.html"), "--no-calibrate", "--evaluation",
                             str(ev)), root, capsys, monkeypatch)
    assert code == 1 and "is not the output of `candletok evaluate --json`" in err
    assert not (root / "bad.html").exists()


def _browser() -> Any:
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        pytest.skip(f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {DRIVER}); "
                    "`apt-get install chromium chromium-driver`")
    webdriver = pytest.importorskip("selenium.webdriver",
                                    reason="needs selenium (the dev extra)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,900"):
        opts.add_argument(a)
    opts.binary_location = CHROMIUM
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


DRAWN = """
const out = {};
for (const gd of document.querySelectorAll('.js-plotly-plot')) {
  const r = gd.getBoundingClientRect();
  out[gd.id] = {traces: gd.querySelectorAll('.main-svg .trace').length,
                paths: gd.querySelectorAll('.main-svg .trace path').length,
                w: r.width, h: r.height, data: gd.data.length,
                steps: (gd.layout.sliders && gd.layout.sliders[0]) ?
                       gd.layout.sliders[0].steps.length : 0};
}
return out;
"""

HOVER = """
const gd = document.getElementById(arguments[0]);
Plotly.Fx.hover(gd, [{curveNumber: 0, pointNumber: arguments[1]}]);
return gd.querySelector('.hoverlayer').textContent;
"""


def test_page_in_headless_chromium(made: dict[str, Any]) -> None:
    driver = _browser()
    try:
        driver.get(made["out"].resolve().as_uri())
        driver.set_script_timeout(60)
        driver.execute_async_script(
            "const done = arguments[0]; const t0 = Date.now();"
            "(function wait() { const p = document.querySelectorAll('.js-plotly-plot');"
            " if (p.length >= 5 || Date.now() - t0 > 50000) done(p.length);"
            " else setTimeout(wait, 100); })();")
        errors = [x for x in driver.get_log("browser") if x["level"] == "SEVERE"]
        assert errors == []
        drawn = driver.execute_script(DRAWN)
        d = made["data"]
        assert set(drawn) == {"price", "matches", "overview", "outcomes", "fan"}
        for name, got in drawn.items():
            assert got["traces"] > 0 and got["paths"] > 0, name
            assert got["w"] > 100 and got["h"] > 100, name
        n = len(d.matches)
        assert drawn["matches"]["steps"] == n  # one panel per match, browsable
        assert drawn["overview"]["data"] == n + 1  # every match's line and the query
        text = driver.execute_script(HOVER, "price", d.bars.height - 1)
        last = d.bars.row(-1, named=True)
        assert AT in text and f"C {last['close']:.{d.decimals}f}" in text and "V " in text
        text = driver.execute_script(HOVER, "matches", 0)
        assert d.matches[0].symbol in text and "O " in text
    finally:
        driver.quit()
