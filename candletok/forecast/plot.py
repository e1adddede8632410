"""Candlestick chart: the real context candles, then a fan of sampled continuations.

Drawn with matplotlib's Agg backend (no display needed) as vectorized collections — one
LineCollection for the wicks and one PolyCollection for the bodies — so a long context
costs no Python loop per candle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from candletok.core.atomic import atomic_path


def _candles(ax: object, x: np.ndarray, o: np.ndarray, h: np.ndarray, lo: np.ndarray,
             c: np.ndarray, width: float = 0.6, alpha: float = 1.0) -> None:
    from matplotlib.collections import LineCollection, PolyCollection

    up = c >= o
    colors = np.where(up, "#26a69a", "#ef5350")
    wicks = np.stack([np.stack([x, lo], 1), np.stack([x, h], 1)], 1)  # (n, 2, 2)
    ax.add_collection(LineCollection(wicks, colors=colors, linewidths=0.8, alpha=alpha))
    y0, y1 = np.minimum(o, c), np.maximum(o, c)
    y1 = np.where(y1 - y0 < 1e-12, y0 + 1e-6 * np.abs(y0), y1)  # dojis stay visible
    hw = width / 2
    boxes = np.stack([np.stack([x - hw, y0], 1), np.stack([x - hw, y1], 1),
                      np.stack([x + hw, y1], 1), np.stack([x + hw, y0], 1)], 1)  # (n, 4, 2)
    ax.add_collection(PolyCollection(boxes, facecolors=colors, edgecolors=colors, alpha=alpha))


def plot_fan(
    context: dict[str, np.ndarray],
    paths: dict[str, np.ndarray],
    out: str | Path,
    title: str = "",
    quantiles: tuple[float, float] = (0.1, 0.9),
) -> Path:
    """Write a PNG: ``context`` (dict of 1-d open/high/low/close arrays) as candles, then
    the sampled ``paths`` (dict of (S, n) arrays from ``rebuild_paths``) as a quantile band
    of closes, the median close path, and the candles of the median-ending sample."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_ctx = int(np.asarray(context["close"]).size)
    closes = np.asarray(paths["close"], dtype=np.float64)  # (S, n)
    S, n = closes.shape
    xs_c = np.arange(n_ctx, dtype=np.float64)
    xs_f = np.arange(n_ctx, n_ctx + n, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(11, 5), dpi=110)
    try:
        _candles(ax, xs_c, *(np.asarray(context[k], np.float64)
                             for k in ("open", "high", "low", "close")))
        lo_q, hi_q = np.quantile(closes, quantiles, axis=0)
        med = np.median(closes, axis=0)
        last = float(np.asarray(context["close"])[-1]) if n_ctx else float(med[0])
        xb = np.concatenate([[xs_f[0] - 1], xs_f])
        ax.fill_between(xb, np.concatenate([[last], lo_q]), np.concatenate([[last], hi_q]),
                        color="#42a5f5", alpha=0.25,
                        label=f"{int(quantiles[0] * 100)}-{int(quantiles[1] * 100)}% of "
                              f"{S} samples")
        ax.plot(xb, np.concatenate([[last], med]), color="#1565c0", lw=1.6,
                label="median close")
        k = int(np.argmin(np.abs(closes[:, -1] - med[-1])))  # a typical sample, as candles
        _candles(ax, xs_f, *(np.asarray(paths[c][k], np.float64)
                             for c in ("open", "high", "low", "close")), alpha=0.45)
        ax.axvline(n_ctx - 0.5, color="grey", ls=":", lw=1)
        ax.autoscale_view()
        ax.set_xlim(-1, n_ctx + n)
        ax.set_xlabel("bar (real context | sampled continuation)")
        ax.set_ylabel("price")
        ax.set_title(title)
        ax.legend(loc="upper left")
        fig.tight_layout()
        out = Path(out)
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return out
