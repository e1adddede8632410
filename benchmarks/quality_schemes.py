"""Tokenizer quality against two outside reference schemes, and the five-scheme table.

    python -m benchmarks.quality_schemes [--quick]     # prints the table

Same protocol as :mod:`benchmarks.tokenizer_quality` (whose row and error helpers this
reuses): bundled sample AAPL IBM MSFT GOOG, anything fitted on 2000-2010, measured on
2011-2013, error = |ln(rebuilt/true)| in bps per O/H/L/C with every candle rebuilt from
its TRUE previous close/context (anchored), bits per candle = unigram entropy of the
measured tokens. The five schemes, each at several sizes so the plot shows a curve:

1. ``bins`` (candletok) at several bin counts;
2. ``kmeans`` (candletok) at several K;
3. raw-quantile reference (``tokenizer_quality.ReferenceBins``: equal-mass bins of the
   unscaled log features);
4. :class:`ChronosBins` -- Chronos-style mean scaling + uniform bins, one token for each of
   O, H, L and C (four tokens per candle; its bits per candle is the SUM of the four
   tokens' unigram entropies, i.e. what a per-token unigram code would spend on a candle);
5. :class:`SaxLetters` -- a per-candle SAX analogue (see its docstring).
"""

from __future__ import annotations

import argparse
import math
from statistics import NormalDist
from typing import Any

import numpy as np
import polars as pl

from benchmarks.tokenizer_quality import (
    CUT,
    PRICES,
    SYMBOLS,
    _errors,
    _row,
    markdown,
    measure,
    measure_reference,
)
from candletok.data.sample import load_sample
from candletok.tokenize.bins import BinsTokenizer
from candletok.tokenize.kmeans import KMeansTokenizer

FAMILIES = ("bins", "kmeans", "raw quantile", "chronos", "sax")


class ChronosBins:
    """Chronos-style tokens (Ansari et al., 2024): each series is divided by the mean
    absolute value of its context, and the scaled value is quantized into ``n_bins``
    uniform bins whose centres span [-limit, limit] (Chronos: about 4k bins on [-15, 15]);
    decoding returns the bin centre times the scale.

    Applied to candles: O, H, L and C are four series, each scaled by the mean of its own
    previous ``context`` values in the same symbol (strictly earlier bars, so the scale is
    causal, like Chronos' context window), giving four tokens per candle. Nothing is
    fitted: the bins are fixed, which is the point of the scheme."""

    def __init__(self, n_bins: int = 4093, limit: float = 15.0, context: int = 512) -> None:
        self.n_bins, self.limit, self.context = int(n_bins), float(limit), int(context)
        self.centers = np.linspace(-self.limit, self.limit, self.n_bins)
        self.edges = (self.centers[1:] + self.centers[:-1]) / 2.0

    def scales(self, bars: pl.DataFrame) -> pl.DataFrame:
        """Per-candle scale of each of O/H/L/C: mean |x| over the previous ``context``
        bars of the symbol (null on a series' first bar)."""
        return bars.select(
            "symbol", "ts",
            *[pl.col(c).abs().shift(1).rolling_mean(self.context, min_samples=1)
              .over("symbol").alias(f"s_{c}") for c in PRICES],
        )

    def encode_decode(self, bars: pl.DataFrame) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """(n, 4) tokens and the four rebuilt price arrays of ``bars`` (rows with a scale)."""
        toks, rebuilt = [], []
        for c in PRICES:
            x, s = bars[c].to_numpy(), bars[f"s_{c}"].to_numpy()
            t = np.searchsorted(self.edges, x / s, side="right")
            toks.append(t)
            rebuilt.append(np.maximum(self.centers[t] * s, 1e-12))  # a price stays positive
        return np.stack(toks, axis=1), tuple(rebuilt)


class SaxLetters:
    """A per-candle SAX analogue (Lin et al., 2003): z-normalize, then cut at the
    breakpoints that make ``alphabet`` letters equiprobable under N(0, 1).

    SAX turns a series into letters by z-normalizing it, averaging it over PAA segments
    and looking each segment mean up in the Gaussian breakpoints. A token per candle
    needs a segment of one bar, so PAA drops out (the "PAA-free" analogue). SAX is
    univariate; a candle needs at least its move and its size, so two series are
    lettered: the close-to-close log return ``ln(C/C[t-1])`` and the log of the log
    range ``ln(ln(H/L))`` (the range is positive and skewed; its log is near Gaussian,
    which is what Gaussian breakpoints assume). Each is z-normalized with its symbol's
    mean and standard deviation over the fit period; the token is the letter pair
    (``alphabet**2`` tokens).

    Decoding uses the mean of N(0, 1) inside the letter's interval, de-normalized. SAX
    carries no open and no wick placement, so the rebuilt candle opens at the previous
    close and splits the range not covered by the body equally above and below it: the
    open/high/low errors measure exactly what the scheme leaves out.
    """

    def __init__(self, alphabet: int = 8) -> None:
        self.alphabet = int(alphabet)
        nd = NormalDist()
        self.breaks = np.array([nd.inv_cdf(i / self.alphabet) for i in range(1, self.alphabet)])
        lo = np.concatenate([[-np.inf], self.breaks])
        hi = np.concatenate([self.breaks, [np.inf]])
        pdf = np.vectorize(lambda z: 0.0 if math.isinf(z) else nd.pdf(z))
        self.reps = (pdf(lo) - pdf(hi)) * self.alphabet  # E[Z | letter]; each has mass 1/a
        self.stats: pl.DataFrame | None = None

    @staticmethod
    def series(bars: pl.DataFrame) -> pl.DataFrame:
        """The two lettered series (null on a series' first bar)."""
        return bars.with_columns(
            pl.col("close").shift(1).over("symbol").alias("prev_close"),
            (pl.col("close") / pl.col("close").shift(1).over("symbol")).log().alias("r"),
            (pl.col("high") / pl.col("low")).log().clip(1e-6).log().alias("q"),
        ).filter(pl.col("prev_close").is_not_null())

    def fit(self, bars: pl.DataFrame) -> SaxLetters:
        self.stats = self.series(bars).group_by("symbol").agg(
            *[pl.col(v).mean().alias(f"mu_{v}") for v in ("r", "q")],
            *[pl.col(v).std().alias(f"sd_{v}") for v in ("r", "q")],
        )
        return self

    def encode_decode(self, bars: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray,
                                                         tuple[np.ndarray, ...]]:
        """The measured rows (``symbol, ts``), (n,) tokens and the rebuilt O/H/L/C."""
        assert self.stats is not None, "fit first"
        s = self.series(bars).join(self.stats, on="symbol", how="inner")
        letters, dec = [], {}
        for v in ("r", "q"):
            mu, sd = s[f"mu_{v}"].to_numpy(), s[f"sd_{v}"].to_numpy()
            li = np.searchsorted(self.breaks, (s[v].to_numpy() - mu) / sd, side="right")
            letters.append(li)
            dec[v] = mu + sd * self.reps[li]
        tok = letters[0] * self.alphabet + letters[1]
        pc = s["prev_close"].to_numpy()
        o, c = pc, pc * np.exp(dec["r"])
        excess = np.maximum(np.exp(dec["q"]) - np.abs(dec["r"]), 0.0) / 2.0
        h, lo = np.maximum(o, c) * np.exp(excess), np.minimum(o, c) * np.exp(-excess)
        return s.select("symbol", "ts"), tok, (o, h, lo, c)


def measure_chronos(bars: pl.DataFrame, n_bins: int) -> dict[str, Any]:
    ch = ChronosBins(n_bins)
    test = bars.join(ch.scales(bars), on=["symbol", "ts"]).filter(pl.col("ts") >= CUT)
    tok, rebuilt = ch.encode_decode(test)
    return _row(f"chronos {n_bins:,} uniform bins x4 (O/H/L/C)", n_bins, tok,
                _errors(rebuilt, test), None)


def measure_sax(bars: pl.DataFrame, alphabet: int) -> dict[str, Any]:
    sax = SaxLetters(alphabet).fit(bars.filter(pl.col("ts") < CUT))
    keys, tok, rebuilt = sax.encode_decode(bars.filter(pl.col("ts") >= CUT))
    truth = keys.join(bars, on=["symbol", "ts"], how="left")
    return _row(f"sax {alphabet} letters x (return, range)", alphabet**2, tok,
                _errors(rebuilt, truth), None)


def sizes(quick: bool) -> dict[str, list[Any]]:
    """The sizes measured per family (fewer in quick mode)."""
    if quick:
        return {"bins": [(5, 7, 3, 3), (9, 13, 3, 3)], "kmeans": [16, 64],
                "chronos": [4093], "sax": [4, 8]}
    return {"bins": [(5, 7, 3, 3), (7, 11, 3, 3), (9, 13, 3, 3), (13, 19, 4, 4),
                     (17, 25, 5, 5)],
            "kmeans": [64, 256, 512, 1024],
            "chronos": [1024, 4093, 16384],
            "sax": [4, 8, 16, 32]}


def main(quick: bool = False) -> list[dict[str, Any]]:
    """The quality table: one row per (family, size); ``family`` names the scheme."""
    bars = load_sample(SYMBOLS)
    sz = sizes(quick)
    rows = [{"family": "raw quantile", **measure_reference(bars)}]
    for b in sz["bins"]:
        name = "bins " + "x".join(map(str, b)) + (" (default)" if b == (9, 13, 3, 3) else "")
        rows.append({"family": "bins", **measure(name, BinsTokenizer(*b), bars)})
    for k in sz["kmeans"]:
        name = f"kmeans K={k}" + (" (default)" if k == 512 else "")
        rows.append({"family": "kmeans", **measure(name, KMeansTokenizer(k=k), bars)})
    rows += [{"family": "chronos", **measure_chronos(bars, n)} for n in sz["chronos"]]
    rows += [{"family": "sax", **measure_sax(bars, a)} for a in sz["sax"]]
    return rows


def plot(rows: list[dict[str, Any]], path: Any) -> None:
    """Error vs bits per candle, one line per family: median and p95, each the mean of the
    O/H/L/C figures (so a scheme that drops the open or the wicks pays for it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, q in zip(axes, ("med", "p95"), strict=True):
        for fam in FAMILIES:
            pts = sorted((r["bits"], np.mean([r[f"{c[0]}_{q}"] for c in PRICES]))
                         for r in rows if r["family"] == fam)
            if pts:
                xs, ys = zip(*pts, strict=True)
                label = "chronos (4 tokens/candle, bits summed)" if fam == "chronos" else fam
                ax.plot(xs, ys, marker="o", label=label)
        ax.set_yscale("log")
        ax.set_xlabel("bits per candle (unigram entropy on 2011-2013)")
        ax.set_ylabel(f"{'median' if q == 'med' else 'p95'} error, mean of O/H/L/C (bps)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.suptitle("Reconstruction error vs bits per candle (fit 2000-2010, AAPL IBM MSFT GOOG)")
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    print(markdown(main(quick=ap.parse_args().quick)))
