"""The one benchmark command: stage speeds, scaling, reference encoders, tokenizer quality,
live inference (KV cache).

    python -m benchmarks.run            # = --quick: every section on small sizes, < 1 min
    python -m benchmarks.run --full     # the docs' figures (~7 min measured on 2 cores); writes
                                        # benchmarks/results.md, quality.png, scaling.png
    python -m benchmarks.run --quick --only quality references
    python -m benchmarks.run --only kmeans_fit kmeans_assign     # stages: speed + scaling

``--only`` takes section names (speed, scaling, references, quality, live) and/or stage names
(load_csv, load_parquet, features, bins_encode, kmeans_fit, kmeans_assign, shard_write,
dataset_read, train_step); stage names alone select the speed and scaling sections for
those stages. Files are written only by a complete ``--full`` run (never by ``--only``
or ``--quick``), each atomically, so the committed figures always come from one whole run.
Quick mode exists so ``tests/test_benchmarks.py`` can run the suite and keep it working.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks import live_speed
from benchmarks import pipeline_speed as ps
from benchmarks import quality_schemes as qs
from benchmarks._util import machine
from benchmarks.tokenizer_quality import markdown as quality_markdown
from candletok.core.atomic import atomic_path, write_text_atomic

SECTIONS = ("speed", "scaling", "references", "quality", "live")
HERE = Path(__file__).parent
RESULTS = HERE / "results.md"
PLOTS = {"quality": HERE / "quality.png", "scaling": HERE / "scaling.png"}


def parse_only(only: Sequence[str] | None) -> tuple[set[str], list[str]]:
    """``--only`` words -> (sections to run, stages to time)."""
    if not only:
        return set(SECTIONS), list(ps.STAGES)
    bad = [w for w in only if w not in SECTIONS and w not in ps.STAGES]
    if bad:
        raise SystemExit(
            f"Unknown --only value(s) {', '.join(bad)}; choose from sections "
            f"{', '.join(SECTIONS)} or stages {', '.join(ps.STAGES)}."
        )
    sections = {w for w in only if w in SECTIONS}
    stages = [s for s in ps.STAGES if s in only]
    if stages:
        sections |= {"speed", "scaling"}
    return sections, stages or list(ps.STAGES)


def _cpu_seconds() -> tuple[float, float] | None:
    """(CPU-seconds the whole machine has been busy, CPU-seconds used by this process and
    its reaped children), or None without psutil. Their difference over a run is what
    other jobs took from the shared cores."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is in the dev extra
        return None
    t = psutil.cpu_times()
    busy = sum(getattr(t, f) for f in t._fields
               if f not in ("idle", "iowait", "guest", "guest_nice"))  # guest is in user
    me = psutil.Process().cpu_times()
    return busy, me.user + me.system + me.children_user + me.children_system


def run(quick: bool, only: Sequence[str] | None = None,
        progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the selected sections; returns ``{"stages", "slopes", "references", "quality",
    "live", "meta"}`` (absent sections are empty)."""
    sections, stages = parse_only(only)
    t0 = time.perf_counter()
    cpu0 = _cpu_seconds()
    out: dict[str, Any] = {"stages": [], "slopes": [], "references": [], "quality": [],
                           "live": {}}
    out["meta"] = {
        "mode": "quick" if quick else "full",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "load_start": os.getloadavg(),
        "sections": sorted(sections),
    }
    if {"speed", "scaling"} & sections:
        progress("stages" + (" and scaling" if "scaling" in sections else "") + " ...")
        out["stages"] = ps.run_scaling(quick, stages, scaling="scaling" in sections,
                                       progress=progress)
        if "scaling" in sections:
            out["slopes"] = ps.slopes(out["stages"])
    if "references" in sections:
        progress("reference encoders ...")
        out["references"] = ps.compare_references(quick)
    if "quality" in sections:
        progress("tokenizer quality ...")
        out["quality"] = qs.main(quick)
    if "live" in sections:
        progress("live inference (KV cache) ...")
        out["live"] = live_speed.run(**(live_speed.QUICK if quick else live_speed.FULL))
    out["meta"]["load_end"] = os.getloadavg()
    out["meta"]["seconds"] = wall = time.perf_counter() - t0
    cpu1 = _cpu_seconds()
    if cpu0 is not None and cpu1 is not None:
        others = max(0.0, (cpu1[0] - cpu0[0]) - (cpu1[1] - cpu0[1]))
        out["meta"]["others_cpu_s"] = others
        out["meta"]["others_share"] = others / (wall * (os.cpu_count() or 1))
    return out


# ---- tables ----------------------------------------------------------------------------
def _rate(x: float) -> str:
    if not math.isfinite(x):
        return "-"
    for div, suf in ((1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:,.2f}{suf}"
    return f"{x:,.0f}"


def _n(n: int) -> str:
    e = math.floor(math.log10(n) + 1e-9)
    lead = n / 10**e
    return f"10^{e}" if lead == 1 else f"{lead:g}x10^{e}"


def stage_table(rows: list[dict[str, Any]], quick: bool) -> str:
    n0 = ps.STAGE_N[quick]
    order = list(ps.STAGES)
    pick = sorted(  # pipeline order; the DataLoader row right after the direct read
        (r for r in rows if r["n"] == n0 or r["stage"] == "train_step"
         or r["label"] != ps.STAGES[r["stage"]]),
        key=lambda r: (order.index(r["stage"]), r["label"] != ps.STAGES[r["stage"]]),
    )
    lines = ["| stage | n | seconds | rate | unit | peak RSS MiB | +MiB during | note |",
             "|---|---|---|---|---|---|---|---|"]
    for r in pick:
        delta = "-" if not math.isfinite(r["delta_rss_mib"]) else f"{r['delta_rss_mib']:,.0f}"
        lines.append(f"| {r['label']} | {r['count']:,} | {r['seconds']:.3f} | {_rate(r['per_s'])}"
                     f" | {r['unit']} | {r['peak_rss_mib']:,.0f} | {delta} | {r['note']} |")
    return "\n".join(lines) + "\n"


def scaling_table(rows: list[dict[str, Any]], fits: list[dict[str, Any]]) -> str:
    sizes = sorted({r["n"] for r in rows if r["stage"] in ps.SCALED})
    head = "| stage | " + " | ".join(_n(n) for n in sizes) + \
        " | slope (all) | slope (top decade) | ns/candle at largest n |"
    lines = [head, "|" + "---|" * (len(sizes) + 4)]
    for f in fits:
        rate = {r["n"]: r["per_s"] for r in rows
                if r["stage"] == f["stage"] and r["label"] == ps.STAGES[f["stage"]]}
        cells = " | ".join(_rate(rate[n]) if n in rate else "-" for n in sizes)
        lines.append(f"| {f['label']} | {cells} | {f['slope']:.2f} | {f['slope_top']:.2f} | "
                     f"{f['ns_per_candle_max']:,.0f} |")
    return "\n".join(lines) + "\n"


def reference_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| level | implementation | candles timed | seconds | candles/s | "
             "candletok / this | tokens checked equal to candletok |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['level']} | {r['impl']} | {r['candles']:,} | {r['seconds']:.4f} | "
                     f"{_rate(r['per_s'])} | {r['ratio']:,.1f}x | {r['checked']:,} |")
    return "\n".join(lines) + "\n"


def report(res: dict[str, Any], command: str) -> str:
    """The whole results page (what is printed and, in full mode, written)."""
    m = res["meta"]
    quick = m["mode"] == "quick"
    ls, le = m["load_start"], m["load_end"]
    parts = [
        "# candletok benchmarks\n",
        f"- command: `{command}` ({m['mode']} mode, {m['seconds'] / 60:.1f} min)",
        f"- date: {m['date']}",
        f"- machine: {m['machine']}",
        f"- load average (1/5/15 min) at start {ls[0]:.2f}/{ls[1]:.2f}/{ls[2]:.2f}, at end "
        f"{le[0]:.2f}/{le[1]:.2f}/{le[2]:.2f}",
    ]
    if "others_share" in m:
        shared = m["others_share"] >= 0.10
        parts.append(
            f"- other processes used {m['others_cpu_s']:,.0f} CPU-seconds during the run, "
            f"{m['others_share']:.0%} of the cores' capacity: "
            + ("other jobs SHARED the cores, so figures are lower bounds on this machine."
               if shared else "the cores were essentially this run's.")
        )
    parts.append("")
    if res["stages"]:
        parts += [
            f"## Stage speeds (n = {ps.STAGE_N[quick]:,} candles)\n",
            "Synthetic daily bars, 2,500 a symbol. kmeans: "
            + ("K=64, 10 Lloyd iterations (quick)." if quick else "default K=512.")
            + " Training: default TrainConfig model on CPU, tokens/s over timed steps "
            "(benchmarks/train_speed.py).\n",
            stage_table(res["stages"], quick),
        ]
    if res["slopes"]:
        top = max(ps.FULL_SIZES)
        capped = [f"{ps.STAGES[s]} (up to {_n(c)})" for s, c in ps.FULL_CAP.items() if c < top]
        parts += [
            "## Scaling (candles/s at each n)\n",
            "slope = least-squares slope of log(time) on log(n); 1 means a flat cost per "
            "candle, below 1 means fixed costs still matter at small n. Training is not "
            "scaled: one step costs the same whatever the dataset size.",
            "kmeans fit is not expected to be linear: its cost is bounded by design "
            "(k-means++ on a 50k sample, at most 1,000 mini-batch steps above 200k "
            "candles, Lloyd below), so only its final assignment pass grows with n. "
            "Sizes up to 10^5 are the best of 3 runs, larger ones the best of 2 (kmeans "
            "fit: one run).",
            "" if quick else
            "Stages capped below 10^7 (time budget): " + (", ".join(capped) or
                                                          "none, every stage ran at 10^7."),
            "",
            scaling_table(res["stages"], res["slopes"]),
        ]
    if res["references"]:
        parts += [
            "## candletok vs reference encoders (same process, same fitted bins)\n",
            "pandas: `pd.cut` per feature (features -> tokens) and groupby shift/EWM + "
            "`pd.cut` (bars -> tokens); naive: one Python loop per candle, timed on a "
            "subset of whole series. Every reference's tokens are asserted equal to "
            "candletok's before a ratio is reported (`benchmarks/references.py`).\n",
            reference_table(res["references"]),
        ]
    if res["quality"]:
        parts += [
            "## Tokenizer quality (bundled sample)\n",
            "Fit on 2000-2010, measured on 2011-2013 (AAPL, IBM, MSFT, GOOG); error = "
            "|ln(rebuilt/true)| in bps per O/H/L/C, each candle anchored on its true "
            "previous close; bits/candle = unigram entropy of the measured tokens. Chronos "
            "spends four tokens per candle: its bits/candle is the SUM of the four tokens' "
            "unigram entropies and its vocab column is per token. SAX: letters of the "
            "z-normalized return and log range (no open, no wick placement). See "
            "`benchmarks/quality_schemes.py`.\n",
            quality_markdown(res["quality"]),
        ]
    if res.get("live"):
        parts += [
            "## Live inference: CandleGPT with and without the KV cache\n",
            "Per-bar next-candle logits of one stream (p50/p99 over the bars) and sampled "
            "continuations, each beside a full recomputation; past the context the cache "
            "recomputes the window (learned absolute positions). See "
            "`benchmarks/live_speed.py`.\n",
            live_speed.markdown(res["live"]),
        ]
    return "\n".join(parts)


def write_outputs(res: dict[str, Any], text: str) -> list[Path]:
    """results.md and the PNG plots, each written to a temp name and renamed."""
    written = []
    if res["slopes"]:
        with atomic_path(PLOTS["scaling"]) as tmp:
            ps.plot_scaling(res["stages"], res["slopes"], tmp)
        written.append(PLOTS["scaling"])
    if res["quality"]:
        with atomic_path(PLOTS["quality"]) as tmp:
            qs.plot(res["quality"], tmp)
        written.append(PLOTS["quality"])
    write_text_atomic(RESULTS, text)
    return [RESULTS, *written]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small sizes (default)")
    mode.add_argument("--full", action="store_true", help="the docs' sizes; writes results")
    ap.add_argument("--only", nargs="+", metavar="STAGE",
                    help="sections and/or stages to run (see the module docs)")
    args = ap.parse_args(argv)
    quick = not args.full
    parse_only(args.only)  # fail before any work on a bad name
    command = "python -m benchmarks.run " + " ".join(argv if argv is not None else sys.argv[1:])
    res = run(quick, args.only, progress=lambda s: print(s, file=sys.stderr, flush=True))
    text = report(res, command.strip())
    print(text)
    if not quick and not args.only:
        for p in write_outputs(res, text):
            print(f"wrote {p}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
