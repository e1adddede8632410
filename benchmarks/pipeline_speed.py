"""Speed of every pipeline stage, how it scales with the number of candles, and candletok
against naive Python and pandas reference encoders measured in the same process.

    python -m benchmarks.pipeline_speed [--quick]   # prints; benchmarks.run writes results

Stages (keys for ``--only``), each timed on synthetic daily bars (2,500 bars a symbol, the
symbol count grows with n; ``candletok.data.synthetic``):

- ``load_csv`` / ``load_parquet``: ``load_bars(path)`` on a file written to a temp dir
  (read, canonicalize, repair + strict validation);
- ``features``: ``candle_features``;
- ``bins_encode``: ``BinsTokenizer.encode`` (features + assignment) on fitted edges;
- ``kmeans_fit`` / ``kmeans_assign``: ``KMeansTokenizer.fit`` and ``.encode``. The fit's
  cost is bounded by design (k-means++ on a 50k sample, capped mini-batch steps), so its
  time is *not* expected to grow like n;
- ``shard_write``: ``build_dataset`` with the vocabulary given and bars served from memory
  (staging, split, encode, shards, index arrays, manifest);
- ``dataset_read``: open a ``TokenDataset`` (sha256 verified) and read every train window
  once with the vectorized ``.batch``;
- ``train_step``: optimizer steps of the default ``TrainConfig`` model on CPU, timed by
  :mod:`benchmarks.train_speed` (tokens/s, warm-up excluded). One step's cost depends on
  the batch, not on the dataset, so this stage is timed once, not scaled.

Why peak memory twice: ``peak`` is the process RSS high-water mark during the call (it
includes the bars already held), ``+during`` is that peak minus the RSS just before.
"""

from __future__ import annotations

import argparse
import gc
import math
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from benchmarks._util import Measured, measure
from benchmarks.references import (
    naive_bins,
    naive_encode_bins,
    pandas_bins,
    pandas_encode_bins,
)
from candletok.data.sources import load_bars
from candletok.data.synthetic import synthetic_bars
from candletok.dataset.build import build_dataset
from candletok.dataset.torchdata import TokenDataset
from candletok.tokenize.bins import BinsTokenizer
from candletok.tokenize.features import candle_features
from candletok.tokenize.kmeans import KMeansTokenizer

BARS_PER_SYMBOL = 2_500
STAGES: dict[str, str] = {
    "load_csv": "load + validate CSV",
    "load_parquet": "load + validate Parquet",
    "features": "candle features",
    "bins_encode": "bins encode",
    "kmeans_fit": "kmeans fit",
    "kmeans_assign": "kmeans assign (encode)",
    "shard_write": "shard write (build_dataset)",
    "dataset_read": "TokenDataset read (all windows)",
    "train_step": "training steps (CandleGPT default)",
}
SCALED = tuple(s for s in STAGES if s != "train_step")
FULL_SIZES = (10_000, 30_000, 100_000, 300_000, 1_000_000, 3_000_000, 10_000_000)
QUICK_SIZES = (10_000, 30_000, 100_000)
# Largest n each stage runs at in full mode (the run must fit ~25 min on 2 cores). Every
# stage fits: the full run measured ~8 min, kmeans fit at 10^7 being the longest call.
FULL_CAP: dict[str, int] = {s: 10_000_000 for s in SCALED}
STAGE_N = {True: 100_000, False: 1_000_000}  # size of the stage table (quick, full)


def kmeans_for(quick: bool) -> KMeansTokenizer:
    """The default K=512 in full mode; K=64 with 10 Lloyd iterations in quick mode."""
    return KMeansTokenizer(k=64, max_iter=10) if quick else KMeansTokenizer()


def bars_of(n: int, seed: int = 0) -> pl.DataFrame:
    """n synthetic daily candles, ``BARS_PER_SYMBOL`` a symbol."""
    n_sym = max(1, math.ceil(n / BARS_PER_SYMBOL))
    syms = [f"S{i:05d}" for i in range(n_sym)]
    return synthetic_bars(syms, n_bars=BARS_PER_SYMBOL, interval="1d", seed=seed).head(n)


def read_all_windows(root: Path, batch: int = 512) -> int:
    """Open the train split and fetch every window once; returns the candles read."""
    ds = TokenDataset(root, "train", context=128)
    for s in range(0, len(ds), batch):
        ds.batch(np.arange(s, min(s + batch, len(ds))))
    return ds.n_targets()


def _row(stage: str, n: int, m: Measured, count: int, unit: str = "candles/s",
         note: str = "") -> dict[str, Any]:
    return {"stage": stage, "label": STAGES[stage], "n": n, "count": count,
            "seconds": m.seconds, "per_s": count / m.seconds if m.seconds > 0 else math.inf,
            "unit": unit, "peak_rss_mib": m.peak_rss_mib, "delta_rss_mib": m.delta_rss_mib,
            "note": note}


def run_size(n: int, stages: Sequence[str], quick: bool, work: Path,
             keep_dataset: bool = False) -> tuple[list[dict[str, Any]], Path | None]:
    """Time the scaled ``stages`` at n candles. Prerequisites of a stage that is not asked
    for (a fitted vocabulary, a dataset to read) are built untimed. Returns the rows and,
    with ``keep_dataset``, the dataset folder."""
    bars = bars_of(n)
    rep = 3 if n <= 100_000 else 2  # best of several: other jobs share the two cores
    rows: list[dict[str, Any]] = []

    def timed(stage: str, fn: Callable[[], Any], count: int | None = None,
              repeat: int = rep) -> Any:
        m = measure(fn, repeat=repeat)
        rows.append(_row(stage, n, m, count if count is not None else n))
        return m.value

    for stage, ext in (("load_csv", "csv"), ("load_parquet", "parquet")):
        if stage in stages:
            path = work / f"bars-{n}.{ext}"
            (bars.write_csv if ext == "csv" else bars.write_parquet)(path)
            got = timed(stage, lambda p=path: load_bars([], source=str(p)))
            assert got.height == n, f"{stage} read {got.height} of {n} bars"
            path.unlink()
            del got
    if "features" in stages:
        timed("features", lambda: candle_features(bars))
    bins = BinsTokenizer().fit(bars) if {"bins_encode", "shard_write", "dataset_read"} & set(
        stages) else None
    if "bins_encode" in stages and bins is not None:
        timed("bins_encode", lambda: bins.encode(bars))
    if {"kmeans_fit", "kmeans_assign"} & set(stages):
        km = kmeans_for(quick)
        if "kmeans_fit" in stages:
            timed("kmeans_fit", lambda: km.fit(bars), repeat=1)
        else:
            km.fit(bars)
        if "kmeans_assign" in stages:
            timed("kmeans_assign", lambda: km.encode(bars))
    root: Path | None = None
    if {"shard_write", "dataset_read"} & set(stages) or keep_dataset:
        tok = bins or BinsTokenizer().fit(bars)
        parts = bars.partition_by("symbol", as_dict=True)
        syms = bars["symbol"].unique(maintain_order=True).to_list()

        def loader(group: list[str], **_: Any) -> pl.DataFrame:
            return pl.concat([parts[(s,)] for s in group])

        root = work / f"ds-{n}"

        def build() -> Any:
            return build_dataset(syms, root, vocab=tok, loader=loader, group_size=100,
                                 overwrite=True)

        if "shard_write" in stages:
            res = timed("shard_write", build, count=n - len(syms))
        else:
            res = build()
        assert sum(s.candles for s in res.stats) == n - len(syms)
        if "dataset_read" in stages:
            candles = read_all_windows(root)  # warm the page cache once, as a reader would
            timed("dataset_read", lambda: read_all_windows(root), count=candles)
    if root is not None and not keep_dataset:
        shutil.rmtree(root, ignore_errors=True)
        root = None
    return rows, root


def bench_train(steps: int) -> dict[str, Any]:
    """Default-config training steps on CPU, timed by :mod:`benchmarks.train_speed` (warm-up
    steps excluded; tokens are random, which does not change the cost of a step)."""
    from benchmarks.train_speed import bench
    from candletok.model.train import TrainConfig

    m = measure(lambda: bench(TrainConfig(), "cpu", steps))
    r = m.value
    tokens = round(r["tokens_per_s"] * r["step_ms"] * steps / 1000)
    row = _row("train_step", 0, m, tokens, unit="tokens/s",
               note=f"{r['config']}, {r['params']:,} params, {r['threads']} threads, "
                    f"{steps} steps of {r['step_ms']:.0f} ms, data wait "
                    f"{r['data_wait_share']:.1%} (benchmarks/train_speed.py)")
    row["seconds"] = r["step_ms"] * steps / 1000
    row["per_s"] = r["tokens_per_s"]
    return row


def loader_row(root: Path, n: int, batches: int) -> dict[str, Any]:
    """The DataLoader figure from :mod:`benchmarks.dataset_speed` (batch 64, ctx 128)."""
    from benchmarks.dataset_speed import bench_loader

    r = bench_loader(root, batches, workers=0)
    return {"stage": "dataset_read", "label": r["stage"], "n": n, "count": r["candles"],
            "seconds": r["seconds"], "per_s": r["per_s"], "unit": r["unit"],
            "peak_rss_mib": r["peak_rss_mib"], "delta_rss_mib": float("nan"),
            "note": f"{batches} random batches"}


def run_scaling(quick: bool, stages: Sequence[str] = tuple(STAGES), scaling: bool = True,
                progress: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Every selected stage at every size (capped per stage in full mode), the DataLoader
    figure at the stage-table size, and the training stage once. Rows carry ``n``; the
    stage table is the rows at ``STAGE_N``. Without ``scaling`` only that size is run."""
    n0 = STAGE_N[quick]
    sizes = (n0,) if not scaling else QUICK_SIZES if quick else FULL_SIZES
    work = Path(tempfile.mkdtemp(prefix="candletok-pipeline-"))
    rows: list[dict[str, Any]] = []
    try:
        for n in sizes:
            todo = [s for s in SCALED if s in stages and (quick or n <= FULL_CAP[s])]
            want_loader = n == n0 and "dataset_read" in stages
            if not todo:
                continue
            progress(f"  n={n:,}: {', '.join(todo)}")
            got, root = run_size(n, todo, quick, work, keep_dataset=want_loader)
            gc.collect()  # the bars of this size go before the next size is made
            rows += got
            if want_loader and root is not None:
                rows.append(loader_row(root, n, 20 if quick else 300))
                shutil.rmtree(root, ignore_errors=True)
        if "train_step" in stages:
            progress("  training steps")
            rows.append(bench_train(4 if quick else 40))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def slopes(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Least-squares slope of log(time) on log(n) per scaled stage, over all sizes and over
    the top decade (where fixed costs no longer hide the per-candle cost)."""
    out = []
    for stage in SCALED:
        pts = sorted((r["n"], r["seconds"]) for r in rows
                     if r["stage"] == stage and r["label"] == STAGES[stage])
        if len(pts) < 2:
            continue
        n, t = (np.log(np.array(v, dtype=float)) for v in zip(*pts, strict=True))
        top = n >= n.max() - math.log(10) - 1e-9
        out.append({
            "stage": stage, "label": STAGES[stage], "sizes": len(pts),
            "n_min": pts[0][0], "n_max": pts[-1][0],
            "slope": float(np.polyfit(n, t, 1)[0]),
            "slope_top": float(np.polyfit(n[top], t[top], 1)[0]) if top.sum() >= 2 else math.nan,
            "ns_per_candle_max": pts[-1][1] / pts[-1][0] * 1e9,
        })
    return out


def compare_references(quick: bool) -> list[dict[str, Any]]:
    """candletok, pandas and naive per-row Python bins encoders on the same fitted edges,
    in this process: tokens asserted equal, then each reference's speed and the ratio
    candletok / reference. The naive loop is timed on a subset of whole series and
    extrapolated per candle (on all n it would take minutes)."""
    n, n_naive = (100_000, 20_000) if quick else (1_000_000, 200_000)
    bars = bars_of(n, seed=1)
    tok = BinsTokenizer().fit(bars)
    _, X = tok.feature_matrix(bars)
    sub_bars = bars.head(n_naive)
    rows: list[dict[str, Any]] = []
    levels = (
        ("features -> tokens", lambda: tok.encode_features(X),
         lambda: pandas_bins(tok, X), lambda: naive_bins(tok, X[: n_naive - 1]), X.shape[0]),
        ("bars -> tokens", lambda: tok.encode(bars)["token"].to_numpy(),
         lambda: pandas_encode_bins(tok, bars), lambda: naive_encode_bins(tok, sub_bars),
         X.shape[0]),
    )
    for level, ct_fn, pd_fn, naive_fn, count in levels:
        ct = measure(ct_fn, repeat=3)
        pdm = measure(pd_fn, repeat=2)
        naive_fn()  # warm-up: the first pass of a Python loop pays for allocator arenas
        nv = measure(naive_fn)
        ref = np.asarray(ct.value, dtype=np.int64)
        naive_toks = np.asarray(nv.value, dtype=np.int64)
        pd_toks = np.asarray(pdm.value, dtype=np.int64)
        if level == "bars -> tokens":
            want_naive = tok.encode(sub_bars)["token"].to_numpy().astype(np.int64)
        else:
            want_naive = ref[: naive_toks.size]
        assert np.array_equal(pd_toks, ref), f"pandas {level} disagrees with candletok"
        assert np.array_equal(naive_toks, want_naive), f"naive {level} disagrees with candletok"
        ct_rate = count / ct.seconds
        for impl, m, c in (("candletok", ct, count), ("pandas", pdm, count),
                           ("naive Python", nv, naive_toks.size)):
            rate = c / m.seconds
            rows.append({"level": level, "impl": impl, "candles": c, "seconds": m.seconds,
                         "per_s": rate, "ratio": ct_rate / rate,
                         "peak_rss_mib": m.peak_rss_mib,
                         "checked": int(ref.size if impl != "naive Python" else c),
                         "agree": True})
    return rows


def plot_scaling(rows: list[dict[str, Any]], fits: list[dict[str, Any]], path: Path) -> None:
    """log-log time vs n per stage, with a slope-1 guide through each stage's last point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    slope = {f["stage"]: f["slope"] for f in fits}
    fig, ax = plt.subplots(figsize=(8.5, 5.5))
    for stage in SCALED:
        pts = sorted((r["n"], r["seconds"]) for r in rows
                     if r["stage"] == stage and r["label"] == STAGES[stage])
        if len(pts) < 2:
            continue
        xs, ys = zip(*pts, strict=True)
        (line,) = ax.plot(xs, ys, marker="o", label=f"{STAGES[stage]} (slope {slope[stage]:.2f})")
        guide = np.array([xs[0], xs[-1]], dtype=float)
        ax.plot(guide, ys[-1] * guide / xs[-1], ls=":", lw=0.8, color=line.get_color())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("candles")
    ax.set_ylabel("seconds")
    ax.set_title("Stage time vs candles (dotted: slope 1 = flat cost per candle)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def main(quick: bool = False) -> list[dict[str, Any]]:
    """Stage rows at every size (training once) followed by the reference rows."""
    return run_scaling(quick) + compare_references(quick)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    quick = ap.parse_args().quick
    rows = run_scaling(quick)
    for r in rows:
        print(f"{r['label']:<40} n={r['n']:>10,} {r['per_s']:>14,.0f} {r['unit']:<10}"
              f" peak {r['peak_rss_mib']:7.0f} MiB")
    for f in slopes(rows):
        print(f"{f['label']:<40} slope {f['slope']:.2f} (top decade {f['slope_top']:.2f})")
    for r in compare_references(quick):
        print(f"{r['level']:<20} {r['impl']:<14} {r['per_s']:>14,.0f} candles/s "
              f"candletok x{r['ratio']:,.1f}")
