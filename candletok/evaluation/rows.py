"""The scored rows of ``evaluate``'s report and the panels they are scored on.

A :class:`Panel` holds the targets and every forecaster's forecasts at one split's origins
for one horizon; each ``*_row`` function turns one forecaster's forecasts on a panel into
one row of the report (a score with its block-bootstrap interval over dates, the baseline
beside it and a verdict in words). Kept apart from :mod:`~candletok.evaluation.evaluate`
(which fits, replays and assembles) so that each stays one responsibility, and so that
other scorers (:mod:`~candletok.evaluation.oddsscore`, :mod:`~candletok.evaluation.simcal`)
share the same bootstrap settings, per-date sums and verdict words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from candletok.core.progress import Progress
from candletok.evaluation import scores as sc
from candletok.evaluation.forecasters import (
    CRPS_LEVELS,
    INTERVALS,
    LEVELS,
    PINBALL_LEVELS,
    Forecast,
    Forecaster,
    roles_of,
)
from candletok.evaluation.history import History
from candletok.evaluation.scores import CoverageTest, DMTest, Estimate

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
               horizon: int, bar: Progress | None = None) -> Panel:
    """Every forecaster's forecasts at the origins of ``split`` for ``horizon`` (``bar``
    advances once per forecaster)."""
    rows, dropped = hist.origins(split, horizon)
    panel = Panel(split, horizon, rows, dropped, hist.forward(rows, horizon))
    for f in forecasters:
        if bar is not None:
            bar.advance(0, f"{split} h={horizon} {f.name}")
        fc = f.forecast(hist, rows, horizon)
        if bar is not None:
            bar.advance()
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
    base_rate: float = math.nan  # the reference's mean P(up) over the scored rows


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
        reference=name in panel.references("direction"), base_rate=float(np.mean(base)))
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


def _est(e: Estimate) -> dict[str, float]:
    return {"value": e.value, "lo": e.lo, "hi": e.hi}
