"""Tokenizer quality on the bundled sample (issue: tokenizer quality target).

    python -m benchmarks.tokenizer_quality          # full table, writes results_tokenizers.md
    python -m benchmarks.tokenizer_quality --quick  # seconds

Fit on 2000-2010 bars of AAPL IBM MSFT GOOG, measure on 2011-2013. Error per candle is
|ln(rebuilt / true)| for O/H/L/C in basis points, each candle rebuilt from its TRUE
previous close (anchored). Bits per candle is the unigram entropy of the measured tokens.

The reference scheme (from the issue) is per-feature equal-mass quantile bins 5x9x5x5 on
the RAW log features (no volatility scaling): one joint token of 1,125. Target for the
defaults: median close error <= 12 bps and p95 <= 65 bps with <= 1,097 candle tokens.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from candletok.data.sample import load_sample
from candletok.tokenize.base import Tokenizer
from candletok.tokenize.bins import BinsTokenizer
from candletok.tokenize.features import FeatureConfig, candle_features, rebuild_bars
from candletok.tokenize.kmeans import KMeansTokenizer

SYMBOLS = ["AAPL", "IBM", "MSFT", "GOOG"]
CUT = pl.datetime(2011, 1, 1, time_zone="UTC")
RESULTS = Path(__file__).with_name("results_tokenizers.md")
PRICES = ("open", "high", "low", "close")


class ReferenceBins:
    """The issue's plain reference: equal-mass quantile bins on raw (unscaled) log
    features, midpoint representatives, tail medians, exact zero-wick bin."""

    def __init__(self, counts: tuple[int, int, int, int] = (5, 9, 5, 5)) -> None:
        self.counts = counts
        self.edges: list[np.ndarray] = []
        self.reps: list[np.ndarray] = []

    def fit(self, R: np.ndarray) -> ReferenceBins:
        for j, nb in enumerate(self.counts):
            x = R[:, j]
            if j >= 2:  # wick: zero bin + quantiles of the positive part
                pos = x[x > 1e-12]
                e = np.concatenate([[1e-12], np.quantile(pos, np.arange(1, nb - 1) / (nb - 1))])
            else:
                e = np.quantile(x, np.arange(1, nb) / nb)
            e = np.unique(e)
            idx = np.searchsorted(e, x, side="right")
            r = np.empty(e.size + 1)
            r[1:-1] = (e[:-1] + e[1:]) / 2
            r[0] = 0.0 if j >= 2 else float(np.median(x[idx == 0]))
            r[-1] = float(np.median(x[idx == e.size]))
            self.edges.append(e)
            self.reps.append(r)
        return self

    def encode_decode(self, R: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        tok = np.zeros(R.shape[0], dtype=np.int64)
        D = np.empty_like(R)
        tail = np.zeros(R.shape[0], dtype=bool)
        for j, (e, r) in enumerate(zip(self.edges, self.reps, strict=True)):
            i = np.searchsorted(e, R[:, j], side="right")
            D[:, j] = r[i]
            tok = tok * (e.size + 1) + i
            tail |= (i == e.size) | ((i == 0) & (j < 2))
        return tok, D, tail

    @property
    def vocab(self) -> int:
        return int(np.prod([e.size + 1 for e in self.edges]))


def _errors(rebuilt: tuple[np.ndarray, ...], truth: pl.DataFrame) -> dict[str, np.ndarray]:
    return {c: np.abs(np.log(r / truth[c].to_numpy())) * 1e4
            for c, r in zip(PRICES, rebuilt, strict=True)}


def _row(scheme: str, vocab: int, tokens: np.ndarray, errs: dict[str, np.ndarray],
         tail: float | None) -> dict[str, Any]:
    """One table row. ``tokens`` is (n,) for one token per candle, or (n, k) for schemes
    that spend k tokens per candle: bits per candle is then the SUM of the k columns'
    unigram entropies and ``used`` counts distinct k-tuples."""
    cols = np.asarray(tokens).reshape(len(tokens), -1)
    bits = 0.0
    for col in cols.T:
        _, cnt = np.unique(col, return_counts=True)
        p = cnt / cnt.sum()
        bits += float(-(p * np.log2(p)).sum())
    used = np.unique(cols, axis=0).shape[0]
    row: dict[str, Any] = {"scheme": scheme, "vocab": vocab, "used": int(used), "bits": bits}
    for c in PRICES:
        row[f"{c[0]}_med"] = float(np.median(errs[c]))
        row[f"{c[0]}_p95"] = float(np.quantile(errs[c], 0.95))
    row["tail_share"] = tail
    return row


def measure_reference(bars: pl.DataFrame) -> dict[str, Any]:
    f = candle_features(bars, FeatureConfig())
    raw = f.with_columns([pl.col(c) * pl.col("scale") for c in ("gap", "body", "upper", "lower")])
    cols = ["gap", "body", "upper", "lower"]
    train, test = raw.filter(pl.col("ts") < CUT), raw.filter(pl.col("ts") >= CUT)
    ref = ReferenceBins().fit(train.select(cols).to_numpy())
    tok, D, tail = ref.encode_decode(test.select(cols).to_numpy())
    rebuilt = rebuild_bars(D, test["prev_close"].to_numpy(), 1.0)
    truth = test.select("symbol", "ts").join(bars, on=["symbol", "ts"], how="left")
    return _row("reference 5x9x5x5 raw quantile", ref.vocab, tok, _errors(rebuilt, truth),
                float(tail.mean()))


def measure(name: str, tok: Tokenizer, bars: pl.DataFrame) -> dict[str, Any]:
    tok.fit(bars.filter(pl.col("ts") < CUT))
    enc = tok.encode(bars).filter(pl.col("ts") >= CUT)
    dec = tok.decode(enc)
    truth = enc.select("symbol", "ts").join(bars, on=["symbol", "ts"], how="left")
    rebuilt = tuple(dec[c].to_numpy() for c in PRICES)
    t = enc["token"].to_numpy()
    tail = float(tok.tail_mask(t).any(axis=1).mean()) if isinstance(tok, BinsTokenizer) else None
    return _row(name, tok.n_candle_tokens, t, _errors(rebuilt, truth), tail)


def schemes(quick: bool) -> list[tuple[str, Tokenizer]]:
    out: list[tuple[str, Tokenizer]] = [
        ("bins default (9x13x3x3, tail_z=1.75)", BinsTokenizer()),
        ("kmeans default (K=512)" if not quick else "kmeans K=64", KMeansTokenizer()
         if not quick else KMeansTokenizer(k=64)),
    ]
    if not quick:
        out += [
            ("bins 9x13x3x3 equal-mass quantiles", BinsTokenizer(tail_z=None)),
            ("bins 5x9x5x5 scaled, tail_z=1.75", BinsTokenizer(5, 9, 5, 5)),
            ("bins 7x11x3x3, tail_z=1.75", BinsTokenizer(7, 11, 3, 3)),
            ("bins 9x13x3x3 + vol 3 (3,159)", BinsTokenizer(vol_bins=3)),
            ("kmeans K=256", KMeansTokenizer(k=256)),
            ("kmeans K=1024", KMeansTokenizer(k=1024)),
        ]
    return out


def main(quick: bool = False) -> list[dict[str, Any]]:
    bars = load_sample(SYMBOLS)
    rows = [measure_reference(bars)]
    for name, tok in schemes(quick):
        rows.append(measure(name, tok, bars))
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    head = ("| scheme | candle vocab | used | bits/candle | O med | O p95 | H med | H p95 "
            "| L med | L p95 | C med | C p95 | tail share |")
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        tail = "-" if r["tail_share"] is None else f"{r['tail_share']:.1%}"
        lines.append(
            f"| {r['scheme']} | {r['vocab']:,} | {r['used']:,} | {r['bits']:.2f} | "
            + " | ".join(f"{r[f'{c}_{q}']:.1f}" for c in "ohlc" for q in ("med", "p95"))
            + f" | {tail} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    rows = main(quick=args.quick)
    text = markdown(rows)
    print("Errors in bps (|ln(rebuilt/true)|, anchored on the true previous close); "
          "fit 2000-2010, measured 2011-2013, AAPL IBM MSFT GOOG.\n")
    print(text)
    if not args.quick:
        from candletok.core.atomic import write_text_atomic

        write_text_atomic(
            RESULTS,
            "# Tokenizer quality (bundled sample)\n\n"
            "Fit on 2000-2010, measured on 2011-2013 (AAPL, IBM, MSFT, GOOG). Error = "
            "|ln(rebuilt/true)| in bps per O/H/L/C, each candle anchored on its true previous "
            "close; bits/candle = unigram entropy of the measured tokens; tail share = "
            "candles with any feature in an open-ended tail bin (bins only). Target for the "
            "defaults: close median <= 12 bps, p95 <= 65 bps, <= 1,097 candle tokens.\n\n"
            + text,
        )
        print(f"wrote {RESULTS}")
