"""The kmeans grid index (fine cells, lookup tables, float32 compare with float64 redo of
near ties) gives exactly the float64 brute-force argmin, lowest id on ties."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from candletok.tokenize.nearest_centroid import CentroidGrid, brute_nearest


def _check(C: np.ndarray, Z: np.ndarray) -> None:
    grid = CentroidGrid(C)
    assert np.array_equal(grid.assign(Z), brute_nearest(Z, C))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 80), d=st.integers(1, 5),
       scale=st.sampled_from([1e-6, 1e-2, 1.0, 30.0]))
def test_grid_matches_brute_force(seed: int, k: int, d: int, scale: float) -> None:
    rng = np.random.default_rng(seed)
    C = rng.standard_normal((k, d)) * scale
    if k > 3:  # duplicate and near-duplicate centroids
        C[1] = C[0]
        C[2] = C[0] * (1 + 1e-12)
    C = np.round(C, 3) if seed % 2 else C  # coarse values: many exact ties
    grid = CentroidGrid(C)
    pts = [rng.standard_normal((3000, d)) * scale * 1.5,
           C + rng.normal(0, 1e-9 * scale, C.shape),  # on and around the centroids
           rng.standard_normal((200, d)) * scale * 1e3]  # far outside the grid
    # exactly on the fine cell bounds of each dimension
    on = rng.standard_normal((2000, d)) * scale
    for j in range(d):
        lut_lo = grid.b0[j] + rng.integers(0, 1 << 16, 2000) / grid.inv_w[j]
        on[:, j] = np.where(rng.random(2000) < 0.5, lut_lo, on[:, j])
    pts.append(on)
    if k >= 2:  # exact ties: midpoints of centroid pairs (a coordinate-wise symmetric pair)
        a, b = rng.integers(0, k, 500), rng.integers(0, k, 500)
        pts.append((C[a] + C[b]) / 2.0)
    Z = np.concatenate(pts)
    assert np.array_equal(grid.assign(Z), brute_nearest(Z, C))


def test_exact_ties_take_the_lowest_id() -> None:
    C = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 1.0], [1.0, -1.0], [2.0, 0.0]])
    Z = np.array([[1.0, 0.0], [1.0, 0.5], [3.0, 0.0], [0.5, 0.5]] * 100)
    _check(C, Z)
    assert CentroidGrid(C).assign(Z[:4]).tolist() == [0, 2, 1, 0]


def test_grid_on_real_centroids_matches_brute_force() -> None:
    rng = np.random.default_rng(1)
    C = rng.standard_t(3, (512, 4)) * [2.0, 2.0, 0.5, 0.5]
    C[:, 2:] = np.abs(C[:, 2:])
    Z = rng.standard_t(3, (100_000, 4)) * [2.0, 2.0, 0.5, 0.5]
    Z[:, 2:] = np.abs(Z[:, 2:])
    Z[::7, 2] = 0.0
    _check(C, Z)
