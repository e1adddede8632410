"""The analogue forecast's two choices on val, then on test (issue 23): weighted by
distance or not, returns in vol units times the query's own scale or raw, for each
search mode, scored by the evaluation harness beside EWMA and HAR-RV.

    python -m benchmarks.analogue_choice ds --model model.pt --modes exact,nearest,learned

Each origin is searched once per mode (``similar``); the four variants are made from the
same matches (``SimilarResult.analogue_forecast``), so they differ only in the choice.
Prints, per split, the next range's QLIKE and skill against EWMA and HAR-RV on the same
origins, the quantiles' pinball skill against the base rate and the 80% coverage.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timezone
from typing import Any

from candletok.core.errors import CandletokError
from candletok.evaluation.analogues import AnalogueForecaster, answers_of
from candletok.evaluation.evaluate import evaluate_forecasts
from candletok.evaluation.history import History
from candletok.search.index import open_index
from candletok.search.similar import similar
from candletok.search.spec import SearchSpec

VARIANTS = ((False, True), (True, True), (False, False), (True, False))  # (weighted, rescaled)
HORIZONS = (1, 5, 10)


def tag(weighted: bool, rescaled: bool) -> str:
    return f"{'weighted' if weighted else 'unweighted'} {'vol' if rescaled else 'raw'}"


def forecasters(ds: str, model: str | None, modes: list[str], subsample: int
                ) -> list[AnalogueForecaster]:
    """Four forecasters per mode over one shared cache of search results."""
    idx = open_index(ds)
    cache: dict[tuple[str, str, int], Any] = {}
    out = []
    for mode in modes:
        spec = SearchSpec(mode=mode, last=5, horizons=HORIZONS,
                          model=model if mode in ("learned", "model") else None)
        for w, r in VARIANTS:
            def query(hist: History, row: int, horizons: Any, mode: str = mode,
                      spec: SearchSpec = spec, w: bool = w, r: bool = r) -> dict[int, Any]:
                key = (mode, str(hist.symbol[row]), int(hist.ts[row]))
                if key not in cache:
                    at = datetime.fromtimestamp(int(hist.ts[row]) / 1e6, tz=timezone.utc)
                    try:
                        cache[key] = similar(idx, str(hist.symbol[row]), spec,
                                             horizons=tuple(horizons), at=at)
                    except CandletokError:
                        cache[key] = None
                res = cache[key]
                return {} if res is None else answers_of(res, w, r)
            out.append(AnalogueForecaster(f"{mode} {tag(w, r)}", query, HORIZONS, subsample))
    return out


def _ci(x: dict[str, float] | None, f: str = "{:+.3f}") -> str:
    if x is None:
        return "-"
    return f"{f.format(x['value'])} [{f.format(x['lo'])}, {f.format(x['hi'])}]"


def table(rep: dict[str, Any], names: list[str]) -> list[str]:
    """Markdown rows: range QLIKE and skills, pinball skill and coverage per horizon."""
    rng = {r["forecaster"]: r for r in rep["range"]}
    lines = ["| forecaster | range QLIKE | skill vs EWMA | skill vs HAR-RV | pinball skill "
             "h = 1 / 5 / 10 | 80% coverage h = 1 / 5 / 10 |", "|---|---|---|---|---|---|"]
    for f in names:
        if f not in rng:
            continue
        r = rng[f]
        sk = r.get("skill") or {}
        q = {x["horizon"]: x for x in rep["quantiles"] if x["forecaster"] == f}
        pin = " / ".join(f"{q[h]['skill']['value']:+.3f}" if h in q else "-" for h in HORIZONS)
        cov = " / ".join(f"{q[h]['coverage']['value']:.3f}" if h in q else "-"
                         for h in HORIZONS)
        lines.append(f"| {f} ({r['n']}) | {r['qlike']['value']:.4f} | {_ci(sk.get('EWMA'))} | "
                     f"{_ci(sk.get('HAR-RV'))} | {pin} | {cov} |")
    return lines


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--model", default=None, help="checkpoint (learned/model modes)")
    ap.add_argument("--modes", default="exact,nearest,learned")
    ap.add_argument("--subsample", type=int, default=300, help="origins per split")
    args = ap.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    fcs = forecasters(args.dataset, args.model, modes, args.subsample)
    names = ["EWMA", "HAR-RV", *[f.name for f in fcs]]
    out = {}
    for split in ("val", "test"):
        t0 = time.perf_counter()
        rep = evaluate_forecasts(args.dataset, None, split=split, forecasters=fcs,
                                 analogues=(), odds=(), save_calibration_map=False).to_dict()
        out[split] = rep
        print(f"\n{split} ({time.perf_counter() - t0:.0f} s):\n")
        print("\n".join(table(rep, names)))
    return out


if __name__ == "__main__":
    main()
