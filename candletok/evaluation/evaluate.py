"""``evaluate_forecasts``: every forecaster replayed point in time, scored against the base
rate and the volatility baselines, with block-bootstrap intervals over dates.

The replay (see :mod:`candletok.evaluation.history`): at the close of every candle t of the
evaluated split, each forecaster sees the history up to t and forecasts

* the direction at each horizon h: P(close[t + h] > close[t]);
* the next candle's range ln(H/L) (h = 1);
* the 5/10/50/90/95% quantiles of the forward log return at each horizon, and where a
  forecaster has a whole distribution, its quantile grid for the CRPS.

References are the forecasters that *declare* a role (``roles``: direction, range,
quantiles; :func:`~candletok.evaluation.forecasters.roles_of`), not names: every range
forecaster is scored against every range reference, every direction and quantile forecast
against the direction / quantile reference (the base rate). The reference forecasters of
the range are EWMA, HistVol20, GARCH(1,1)-t and HAR-RV.

Distribution scores: the CRPS with its skill against the base rate's, the 80% and 90%
intervals' coverage with Christoffersen's unconditional-coverage, independence and
conditional-coverage tests, and membership of the 10% Model Confidence Set (Hansen, Lunde
and Nason) among every forecaster that covers the full set of origins, per horizon (CRPS,
QLIKE of the range, Brier of the direction).

Forward windows that would leave the series or the split are dropped and counted, so a
val target never reaches into test. Fitting follows the time order: every forecaster
learns on train; calibration maps (P(up)) and range constants of the *learned*
forecasters (n-gram, CandleGPT, analogues) are fit on val; those of EWMA and HistVol20 on
train. On ``split="val"`` the calibrated figures are out-of-fold (time-blocked
cross-validation), so no val forecast is scored by a map that saw its outcome.

Every score comes with a 95% circular block-bootstrap interval over dates (a date's
forecasts share one market; blocks cover at least h dates because h-step windows
overlap) and a baseline beside it; each row ends in a verdict in words.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from candletok.core.errors import CandletokError
from candletok.core.horizons import check_horizons
from candletok.core.ids import normalize_split
from candletok.core.jsonsafe import clean_json
from candletok.dataset.manifest import read_manifest
from candletok.evaluation import scores as sc
from candletok.evaluation.analogues import SEARCH_MODES, search_forecasters
from candletok.evaluation.calibrate import MapChoice, choose_map, save_calibration
from candletok.evaluation.forecasters import (
    CRPS_LEVELS,
    INTERVALS,
    LEVELS,
    PINBALL_LEVELS,
    Forecast,
    Forecaster,
    NGram,
    default_forecasters,
    roles_of,
)
from candletok.evaluation.history import SPLIT_CODE, History, load_history, split_dates
from candletok.evaluation.scores import CoverageTest, DMTest, Estimate

log = logging.getLogger(__name__)

BASE = "base rate"
"""The direction / quantile reference's name where a panel declares none (simcal's)."""
MCS_SIZE = 0.10
MCS_MIN_SHARE = 0.9  # a forecaster joins the MCS if it covers this share of the origins


@dataclass
class Panel:
    """Targets and every forecaster's forecasts at the origins of one split and horizon."""

    split: str
    horizon: int
    rows: np.ndarray
    dropped: int
    target: dict[str, np.ndarray]
    fc: dict[str, Forecast] = field(default_factory=dict)
    refs: dict[str, list[str]] = field(default_factory=dict)  # role -> reference names

    def pos(self, name: str) -> np.ndarray:
        """Positions in :attr:`rows` of the origins ``name`` forecast."""
        return np.searchsorted(self.rows, self.fc[name].rows)

    def references(self, role: str) -> list[str]:
        """The forecasters of this panel declared references for ``role`` (the base rate
        by name for a panel built without declarations)."""
        if role in self.refs:
            return [n for n in self.refs[role] if n in self.fc]
        return [BASE] if role != "range" and BASE in self.fc else []

    def ref(self, role: str) -> str | None:
        """The first reference for ``role``, or None."""
        got = self.references(role)
        return got[0] if got else None


def make_panel(hist: History, forecasters: Sequence[Forecaster], split: str,
               horizon: int) -> Panel:
    rows, dropped = hist.origins(split, horizon)
    panel = Panel(split, horizon, rows, dropped, hist.forward(rows, horizon))
    for f in forecasters:
        fc = f.forecast(hist, rows, horizon)
        if fc is not None and fc.rows.size:
            panel.fc[f.name] = fc
    panel.refs = {role: [f.name for f in forecasters if role in roles_of(f)]
                  for role in ("direction", "range", "quantiles")}
    return panel


# ---- rows of the report -------------------------------------------------------------------
@dataclass
class DirectionRow:
    """P(close up at t + h): Brier score, its skill against the base rate, calibration."""

    forecaster: str
    horizon: int
    n: int
    dates: int
    brier: Estimate
    brier_base: float
    skill: Estimate  # calibrated forecast vs the base rate (the verdict's figure)
    skill_raw: Estimate  # the forecaster's own numbers
    ece: Estimate
    dm: DMTest
    calibration: str  # the map val chose ("-" for the base rate)
    reliability: list[tuple[float, float, float, int]]
    verdict: str
    reference: bool = False
    mcs: bool | None = None  # in the 10% MCS of Brier among the full-coverage forecasters
    mcs_p: float | None = None


@dataclass
class RangeRow:
    """The next candle's ln(H/L): QLIKE of its square and MSE, against every declared range
    reference (EWMA, HistVol20, GARCH-t, HAR-RV)."""

    forecaster: str
    n: int
    qlike: Estimate
    mse: Estimate
    skill: dict[str, Estimate]  # QLIKE skill against each reference
    dm: dict[str, DMTest]
    constants: tuple[float, float]  # (a, b): range = a * raw, variance = b * raw square
    fit_on: str
    verdict: str
    reference: bool = False
    mcs: bool | None = None  # in the 10% MCS of QLIKE
    mcs_p: float | None = None


@dataclass
class QuantileRow:
    """The forward-return quantiles: pinball loss (10/50/90%), the 80% and 90% intervals'
    coverage with Christoffersen's tests, and the CRPS where there is a quantile grid."""

    forecaster: str
    horizon: int
    n: int
    pinball: Estimate
    skill: Estimate  # pinball skill vs the base rate's quantiles
    coverage: Estimate
    verdict: str
    reference: bool = False
    coverage90: Estimate | None = None
    tests: dict[str, CoverageTest] = field(default_factory=dict)  # "80" / "90"
    crps: Estimate | None = None
    crps_skill: Estimate | None = None  # 1 - CRPS / CRPS of the base rate, same origins
    crps_n: int = 0
    mcs: bool | None = None  # in the 10% MCS of CRPS
    mcs_p: float | None = None


@dataclass
class BitsRow:
    """Bits per candle of a token forecaster (-log2 P of the candle that came)."""

    forecaster: str
    n: int
    bits: Estimate
    vs: str
    diff: Estimate | None  # this minus ``vs`` (negative: fewer bits)


@dataclass
class EvalReport:
    """Everything ``candletok evaluate`` prints; :meth:`to_dict` is its JSON."""

    split: str
    horizons: tuple[int, ...]
    origins: dict[int, int]
    dropped: dict[int, int]
    direction: list[DirectionRow]
    range: list[RangeRow]
    quantiles: list[QuantileRow]
    bits: list[BitsRow]
    calibration: dict[str, Any]
    notes: list[str]
    split_from: dict[str, str]
    plot_data: dict[str, Any] = field(default_factory=dict, repr=False)
    calibration_file: str | None = None
    references: dict[str, list[str]] = field(default_factory=dict)  # role -> forecasters
    #: every origin's shown forecast (:func:`~candletok.evaluation.forecastfile.
    #: forecast_frame`), when asked for (``keep_forecasts``); not part of the JSON
    forecasts: Any = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        forecasts, self.forecasts = self.forecasts, None
        try:
            d = asdict(self)
        finally:
            self.forecasts = forecasts
        d.pop("plot_data")
        d.pop("forecasts")
        d["origins"] = {str(k): v for k, v in self.origins.items()}
        d["dropped"] = {str(k): v for k, v in self.dropped.items()}
        return _clean(d)


def _clean(obj: Any) -> Any:
    """The report JSON-ready, its keys as text (:func:`candletok.core.jsonsafe.clean_json`)."""
    return clean_json(obj, str_keys=True)


# ---- scoring helpers ----------------------------------------------------------------------
@dataclass
class Boot:
    """Bootstrap settings shared by every interval of one report."""

    n_boot: int = 1000
    seed: int = 0

    def kw(self, n_dates: int, horizon: int) -> dict[str, int]:
        block = max(math.ceil(max(n_dates, 1) ** (1 / 3)), int(horizon))
        return {"n_boot": self.n_boot, "block": block, "seed": self.seed}


def _by_date(dates: np.ndarray, *values: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-date sums of each of ``values`` and the per-date counts (dates sorted)."""
    sums = [sc.per_date(dates, v)[0] for v in values]
    counts = sc.per_date(dates, np.ones(dates.size))[1].astype(np.float64)
    return (*sums, counts)


def _dm(loss: np.ndarray, ref: np.ndarray, dates: np.ndarray, horizon: int) -> DMTest:
    """Diebold-Mariano on per-date mean losses (HAC with h - 1 lags)."""
    a, b, c = _by_date(dates, loss, ref)
    return sc.diebold_mariano(a / c, b / c, horizon)


def _skill_verdict(skill: Estimate, what: str) -> str:
    if not math.isfinite(skill.lo):
        return "too few dates for an interval"
    if skill.lo > 0:
        return f"beats {what}"
    if skill.hi < 0:
        return f"worse than {what}"
    return "no skill: interval includes zero"


Losses = dict[str, tuple[np.ndarray, np.ndarray]]
"""Per forecaster: positions in the panel's rows and one loss each (for the MCS)."""


def direction_row(name: str, panel: Panel, dates_all: np.ndarray, p_cal: np.ndarray,
                  kind: str, boot: Boot, losses: Losses | None = None) -> DirectionRow:
    """Score one forecaster's P(up) (raw and calibrated) against the direction reference."""
    pos = panel.pos(name)
    y = panel.target["up"][pos]
    dates = dates_all[pos]
    p_raw = panel.fc[name].p_up
    assert p_raw is not None
    ref = panel.ref("direction") or name
    rfc = panel.fc[ref]
    base = rfc.p_up[np.searchsorted(rfc.rows, panel.rows[pos])]
    l_cal, l_raw, l_base = sc.brier(p_cal, y), sc.brier(p_raw, y), sc.brier(base, y)
    if losses is not None:
        losses[name] = (pos, l_cal)
    a, r, b, c = _by_date(dates, l_cal, l_raw, l_base)
    kw = boot.kw(c.size, panel.horizon)
    skill = sc.skill_estimate(a, b, **kw)
    row = DirectionRow(
        forecaster=name, horizon=panel.horizon, n=int(pos.size), dates=int(c.size),
        brier=sc.ratio_estimate(a, c, **kw), brier_base=float(b.sum() / c.sum()),
        skill=skill, skill_raw=sc.skill_estimate(r, b, **kw),
        ece=sc.ece_estimate(p_cal, y, dates, **kw), dm=_dm(l_cal, l_base, dates, panel.horizon),
        calibration=kind, reliability=sc.reliability(p_cal, y), verdict="",
        reference=name in panel.references("direction"))
    row.verdict = ("reference (train frequency of an up move)" if row.reference
                   else _skill_verdict(skill, f"the {ref}"))
    return row


def range_constants(fc: Forecast, realized: np.ndarray) -> tuple[float, float]:
    """One constant per loss: ``a`` minimizes the squared error of ``a * range_mean``;
    ``b`` minimizes the QLIKE of ``b * range_sq`` for the realized squared range."""
    m, v, r = fc.range_mean, fc.range_sq, realized
    assert m is not None and v is not None
    ok = (r > 0) & np.isfinite(m) & (m > 0) & np.isfinite(v) & (v > 0)
    if not ok.any():
        return 1.0, 1.0
    a = float((r[ok] @ m[ok]) / (m[ok] @ m[ok]))
    b = float(np.mean(r[ok] ** 2 / v[ok]))
    return a, b


def _range_losses(panel: Panel, name: str, const: tuple[float, float]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions (realized range > 0), QLIKE and squared error of one range forecaster."""
    fc = panel.fc[name]
    pos = panel.pos(name)
    r = panel.target["range"][pos]
    ok = r > 0  # a zero range has no log: left out, and counted by the caller
    a, b = const
    q = sc.qlike(b * fc.range_sq[ok], r[ok] ** 2)
    se = (a * fc.range_mean[ok] - r[ok]) ** 2
    return pos[ok], q, se


def range_row(name: str, panel: Panel, dates_all: np.ndarray,
              consts: dict[str, tuple[float, float]], fit_on: str, boot: Boot,
              losses: Losses | None = None) -> RangeRow:
    """QLIKE and MSE of one range forecaster, and its QLIKE skill and DM test against
    every declared range reference but itself, each on the origins both forecast."""
    pos, q, se = _range_losses(panel, name, consts[name])
    if losses is not None:
        losses[name] = (pos, q)
    dates = dates_all[pos]
    a, m, c = _by_date(dates, q, se)
    kw = boot.kw(c.size, 1)
    skills: dict[str, Estimate] = {}
    dms: dict[str, DMTest] = {}
    for ref in panel.references("range"):
        if ref == name or ref not in consts:
            continue
        rpos, rq, _ = _range_losses(panel, ref, consts[ref])
        common, i, j = np.intersect1d(pos, rpos, return_indices=True)
        d = dates_all[common]
        x, y, _ = _by_date(d, q[i], rq[j])
        skills[ref] = sc.skill_estimate(x, y, **boot.kw(x.size, 1))
        dms[ref] = _dm(q[i], rq[j], d, 1)
    is_ref = name in panel.references("range")
    verdict = (_range_verdict(skills) if pos.size else
               "undefined: no origin has a next candle with a range to score")
    is_ref_words = is_ref and skills and pos.size
    return RangeRow(name, int(pos.size), sc.ratio_estimate(a, c, **kw),
                    sc.ratio_estimate(m, c, **kw), skills, dms, consts[name], fit_on,
                    f"reference; {verdict}" if is_ref_words else verdict, is_ref)


def _range_verdict(skills: dict[str, Estimate]) -> str:
    if not skills:
        return "reference"
    beats = [k for k, s in skills.items() if s.lo > 0]
    loses = [k for k, s in skills.items() if s.hi < 0]
    parts = []
    if beats:
        parts.append(f"beats {' and '.join(beats)} on the range")
    if loses:
        parts.append(f"loses to {' and '.join(loses)} on the range")
    ties = [k for k in skills if k not in beats and k not in loses]
    if ties:
        parts.append(f"no better than {' and '.join(ties)} (interval includes zero)")
    return "; ".join(parts)


def quantile_row(name: str, panel: Panel, dates_all: np.ndarray, boot: Boot,
                 losses: Losses | None = None) -> QuantileRow:
    """Pinball loss (10/50/90%) and its skill against the quantile reference, the 80% and
    90% intervals' coverage with Christoffersen's tests, and the CRPS with its skill
    against the reference's CRPS (where both have a quantile grid)."""
    fc = panel.fc[name]
    pos = panel.pos(name)
    y = panel.target["ret"][pos]
    qs = fc.quantiles
    assert qs is not None
    ok = np.isfinite(qs[:, :PINBALL_LEVELS]).all(axis=1)
    pos, y, qs = pos[ok], y[ok], qs[ok]
    ref = panel.ref("quantiles") or name
    base = panel.fc[ref]
    at = np.searchsorted(base.rows, panel.rows[pos])
    bq = base.quantiles[at]
    pl_ = [(k, lv) for k, lv in enumerate(LEVELS[:PINBALL_LEVELS])]
    pin = np.mean([sc.pinball(qs[:, k], y, lv) for k, lv in pl_], axis=0)
    pin_b = np.mean([sc.pinball(bq[:, k], y, lv) for k, lv in pl_], axis=0)
    dates = dates_all[pos]
    miss: dict[float, np.ndarray] = {}
    for cov_, (lo, hi) in INTERVALS.items():
        if np.isfinite(qs[:, [lo, hi]]).all():
            miss[cov_] = ~((y >= qs[:, lo]) & (y <= qs[:, hi]))
    inside = (~miss[0.8]).astype(np.float64)
    a, b, cov, c = _by_date(dates, pin, pin_b, inside)
    kw = boot.kw(c.size, panel.horizon)
    skill = sc.skill_estimate(a, b, **kw)
    coverage = sc.ratio_estimate(cov, c, **kw)
    rows = panel.rows[pos]
    # a new run wherever the previous origin is not the previous row (another series, or
    # origins skipped): Christoffersen's transitions never join two runs
    new_run = np.r_[True, rows[1:] != rows[:-1] + 1]
    tests = {f"{cov_:.0%}".rstrip("%"): sc.christoffersen(m, cov_, new_run)
             for cov_, m in miss.items()}
    cov90 = None
    if 0.9 in miss:
        cov90 = sc.ratio_estimate(_by_date(dates, (~miss[0.9]).astype(np.float64))[0], c, **kw)
    is_ref = name in panel.references("quantiles")
    row = QuantileRow(name, panel.horizon, int(pos.size), sc.ratio_estimate(a, c, **kw),
                      skill, coverage, "", is_ref, cov90, tests)
    if fc.qgrid is not None and base.qgrid is not None:
        g, bg = fc.qgrid[ok], base.qgrid[at]
        good = np.isfinite(g).all(axis=1) & np.isfinite(bg).all(axis=1)
        cr = sc.crps_from_quantiles(g[good], y[good], CRPS_LEVELS)
        cr_b = sc.crps_from_quantiles(bg[good], y[good], CRPS_LEVELS)
        if losses is not None:
            losses[name] = (pos[good], cr)
        x, xb, cc = _by_date(dates[good], cr, cr_b)
        kw2 = boot.kw(cc.size, panel.horizon)
        row.crps, row.crps_n = sc.ratio_estimate(x, cc, **kw2), int(good.sum())
        row.crps_skill = sc.skill_estimate(x, xb, **kw2)
    # targets that never move (flat bars) make every interval "cover" them: no verdict
    row.verdict = (_quantile_verdict(row) if y.size and np.ptp(y) > 0 else
                   "undefined: the forward returns do not vary (the data have no "
                   "variation), so coverage and scores say nothing")
    return row


def _coverage_words(e: Estimate | None, want: float) -> str:
    if e is None:
        return ""
    return (f"{want:.0%} interval covers {e.value:.0%}"
            + ("" if e.lo <= want <= e.hi else " (target outside its 95% interval)"))


def _quantile_verdict(r: QuantileRow) -> str:
    """Coverage of both intervals in words, and for a non-reference its pinball (and CRPS)
    skill against the reference."""
    parts = [] if r.reference else [_skill_verdict(r.skill, "the base rate")]
    if not r.reference and r.crps_skill is not None and math.isfinite(r.crps_skill.lo):
        e = r.crps_skill
        parts[0] += (" (CRPS better)" if e.lo > 0 else " (CRPS worse)" if e.hi < 0
                     else " (CRPS within noise)")
    parts.append(_coverage_words(r.coverage, 0.8))
    if r.coverage90 is not None:
        parts.append(_coverage_words(r.coverage90, 0.9))
    return "; ".join(p for p in parts if p)


def mcs_of(panel: Panel, losses: Losses, dates_all: np.ndarray, boot: Boot
           ) -> dict[str, tuple[bool, float]]:
    """Model Confidence Set (10%) membership and p-value of every forecaster in ``losses``
    that covers at least :data:`MCS_MIN_SHARE` of the most-covered one's origins, on the
    origins all of those share, per-date mean losses (a date's forecasts share a market).
    Subsampled forecasters (CandleGPT's paths, the analogues) stay out: on their few
    hundred origins the set would say little about the rest."""
    if not losses:
        return {}
    most = max(p.size for p, _ in losses.values())
    names = [n for n, (p, _) in losses.items() if p.size >= MCS_MIN_SHARE * most]
    if len(names) < 2:
        return {}
    common = losses[names[0]][0]
    for n in names[1:]:
        common = np.intersect1d(common, losses[n][0])
    if common.size < 10:
        return {}
    cols = []
    for n in names:
        p, loss = losses[n]
        cols.append(loss[np.searchsorted(p, common)])
    dates = dates_all[panel.rows[common]]
    per = _by_date(dates, *cols)
    L = np.column_stack(per[:-1]) / per[-1][:, None]
    block = max(math.ceil(L.shape[0] ** (1 / 3)), panel.horizon)
    inc, pv = sc.mcs_members(L, MCS_SIZE, block=block, reps=boot.n_boot, seed=boot.seed)
    return {n: (bool(i), float(v)) for n, i, v in zip(names, inc, pv, strict=True)}


def bits_rows(panel: Panel, hist: History, forecasters: Sequence[Forecaster],
              dates_all: np.ndarray, boot: Boot, ref: str | None) -> list[BitsRow]:
    """Bits per candle of every forecaster with a token distribution, and each one's
    difference to ``ref`` (the best n-gram) on the same candles."""
    bits = {f.name: f.bits(hist, panel.rows) for f in forecasters  # type: ignore[attr-defined]
            if callable(getattr(f, "bits", None))}
    out = []
    dates = dates_all[panel.rows]
    for name, b in bits.items():
        s, c = _by_date(dates, b)
        kw = boot.kw(c.size, 1)
        diff = None
        if ref is not None and ref in bits and ref != name:
            ds, dc = _by_date(dates, b - bits[ref])
            diff = sc.ratio_estimate(ds, dc, **kw)
        out.append(BitsRow(name, int(b.size), sc.ratio_estimate(s, c, **kw), ref or "", diff))
    return out


# ---- fitting on val -----------------------------------------------------------------------
def _est(e: Estimate) -> dict[str, float]:
    return {"value": e.value, "lo": e.lo, "hi": e.hi}


def fit_calibration(val: dict[int, Panel], forecasters: Sequence[Forecaster],
                    dates_all: np.ndarray, folds: int, boot: Boot
                    ) -> tuple[dict[str, dict[int, MapChoice]], dict[str, Any]]:
    """Choose and fit a P(up) map per learned forecaster and horizon on val, and measure
    the out-of-fold skill of the calibrated val forecasts against the base rate (the
    honest val skill that ``predict`` prints)."""
    choices: dict[str, dict[int, MapChoice]] = {}
    saved: dict[str, Any] = {}
    for f in forecasters:
        if not f.learned:
            continue
        for h, panel in val.items():
            fc = panel.fc.get(f.name)
            ref = panel.ref("direction")
            if fc is None or fc.p_up is None or ref is None:
                continue
            pos = panel.pos(f.name)
            y = panel.target["up"][pos]
            base_p = float(panel.fc[ref].p_up[0])
            ch = choose_map(fc.p_up, y, dates_all[panel.rows[pos]], base_p, folds)
            choices.setdefault(f.name, {})[h] = ch
            dates = dates_all[panel.rows[pos]]
            a, r, b, c = _by_date(dates, sc.brier(ch.oof, y), sc.brier(fc.p_up, y),
                                  sc.brier(np.full(y.size, base_p), y))
            kw = boot.kw(c.size, h)
            saved.setdefault(f.name, {}).setdefault("p_up", {})[str(h)] = {
                "map": ch.map.to_dict(), "cv_brier": ch.cv_brier, "base_rate": base_p,
                "n": int(y.size), "val_skill": _est(sc.skill_estimate(a, b, **kw)),
                "val_skill_raw": _est(sc.skill_estimate(r, b, **kw)),
            }
    return choices, saved


@dataclass
class Costly:
    """How much of the costly forecasters to run: CandleGPT's sampled paths (``samples``
    paths at ``subsample`` origins per split), and the pattern-search analogues (``modes``
    at ``analogue_subsample`` origins; the model mode, which runs the model per query,
    at ``subsample``)."""

    samples: int = 32
    subsample: int = 100
    analogues: Sequence[str] = SEARCH_MODES
    analogue_subsample: int = 300
    seed: int = 0
    device: str = "cpu"


def _forecasters(dataset: Any, model: Any, extra: Sequence[Forecaster],
                 horizons: Sequence[int], c: Costly, compare: Sequence[Any] = ()
                 ) -> list[Forecaster]:
    fcs: list[Forecaster] = list(default_forecasters())
    for i, given in enumerate([model, *compare]):
        if given is None:
            continue
        from candletok.evaluation.gptcast import GPTForecaster
        from candletok.model.checkpoint import load_model

        m = load_model(given, device=c.device) if isinstance(given, str | Path) else given
        name = m.name  # a second model of the same kind is told apart by its file
        if any(f.name == name for f in fcs) and isinstance(given, str | Path):
            name = f"{name} ({Path(given).stem})"
        # only --model is the answer's forecaster; a compared one is scored beside it
        fcs.append(GPTForecaster(m, samples=c.samples, subsample=c.subsample,
                                 max_horizon=max(horizons), seed=c.seed, name=name,
                                 answer=i == 0))
    if c.analogues and isinstance(dataset, str | Path):  # the search needs the folder
        fcs.extend(search_forecasters(
            dataset, c.analogues, horizons, c.analogue_subsample, c.subsample,
            model if isinstance(model, str | Path) else None, seed=c.seed, device=c.device))
    fcs.extend(extra)
    names = [f.name for f in fcs]
    if len(set(names)) != len(names):
        raise CandletokError(f"Two forecasters share a name ({', '.join(names)}); give each "
                             "its own name.")
    return fcs


def _check_args(split: str, horizons: Sequence[int]) -> tuple[str, tuple[int, ...]]:
    s = normalize_split(split)
    if s == "train":
        raise CandletokError("Evaluate on split='val' or split='test'; train is what every "
                             "forecaster learned from.")
    return s, check_horizons(horizons)


def evaluate_forecasts(
    dataset: str | Path | History,
    model: Any = None,
    split: str = "test",
    horizons: Sequence[int] = (1, 5, 10),
    *,
    forecasters: Sequence[Forecaster] = (),
    n_boot: int = 1000,
    seed: int = 0,
    samples: int = 32,
    subsample: int = 100,
    analogues: Sequence[str] = SEARCH_MODES,
    analogue_subsample: int = 300,
    folds: int = 5,
    save_calibration_map: bool = True,
    device: str = "cpu",
    keep_forecasts: bool = False,
    compare: Sequence[Any] = (),
) -> EvalReport:
    """Replay ``split`` of a dataset point in time and score every forecaster.

    ``model`` is a checkpoint path or a loaded CandleGPT (None: baselines only). The
    pattern-search ``analogues`` (``exact``, ``nearest``, ``model``; the last needs a
    checkpoint path) run when ``dataset`` is a folder, at ``analogue_subsample`` seeded
    origins per split; ``forecasters`` adds any other :class:`Forecaster`. CandleGPT's
    h > 1 forecasts come from ``samples`` sampled paths at ``subsample`` seeded origins
    per split. The calibration maps are fit on val and, when ``model`` is a path and
    ``save_calibration_map``, written beside it as ``<model>.calibration.json`` for
    ``predict``. ``keep_forecasts`` keeps every origin's shown forecast on
    ``report.forecasts`` (what ``evaluate --forecasts`` writes)."""
    split, hs = _check_args(split, horizons)
    hist = dataset if isinstance(dataset, History) else load_history(dataset)
    fcs = _forecasters(dataset, model, forecasters, hs,
                       Costly(samples, subsample, tuple(analogues), analogue_subsample, seed,
                              device), compare)
    for f in fcs:
        f.fit(hist)
    boot = Boot(n_boot, seed)
    dates = hist.ts
    base_only = [f for f in fcs if not f.learned]
    train1 = make_panel(hist, base_only, "train", 1)
    val = {h: make_panel(hist, fcs, "val", h) for h in hs}
    ev = val if split == "val" else {h: make_panel(hist, fcs, split, h) for h in hs}
    choices, saved = fit_calibration(val, fcs, dates, folds, boot)
    consts: dict[str, tuple[float, float]] = {}
    fit_on: dict[str, str] = {}
    for f in fcs:
        src = val.get(1) if f.learned else train1
        if src is not None and f.name in src.fc and src.fc[f.name].range_mean is not None:
            consts[f.name] = range_constants(src.fc[f.name],
                                             src.target["range"][src.pos(f.name)])
            fit_on[f.name] = "val" if f.learned else "train"
            saved.setdefault(f.name, {})["range"] = {
                "a": consts[f.name][0], "b": consts[f.name][1], "fit_on": fit_on[f.name]}
    report = _score(hist, fcs, ev, choices, consts, fit_on, split, hs, boot)
    if keep_forecasts:
        from candletok.evaluation.forecastfile import forecast_frame

        report.forecasts = forecast_frame(
            hist, ev, {n: {h: c.map for h, c in by.items()} for n, by in choices.items()},
            consts, {f.name for f in fcs if f.learned})
    measured: dict[str, dict[str, Any]] = {}  # what the evaluated split measured (generate)
    for row in report.direction:
        if "p_up" in saved.get(row.forecaster, {}):
            measured.setdefault(row.forecaster, {})[str(row.horizon)] = {
                "n": row.n, "skill": _est(row.skill), "verdict": row.verdict}
    report.calibration = {"fingerprint": hist.tok.fingerprint, "fit_on": "val",
                          "folds": folds, "split_from": report.split_from,
                          **_fit_facts(dataset, hist), "forecasters": saved,
                          # which entry is the checkpoint's own forecaster (what predict shows)
                          "model_forecaster": next((f.name for f in fcs
                                                    if "answer" in roles_of(f)), None),
                          "evaluated": {"split": split, "p_up": measured}}
    report.notes += _notes(fcs, choices, val)
    if split == "val":
        report.notes.append("on val, P(up) is calibrated out-of-fold, but the learned "
                            "forecasters' range constants (one each) were fit on val itself.")
    if model is not None and isinstance(model, str | Path) and save_calibration_map:
        report.calibration_file = str(save_calibration(model, _clean(report.calibration)))
    return report


def _fit_facts(dataset: Any, hist: History) -> dict[str, Any]:
    """What the calibration maps were fit on, recorded beside them so that ``predict``
    applies a map only to bars of the same interval and to symbols it was fit on: the
    bar ``interval`` and ``dataset_fingerprint`` (None for an in-memory history) and the
    val ``symbols``."""
    from candletok.model.checkpoint import dataset_fingerprint

    folder = isinstance(dataset, str | Path)
    interval = read_manifest(dataset).get("interval") if folder else None
    val_syms = np.unique(hist.symbol[hist.split == SPLIT_CODE["val"]]).tolist()
    return {"interval": interval,
            "dataset_fingerprint": dataset_fingerprint(dataset) if folder else None,
            "symbols": [str(x) for x in val_syms]}


# ---- scoring the evaluated split ---------------------------------------------------------
def _calibrated(f: Forecaster, fc: Forecast, ch: MapChoice | None, split: str
                ) -> tuple[np.ndarray, str]:
    assert fc.p_up is not None
    if not f.learned:
        return fc.p_up, "-"
    if ch is None:
        return fc.p_up, "none (no val forecasts)"
    if split == "val":
        return ch.oof, f"{ch.map.kind}, out-of-fold"
    return ch.map.apply(fc.p_up), ch.map.describe()


def _score(hist: History, fcs: Sequence[Forecaster], ev: dict[int, Panel],
           choices: dict[str, dict[int, MapChoice]], consts: dict[str, tuple[float, float]],
           fit_on: dict[str, str], split: str, hs: tuple[int, ...], boot: Boot) -> EvalReport:
    dates = hist.ts
    direction: list[DirectionRow] = []
    ranges: list[RangeRow] = []
    quants: list[QuantileRow] = []
    bits: list[BitsRow] = []
    ngram = next((f.name for f in fcs if isinstance(f, NGram)), None)
    for h in hs:
        panel = ev[h]
        if panel.ref("direction") is None:
            continue
        l_dir: Losses = {}
        l_rng: Losses = {}
        l_crps: Losses = {}
        d_rows: list[DirectionRow] = []
        r_rows: list[RangeRow] = []
        q_rows: list[QuantileRow] = []
        for f in fcs:
            fc = panel.fc.get(f.name)
            if fc is None:
                continue
            if fc.p_up is not None:
                p_cal, kind = _calibrated(f, fc, choices.get(f.name, {}).get(h), split)
                d_rows.append(direction_row(f.name, panel, dates, p_cal, kind, boot, l_dir))
            if fc.quantiles is not None:
                q_rows.append(quantile_row(f.name, panel, dates, boot, l_crps))
            if h == 1 and f.name in consts and fc.range_mean is not None:
                r_rows.append(range_row(f.name, panel, dates, consts, fit_on[f.name], boot,
                                        l_rng))
        for rows_, ls in ((d_rows, l_dir), (r_rows, l_rng), (q_rows, l_crps)):
            got = mcs_of(panel, ls, dates, boot)
            for r in rows_:
                if r.forecaster in got:
                    r.mcs, r.mcs_p = got[r.forecaster]
        direction += d_rows
        ranges += r_rows
        quants += q_rows
        if h == 1:
            bits = bits_rows(panel, hist, fcs, dates, boot, ngram)
    return EvalReport(
        split=split, horizons=hs, origins={h: int(ev[h].rows.size) for h in hs},
        dropped={h: ev[h].dropped for h in hs}, direction=direction, range=ranges,
        quantiles=quants, bits=bits, calibration={}, notes=[],
        split_from=split_dates(hist), plot_data=_plot_data(hist, ev.get(1), consts),
        references={role: [f.name for f in fcs if role in roles_of(f)]
                    for role in ("direction", "range", "quantiles")})


def _plot_data(hist: History, panel: Panel | None, consts: dict[str, tuple[float, float]]
               ) -> dict[str, Any]:
    """The range chart's series: the symbol with the most forecasts, the realized range of
    each forecast candle by its date, and each range forecaster's calibrated forecast."""
    if panel is None or panel.rows.size == 0:
        return {}
    sym = hist.symbol[panel.rows]
    names, counts = np.unique(sym, return_counts=True)
    pick = names[int(np.argmax(counts))]
    keep = sym == pick
    rows = panel.rows[keep]
    out: dict[str, Any] = {"symbol": str(pick), "ts": hist.ts[rows + 1],
                           "realized": panel.target["range"][keep], "forecasts": {}}
    for name, fc in panel.fc.items():
        if name not in consts or fc.range_mean is None:
            continue
        at = np.searchsorted(fc.rows, rows)
        at = np.minimum(at, fc.rows.size - 1)
        have = fc.rows[at] == rows
        series = np.full(rows.size, np.nan)
        series[have] = consts[name][0] * fc.range_mean[at[have]]
        out["forecasts"][name] = series
    return out


def _notes(fcs: Sequence[Forecaster], choices: dict[str, dict[int, MapChoice]],
           val: dict[int, Panel]) -> list[str]:
    notes = []
    for f in fcs:
        bits = getattr(f, "val_bits", None)
        if bits:
            shown = ", ".join(f"{k} {v:.3f}" for k, v in bits.items())
            notes.append(f"n-gram order chosen on val by bits per candle: {f.name} ({shown}).")
        describe = getattr(f, "describe", None)
        if callable(describe):
            sub = {h: p.fc[f.name] for h, p in val.items() if f.name in p.fc}
            sizes = ", ".join(f"h={h}: {fc.rows.size}" + (
                f" (median n_eff {np.median(fc.n_eff):.1f})" if fc.n_eff is not None else "")
                for h, fc in sub.items())
            notes.append(f"{f.name}: {describe()}; val origins per horizon: "
                         f"{sizes or 'none'}.")
    for name, by_h in choices.items():
        chosen = ", ".join(f"h={h}: {c.map.kind}" for h, c in sorted(by_h.items()))
        notes.append(f"calibration of {name} chosen on val by time-blocked CV: {chosen}.")
    return notes
