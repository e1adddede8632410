"""Small statistics primitives shared by several stages (search, evaluation, predict).

They live here, at the bottom of the layers, so that every stage computes each one the
same way: a proportion's interval in ``search`` matches the one in ``predict --odds`` and
in the evaluation's reliability plot to the last digit.
"""

from __future__ import annotations

import numpy as np

Z95 = 1.959963984540054  # the 97.5% normal quantile: a two-sided 95% interval


def wilson(k: float | np.ndarray, n: float | np.ndarray, z: float = Z95
           ) -> tuple[float, float] | tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a proportion ``k / n``.

    Sane at 0 and 1, where the normal interval is not; ``k`` and ``n`` may be effective,
    non-integer counts (half of an ambiguous path, an effective number of windows). Where
    ``n`` is 0 there is no data and so no interval: NaNs. Scalars in, Python floats out;
    arrays in, arrays out (elementwise)."""
    k_a = np.asarray(k, dtype=np.float64)
    n_a = np.asarray(n, dtype=np.float64)
    ok = n_a > 0
    n_s = np.where(ok, n_a, 1.0)
    p = k_a / n_s
    den = 1.0 + z * z / n_s
    mid = (p + z * z / (2 * n_s)) / den
    half = z * np.sqrt(np.maximum(p * (1 - p) / n_s + z * z / (4 * n_s * n_s), 0.0)) / den
    # at k = 0 (k = n) the bound is 0 (1) exactly; mid - half leaves a round-off of ~1e-19
    lo = np.where(ok, np.where(k_a <= 0, 0.0, np.clip(mid - half, 0.0, 1.0)), np.nan)
    hi = np.where(ok, np.where(k_a >= n_a, 1.0, np.clip(mid + half, 0.0, 1.0)), np.nan)
    if lo.ndim == 0:
        return float(lo), float(hi)
    return lo, hi
