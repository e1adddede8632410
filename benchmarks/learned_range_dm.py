"""Paired next-range comparison (issue 23): the learned analogues' QLIKE on test against
the nearest and model-hidden-state analogues and EWMA, each on the origins both
forecast, with Diebold-Mariano p-values by date; the evaluation harness's own panels,
range constants (fit on val for the analogues, on train for EWMA) and tests.

    python -m benchmarks.learned_range_dm ds --model model.pt   # needs model.search.pt

``candletok evaluate`` compares every forecaster with the declared range references
only; this adds the analogue-vs-analogue pairs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from candletok.evaluation.analogues import search_forecasters
from candletok.evaluation.evaluate import _dm, _range_losses, make_panel, range_constants
from candletok.evaluation.forecasters import EWMAVol
from candletok.evaluation.history import load_history


def main(argv: list[str] | None = None) -> list[str]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--model", required=True)
    ap.add_argument("--subsample", type=int, default=300, help="origins per split")
    ap.add_argument("--model-subsample", type=int, default=100, help="model mode's")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    hist = load_history(args.dataset)
    fcs = search_forecasters(args.dataset, ["nearest", "model", "learned"], (1, 5, 10),
                             args.subsample, args.model_subsample, model=args.model)
    ew = EWMAVol()
    for f in [*fcs, ew]:
        f.fit(hist)
    val, tr = make_panel(hist, fcs, "val", 1), make_panel(hist, [ew], "train", 1)
    te = make_panel(hist, [*fcs, ew], "test", 1)
    consts = {f.name: range_constants(val.fc[f.name], val.target["range"][val.pos(f.name)])
              for f in fcs}
    consts[ew.name] = range_constants(tr.fc[ew.name], tr.target["range"][tr.pos(ew.name)])
    loss = {}
    for name, c in consts.items():
        pos, q, _ = _range_losses(te, name, c)
        loss[name] = dict(zip(pos.tolist(), q.tolist(), strict=True))
    a, out = "learned analogues", []
    for b in ("nearest analogues", "model analogues", ew.name):
        common = np.array(sorted(set(loss[a]) & set(loss[b])), dtype=np.int64)
        la = np.array([loss[a][p] for p in common])
        lb = np.array([loss[b][p] for p in common])
        dm = _dm(la, lb, hist.ts[te.rows[common]], 1)
        out.append(f"| {a} vs {b} | {common.size} | {la.mean():.4f} | {lb.mean():.4f} | "
                   f"{la.mean() - lb.mean():+.4f} | {dm.p_value:.2f} |")
    print("| pair (test, next range) | origins | QLIKE a | QLIKE b | a - b | DM p |")
    print("|---|---|---|---|---|---|")
    print("\n".join(out))
    print(f"# {time.perf_counter() - t0:.0f} s")
    return out


if __name__ == "__main__":
    main()
