"""What "shown = scored, bit for bit" costs: the token-table products row by row.

    python -m benchmarks.shown_speed            # small sizes (shared CPUs: indicative)

:func:`candletok.evaluation.forecasters.rowwise_matmul` (``einsum`` without BLAS, so a row's
result never depends on the rows beside it) against the BLAS product it replaced
(``a @ b``, whose kernel depends on the shape: one origin got gemv, many got gemm, one ulp
apart), on the shapes :func:`~candletok.evaluation.forecasters.token_forecast` multiplies:
origins x candle tokens times the token table's (tokens x 1024) CDF grid. Beside the
times, whether one row alone equals the same row among many under each.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from benchmarks._util import best_of, machine
from candletok.evaluation.forecasters import rowwise_matmul


def run(origins: int = 2000, tokens: tuple[int, ...] = (64, 256), grid: int = 1024
        ) -> list[dict[str, Any]]:
    """One row per vocabulary size: seconds of each product and the one-row check."""
    rng = np.random.default_rng(0)
    out = []
    for v in tokens:
        a = rng.dirichlet(np.ones(v), origins)
        b = np.cumsum(rng.random((v, grid)), axis=1)
        k = origins // 2
        out.append({
            "tokens": v, "origins": origins,
            "blas_s": best_of(lambda a=a, b=b: a @ b),
            "rowwise_s": best_of(lambda a=a, b=b: rowwise_matmul(a, b)),
            "blas_one_row_equal": bool(((a[k:k + 1] @ b)[0] == (a @ b)[k]).all()),
            "rowwise_one_row_equal": bool((rowwise_matmul(a[k:k + 1], b)[0]
                                           == rowwise_matmul(a, b)[k]).all()),
        })
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--origins", type=int, default=2000)
    args = ap.parse_args()
    print(machine())
    print(f"{'tokens':>6} {'origins':>8} {'BLAS s':>8} {'row-wise s':>10} {'ratio':>6} "
          f"{'1 row = many: BLAS':>19} {'row-wise':>9}")
    for r in run(args.origins):
        print(f"{r['tokens']:>6} {r['origins']:>8} {r['blas_s']:>8.4f} {r['rowwise_s']:>10.4f} "
              f"{r['rowwise_s'] / r['blas_s']:>6.1f} {r['blas_one_row_equal']!s:>19} "
              f"{r['rowwise_one_row_equal']!s:>9}")


if __name__ == "__main__":
    main()
