"""Pattern search benchmark (issue 13): candletok's index side by side with what a user
would otherwise use, on one synthetic dataset, in one run.

    python -m benchmarks.search_speed                        # quick: 200k candles
    python -m benchmarks.search_speed --candles 10000000     # the issue's size
    python -m benchmarks.search_speed --candles 2000000 --no-hnsw

Rows: the index build (from the dataset folder, Parquet read included, and in memory),
its memory, an exact N-gram query, the exact nearest query at N = 5, 10, 20, the same
nearest query by plain numpy brute force, ``stumpy.mass`` (1-D, on log returns), faiss
``IndexFlatL2`` over materialized windows (build + query) and faiss HNSW with its recall.
Query times are medians over ``--queries`` random queries (symbol and date drawn at
random; the same queries for every method). The folder build and ``similar()`` end to
end are timed beside the paths they replaced (issue 25, ``benchmarks/_old_search.py``):
the base rate as a pass over every window, the shards read one by one and gathered row
by row, the saved arrays hashed with sha256. Targets (issue 13): build >= 10M candles/s,
exact <= 1 ms, nearest <= 100 ms at N = 5 growing no faster than linearly in N, index
memory <= 1.5 GiB for 10M candles.
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from benchmarks._old_search import old_base_rate, old_build
from benchmarks._util import machine, measure
from candletok.data.synthetic import synthetic_bars
from candletok.dataset.build import build_dataset
from candletok.dataset.manifest import open_dataset
from candletok.search.grams import ranges_to_indices
from candletok.search.index import ARRAYS, SearchIndex, index_dir, open_index, read_series
from candletok.search.nearest import (
    brute_force,
    feature_weights,
    full_scan,
    nearest,
    query_costs,
    token_features,
)
from candletok.search.similar import similar
from candletok.search.timerule import Cut, TimeRule, thin_by_distance, thin_chronological

BARS_PER_SYMBOL = 10_000
K = 20  # neighbours per query
HORIZONS = (1, 5, 10)


def make_dataset(candles: int, work: Path) -> Path:
    """A dataset folder of about ``candles`` synthetic daily candles (default bins vocab)."""
    per = min(BARS_PER_SYMBOL, max(100, candles))
    syms = [f"S{i:05d}" for i in range(max(1, math.ceil(candles / per)))]

    def loader(symbols: list[str], **_: Any) -> pl.DataFrame:
        return synthetic_bars(symbols, n_bars=per + 1, seed=0)

    out = work / "ds"
    build_dataset(syms, out, loader=loader, group_size=100, overwrite=True)
    return out


def draw_queries(idx: SearchIndex, n: int, seed: int = 0) -> list[tuple[int, int]]:
    """(series, last position) of random queries in the later 80% of each series."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s = int(rng.integers(0, len(idx.symbols)))
        a, b = int(idx.starts[s]), int(idx.starts[s + 1])
        out.append((s, int(rng.integers(a + (b - a) // 5, b))))
    return out


def median_ms(fn: Callable[[tuple[int, int]], Any], queries: list[tuple[int, int]]) -> float:
    times = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def rule_for(idx: SearchIndex, q: tuple[int, int], n: int) -> TimeRule:
    return TimeRule(int(idx.ts[q[1]]), n, HORIZONS, q[0], q[1])


def row(what: str, value: str, target: str = "", met: bool | None = None,
        note: str = "") -> dict[str, str]:
    return {"what": what, "value": value, "target": target,
            "met": "" if met is None else ("yes" if met else "NO"), "note": note}


def bench_build(root: Path, repeat: int = 2) -> tuple[SearchIndex, list[dict[str, str]]]:
    old = measure(lambda: old_build(root), repeat=repeat)
    shutil.rmtree(index_dir(root), ignore_errors=True)
    first = measure(lambda: open_index(root))  # no index yet: every shard is hashed
    # a rebuild over a fresh index: shards unchanged since it verified them are not hashed
    manifest_idx = measure(lambda: open_index(root, rebuild=True), repeat=repeat)
    idx = manifest_idx.value
    n = idx.n
    _, tok = open_dataset(root)
    cols = read_series(root)
    mem = measure(lambda: SearchIndex.from_arrays(radix=tok.vocab_size, tokenizer=tok, **cols))
    nbytes = sum(np.asarray(getattr(idx, a)).nbytes for a in ARRAYS)
    # derived on first use: series ids (int32), the scan's intp tokens, the pair runs
    nbytes += n * 4 + n * np.dtype(np.intp).itemsize + (idx.radix**2 + 1) * 8
    gib = nbytes / 2**30
    return idx, [
        row("index build, from the folder, first (sha256 of every shard + read + sort + "
            "save)", f"{n / first.seconds / 1e6:.1f}M candles/s", ">= 10M candles/s",
            n / first.seconds >= 10e6, f"{first.seconds:.2f} s for {n:,}"),
        row("index build, from the folder, rebuild (unchanged shards not re-hashed; "
            "Parquet read + sort + save)",
            f"{n / manifest_idx.seconds / 1e6:.1f}M candles/s", ">= 10M candles/s",
            n / manifest_idx.seconds >= 10e6,
            f"{manifest_idx.seconds:.2f} s for {n:,}; before issue 25: "
            f"{n / old.seconds / 1e6:.1f}M candles/s ({old.seconds:.2f} s), "
            f"{old.seconds / manifest_idx.seconds:.1f}x slower"),
        row("index build, in memory (keys + sort)", f"{n / mem.seconds / 1e6:.1f}M candles/s",
            ">= 10M candles/s", n / mem.seconds >= 10e6, f"{mem.seconds:.2f} s"),
        row("index memory (arrays)", f"{gib * 1024:.0f} MiB",
            "<= 1.5 GiB at 10M", gib * 1e7 / max(n, 1) <= 1.5,
            f"{nbytes / max(n, 1):.0f} B/candle with derived arrays; build peak RSS "
            f"+{mem.delta_rss_mib:.0f} MiB"),
    ]


def bench_queries(idx: SearchIndex, queries: list[tuple[int, int]]) -> tuple[
        list[dict[str, str]], dict[int, float]]:
    tok = idx.tokenizer()
    rows = []

    def exact(q: tuple[int, int]) -> np.ndarray:
        r = rule_for(idx, q, 5)
        cut = Cut.of(idx, r)
        e = idx.suffix_positions(np.asarray(idx.tokens[q[1] - 4 : q[1] + 1]))
        return thin_chronological(idx, e[cut.eligible(e)], r.zone)

    exact(queries[0])
    ms = median_ms(exact, queries)
    rows.append(row("exact 5-gram query (lookup + time rule + thinning)", f"{ms:.3f} ms",
                    "<= 1 ms", ms <= 1.0))
    near_ms: dict[int, float] = {}
    scan_ms: dict[int, float] = {}
    few = queries[: max(1, len(queries) // 4)]
    for n in (5, 10, 20):
        def costs(q: tuple[int, int], n: int = n) -> tuple[Cut, np.ndarray]:
            cut = Cut.of(idx, rule_for(idx, q, n))
            return cut, query_costs(tok, tok.decode_features(idx.tokens[q[1] - n + 1 : q[1]
                                                                        + 1]))

        near_ms[n] = median_ms(lambda q, f=costs: nearest(idx, *f(q), K), queries)
        scan_ms[n] = median_ms(lambda q, f=costs: full_scan(idx, *f(q), K), few)
        linear = scan_ms[n] <= scan_ms[5] * n / 5 * 1.5 and near_ms[n] <= scan_ms[n] * 1.5
        rows.append(row(f"nearest, exact, N={n}, k={K} (candletok)", f"{near_ms[n]:.1f} ms",
                        "<= 100 ms at N=5" if n == 5 else "no faster than linear in N",
                        near_ms[n] <= 100 if n == 5 else linear,
                        f"forced full scan {scan_ms[n]:.1f} ms"))

    def brute(q: tuple[int, int]) -> Any:
        cut = Cut.of(idx, rule_for(idx, q, 5))
        return brute_force(idx, tok, tok.decode_features(idx.tokens[q[1] - 4 : q[1] + 1]), cut, K)

    ms_b = median_ms(brute, few)
    same = all(
        np.array_equal(brute(q).e, nearest(idx, Cut.of(idx, rule_for(idx, q, 5)),
                                           query_costs(tok, tok.decode_features(
                                               idx.tokens[q[1] - 4 : q[1] + 1])), K).e)
        for q in few)
    rows.append(row("nearest N=5 by numpy brute force (every window)", f"{ms_b:.1f} ms",
                    note=f"same answer as candletok: {'yes' if same else 'NO'}; "
                         f"candletok {ms_b / near_ms[5]:.0f}x faster"))

    def full(q: tuple[int, int], mode: str, alphabet: str = "coarse") -> Any:
        at = pl.Series([int(idx.ts[q[1]])]).cast(pl.Datetime("us", "UTC")).to_list()[0]
        return similar(idx, idx.symbols[q[0]], last=5, mode=mode, top=K, at=at, min_matches=0,
                       alphabet=alphabet)

    from candletok.search.alphabet import COARSE, alphabet_index

    t0 = time.perf_counter()
    alphabet_index(idx, COARSE)  # once per index (then cached beside it)
    rows.append(row("coarse alphabet: symbols + n-gram array, once per index",
                    f"{time.perf_counter() - t0:.2f} s",
                    note="exact mode's and motifs' default; cached under _index/search"))
    t0 = time.perf_counter()
    full(queries[0], "exact")  # builds (or loads) the base-rate tables: once per index
    first = time.perf_counter() - t0
    rows.append(row("base-rate tables, first use (3 horizons, built and saved once)",
                    f"{first:.2f} s", note="later calls and processes read them"))
    for mode, alphabet in (("exact", "coarse"), ("exact", "tokens"), ("nearest", "coarse")):
        ms_s = median_ms(lambda q, m=mode, a=alphabet: full(q, m, a), few)
        with old_base_rate():
            ms_o = median_ms(lambda q, m=mode, a=alphabet: full(q, m, a), few)
        what = f"{mode}, {alphabet}" if mode == "exact" else mode
        rows.append(row(f"similar() end to end, {what}, N=5 (+ base rate, outcomes)",
                        f"{ms_s:.1f} ms", "<= 100 ms warm", ms_s <= 100,
                        f"base rate as a pass over every window (before issue 25): "
                        f"{ms_o:.0f} ms, {ms_o / ms_s:.0f}x slower"))
    return rows, near_ms


def bench_stumpy(idx: SearchIndex, queries: list[tuple[int, int]]) -> list[dict[str, str]]:
    try:
        import stumpy
    except ImportError:
        return [row("stumpy.mass", "not installed", note="pip install 'candletok[search]'")]
    r = np.log(np.asarray(idx.close) / np.asarray(idx.prev_close))
    few = queries[: max(1, len(queries) // 4)]
    stumpy.mass(r[:5].copy(), r[:1000].copy())  # numba compilation, not timed
    ms = median_ms(lambda q: stumpy.mass(r[q[1] - 4 : q[1] + 1].copy(), r), few)
    return [row("stumpy.mass, N=5, 1-D log returns (no time rule)", f"{ms:.1f} ms",
                note="z-normalized 1-D distance profile only; no outcomes")]


def windows_matrix(idx: SearchIndex, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every full window's weighted features as float32 rows (what faiss indexes)."""
    tok = idx.tokenizer()
    F = token_features(tok).astype(np.float32)
    starts = np.asarray(idx.starts)
    ends = ranges_to_indices(starts[:-1] + n - 1, starts[1:])
    X = np.empty((ends.size, n * F.shape[1]), dtype=np.float32)
    toks = np.asarray(idx.tokens).astype(np.int64)
    for lag in range(n):
        j = n - 1 - lag
        X[:, j * F.shape[1] : (j + 1) * F.shape[1]] = F[toks[ends - lag]]
    X[~np.isfinite(X)] = 1e6  # windows with a special token: far from everything
    return ends, X


def bench_faiss(idx: SearchIndex, queries: list[tuple[int, int]], hnsw_max: int
                ) -> list[dict[str, str]]:
    try:
        import faiss
    except ImportError:
        return [row("faiss", "not installed", note="pip install 'candletok[search]'")]
    tok = idx.tokenizer()
    w = feature_weights(tok)
    n = 5
    build = measure(lambda: _flat(faiss, idx, n))
    ends, X, index = build.value
    few = queries[: max(1, len(queries) // 4)]
    M = K * (2 * (n + max(HORIZONS)) - 1)

    def query(q: tuple[int, int]) -> np.ndarray:
        cut = Cut.of(idx, rule_for(idx, q, n))
        qv = (tok.decode_features(idx.tokens[q[1] - n + 1 : q[1] + 1]) * w).astype(
            np.float32).reshape(1, -1)
        want = M
        while True:  # widen until M eligible windows come back (the time rule filters)
            d, i = index.search(qv, min(want, ends.size))
            e = ends[i[0]]
            ok = cut.eligible(e)
            if ok.sum() >= M or want >= ends.size:
                break
            want *= 4
        e, d = e[ok], np.round(d[0][ok].astype(np.float64), 4)
        return e[thin_by_distance(e, d, idx.sid[e], n + max(HORIZONS), K)]

    ms = median_ms(query, few)
    agree = []
    for q in few:
        cut = Cut.of(idx, rule_for(idx, q, n))
        exact = nearest(idx, cut, query_costs(tok, tok.decode_features(
            idx.tokens[q[1] - n + 1 : q[1] + 1])), K).e
        agree.append(len(set(exact.tolist()) & set(query(q).tolist())) / max(1, exact.size))
    rows = [row("faiss IndexFlatL2 build (materialize N=5 windows + add)",
                f"{build.seconds:.2f} s", note=f"{X.nbytes / 2**20:.0f} MiB of float32 windows"),
            row("faiss IndexFlatL2 query, N=5 (+ time rule, thinning)", f"{ms:.1f} ms",
                note=f"overlap with candletok's exact answer {np.mean(agree):.0%} (float32)")]
    rows += _hnsw(faiss, X[:hnsw_max], hnsw_max) if hnsw_max else []
    return rows


def _flat(faiss: Any, idx: SearchIndex, n: int) -> tuple[np.ndarray, np.ndarray, Any]:
    ends, X = windows_matrix(idx, n)
    index = faiss.IndexFlatL2(X.shape[1])
    index.add(X)
    return ends, X, index


def _hnsw(faiss: Any, X: np.ndarray, cap: int) -> list[dict[str, str]]:
    """HNSW (approximate) on up to ``cap`` windows: build time, query time and recall@K
    of the raw K nearest against exact flat search."""
    from candletok.search.vectors import FaissIndex, NumpyFlatIndex

    build = measure(lambda: FaissIndex(X, kind="hnsw"))
    hnsw = build.value
    rng = np.random.default_rng(1)
    qs = X[rng.integers(0, X.shape[0], 20)] + rng.normal(0, 0.05, (20, X.shape[1])).astype(
        np.float32)
    flat = NumpyFlatIndex(X)
    t0 = time.perf_counter()
    _, approx = hnsw.search_batch(qs, K)
    ms = 1e3 * (time.perf_counter() - t0) / len(qs)
    recall = np.mean([len(set(a.tolist()) & set(flat.search(q, K).indices.tolist())) / K
                      for a, q in zip(approx, qs, strict=True)])
    return [row(f"faiss HNSW (M=32) on {X.shape[0]:,} windows: build", f"{build.seconds:.1f} s"),
            row("faiss HNSW query (approximate)", f"{ms:.2f} ms",
                note=f"recall@{K} {recall:.1%} vs exact; the numpy flat index stays default")]


def bench_learned(idx: SearchIndex, root: Path, queries: list[tuple[int, int]],
                  near_ms: dict[int, float]) -> list[dict[str, str]]:
    """The learned mode (issue 23): a search model trained for one epoch (its training
    time beside), the embedding pass over every window, and the exact query (time rule,
    one float32 product over every vector, thinning) next to the nearest mode's."""
    import torch

    from candletok.search.embed import window_ends
    from candletok.search.retrieval import index_inputs, learned_vectors, load_search_model
    from candletok.search.retrieval_train import SearchTrainConfig, train_search
    from candletok.search.vectors import dot_search

    torch.set_num_threads(1)
    tok = idx.tokenizer()
    t0 = time.perf_counter()
    res = train_search(root, root / "m.pt", SearchTrainConfig(epochs=1, calendar="off",
                                                              embed="hidden", val_queries=500))
    train_s = time.perf_counter() - t0
    sm = load_search_model(root / "m.pt")
    ends = window_ends(idx, sm.window)
    t0 = time.perf_counter()
    sm.embed(index_inputs(idx, tok, sm, ends))
    embed_s = time.perf_counter() - t0
    wps = ends.size / embed_s
    ends, vecs, sq = learned_vectors(idx, tok, sm)
    pos = np.searchsorted(ends, [q[1] for q in queries])

    def query(i_q: tuple[int, tuple[int, int]]) -> np.ndarray:
        i, q = i_q
        rule = rule_for(idx, q, sm.window)
        a, b = Cut.of(idx, rule).eligible_ranges(ends)  # what the learned mode runs
        r = dot_search(vecs, sq, vecs[min(pos[i], ends.size - 1)], K * (2 * rule.zone - 1),
                       ranges=(a, b))
        e = ends[r.indices]
        return e[thin_by_distance(e, r.scores, idx.sid[e], rule.zone, K)]

    ms = median_ms(query, list(enumerate(queries)))
    few = queries[: max(3, len(queries) // 4)]

    def full(q: tuple[int, int]) -> Any:
        at = pl.Series([int(idx.ts[q[1]])]).cast(pl.Datetime("us", "UTC")).to_list()[0]
        return similar(idx, idx.symbols[q[0]], last=5, mode="learned", top=K, at=at,
                       model=root / "m.pt")

    ms_s = median_ms(full, few)
    return [
        row("learned: train-search, 1 epoch, 1 candidate", f"{train_s:.1f} s",
            note=f"{res.model.facts['trained_on']['train_windows']:,} train windows"),
        row("learned: embedding pass over every window", f"{wps:,.0f} windows/s",
            ">= 100k windows/s", wps >= 100_000, f"{ends.size:,} windows in {embed_s:.2f} s"),
        row(f"learned: query, exact, N=5, k={K} (time rule + search + thinning)",
            f"{ms:.1f} ms", "<= 50 ms at 1M", ms <= 50 if idx.n >= 1_000_000 else None,
            f"nearest N=5: {near_ms[5]:.1f} ms"),
        row("similar() end to end, learned, N=5 (+ base rate, outcomes)", f"{ms_s:.0f} ms")]


def main(argv: list[str] | None = None) -> list[dict[str, str]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candles", type=int, default=200_000, help="dataset size (10M: issue)")
    ap.add_argument("--queries", type=int, default=20, help="random queries per method")
    ap.add_argument("--hnsw-max", type=int, default=50_000, help="windows for HNSW (0: off)")
    ap.add_argument("--no-faiss", action="store_true")
    ap.add_argument("--no-stumpy", action="store_true")
    ap.add_argument("--no-learned", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="candletok-search-bench-") as tmp:
        t0 = time.perf_counter()
        root = make_dataset(args.candles, Path(tmp))
        made = time.perf_counter() - t0
        idx, rows = bench_build(root)
        queries = draw_queries(idx, args.queries)
        qrows, near_ms = bench_queries(idx, queries)
        rows += qrows
        if not args.no_learned:
            rows += bench_learned(idx, root, queries, near_ms)
        if not args.no_stumpy:
            rows += bench_stumpy(idx, queries)
        if not args.no_faiss:
            rows += bench_faiss(idx, queries, args.hnsw_max)
    print(f"# pattern search, {idx.n:,} synthetic candles ({len(idx.symbols)} symbols, "
          f"vocab {idx.radix}); dataset made in {made:.1f} s")
    print(f"# {machine()}")
    print("| what | value | target | met | note |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['what']} | {r['value']} | {r['target']} | {r['met']} | {r['note']} |")
    return rows


if __name__ == "__main__":
    main()
