"""Calibration maps for P(up): fit on val only, chosen by time-blocked cross-validation.

A probability is only worth printing if "60%" comes true about 60% of the time. Four maps
compete, simplest first:

* ``identity``: the forecaster's own number;
* ``shrink``: ``base + lam * (p - base)`` with ``0 <= lam <= 1`` (least squares), which
  keeps the ranking and pulls an overconfident forecaster toward the train base rate;
* ``platt``: ``sigmoid(logit(base) + a * (logit(p) - logit(base)))``, ``a >= 0`` by
  maximum likelihood (scipy): Platt scaling about the base rate;
* ``isotonic``: the monotone least-squares step function
  (:func:`scipy.optimize.isotonic_regression`) of the outcomes less val's excess
  up-frequency, interpolated between its points.

Why every map keeps the *level* at the train base rate: the share of up moves drifts from
one period to the next (on the bundled sample, 50% in train, 54% in val, 49% in test), and
a map that learned val's level carried it into test and lost to the base rate it was meant
to beat. Val teaches the shape (how far to trust a forecaster's deviations from the base
rate); years of train set the level.

Val is cut into ``folds`` contiguous blocks of dates; each block is predicted by the map
fit on the other blocks, and the map with the lowest out-of-fold Brier score wins (a
more complex one must be strictly better) if it beats the base rate by more than one
standard error over the folds; otherwise the base rate is the map. The winner is refit on
all of val. The
out-of-fold predictions are kept: their skill is the honest "val skill" ``predict`` shows.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import optimize
from scipy.special import expit, logit

from candletok.core.atomic import sha256_file, write_json_atomic
from candletok.core.errors import ModelError
from candletok.core.fallback import say_fallback
from candletok.core.jsonsafe import clean_json
from candletok.core.times import normalize_interval

log = logging.getLogger(__name__)

MAP_KINDS: tuple[str, ...] = ("identity", "shrink", "platt", "isotonic")
CALIBRATION_FORMAT = "candletok-calibration/1"
_EPS = 1e-6


@dataclass
class CalibrationMap:
    """A fitted map from a raw probability to a calibrated one."""

    kind: str = "identity"
    params: dict[str, Any] = field(default_factory=dict)

    def apply(self, p: np.ndarray) -> np.ndarray:
        p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
        if self.kind == "identity":
            return p
        if self.kind == "shrink":
            b = self.params["base"]
            return b + self.params["lam"] * (p - b)
        if self.kind == "platt":
            lb = logit(np.clip(self.params["base"], _EPS, 1 - _EPS))
            return expit(lb + self.params["a"] * (logit(np.clip(p, _EPS, 1 - _EPS)) - lb))
        if self.kind == "isotonic":
            return np.interp(p, self.params["x"], self.params["y"])
        raise ModelError(f"Unknown calibration map {self.kind!r}; re-run `candletok evaluate`.")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.params}

    def describe(self) -> str:
        """The map in a few characters: ``shrink lam=0.21`` (0: the base rate itself)."""
        if self.kind == "shrink":
            return f"shrink lam={self.params['lam']:.2f}"
        if self.kind == "platt":
            return f"platt a={self.params['a']:.2f}"
        if self.kind == "isotonic":
            return f"isotonic, {len(set(self.params['y']))} steps"
        return self.kind

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CalibrationMap:
        d = dict(d)
        kind = d.pop("kind", "identity")
        if kind not in MAP_KINDS:
            raise ModelError(f"Unknown calibration map {kind!r}; re-run `candletok evaluate`.")
        return cls(kind, d)


def fit_map(kind: str, p: np.ndarray, y: np.ndarray, base: float) -> CalibrationMap:
    """Fit one map of ``kind`` to raw probabilities ``p`` and 0/1 outcomes ``y``."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    y = np.asarray(y, dtype=np.float64)
    if kind == "identity" or p.size == 0:
        return CalibrationMap("identity")
    if kind == "shrink":
        d = p - base
        den = float(d @ d)
        lam = float(np.clip((y - base) @ d / den, 0.0, 1.0)) if den > 0 else 0.0
        return CalibrationMap("shrink", {"base": float(base), "lam": lam})
    if kind == "platt":
        lb = float(logit(np.clip(base, _EPS, 1 - _EPS)))
        z = logit(np.clip(p, _EPS, 1 - _EPS)) - lb

        def nll(w: np.ndarray) -> tuple[float, np.ndarray]:
            q = np.clip(expit(lb + w[0] * z), 1e-12, 1 - 1e-12)
            loss = -float(np.sum(y * np.log(q) + (1 - y) * np.log1p(-q)))
            return loss, np.array([float((q - y) @ z)])

        res = optimize.minimize(nll, np.array([1.0]), jac=True, method="L-BFGS-B",
                                bounds=[(0.0, 20.0)])
        return CalibrationMap("platt", {"base": float(base), "a": float(res.x[0])})
    if kind == "isotonic":
        order = np.argsort(p, kind="stable")
        xs = p[order]
        ys = y[order] - (y.mean() - base)  # the level stays the train base rate's
        ux, start, cnt = np.unique(xs, return_index=True, return_counts=True)
        ym = np.add.reduceat(ys, start) / cnt  # tied probabilities: one point, weighted
        fitted = optimize.isotonic_regression(ym, weights=cnt.astype(np.float64)).x
        return CalibrationMap("isotonic", {"x": ux.tolist(),
                                           "y": np.clip(fitted, 0.0, 1.0).tolist()})
    raise ModelError(f"Unknown calibration map {kind!r}; use one of {', '.join(MAP_KINDS)}.")


def date_blocks(dates: np.ndarray, folds: int) -> np.ndarray:
    """Fold number (0..folds-1) of every forecast: contiguous blocks of unique dates."""
    uniq, inv = np.unique(np.asarray(dates), return_inverse=True)
    k = max(1, min(int(folds), uniq.size))
    block_of_date = (np.arange(uniq.size) * k) // max(uniq.size, 1)
    return block_of_date[inv]


@dataclass
class MapChoice:
    """The map val prefers, refit on all of val, with the out-of-fold evidence."""

    map: CalibrationMap
    cv_brier: dict[str, float]
    oof: np.ndarray  # out-of-fold calibrated probabilities of the chosen kind, val order


def choose_map(p: np.ndarray, y: np.ndarray, dates: np.ndarray, base: float,
               folds: int = 5, kinds: Sequence[str] = MAP_KINDS) -> MapChoice:
    """Time-blocked cross-validation over ``kinds`` on val forecasts; see the module doc.

    The best map must also beat the base rate itself (``shrink`` with ``lam=0``) by more
    than one standard error of their per-fold difference (the one-standard-error rule,
    Hastie et al., *Elements of Statistical Learning* 7.10); otherwise the base rate is
    the map. Val is a few hundred to a few thousand noisy 0/1 outcomes: a map that won its
    folds by less than their spread is as likely to lose on test (a Platt slope of 3.5
    chosen on val turned a raw +0.0007 test skill into -0.0011)."""
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    block = date_blocks(dates, folds)
    oofs: dict[str, np.ndarray] = {}
    for kind in kinds:
        out = np.empty_like(p)
        for b in np.unique(block):  # a handful of folds
            held = block == b
            m = fit_map(kind, p[~held], y[~held], base) if (~held).any() else CalibrationMap()
            out[held] = m.apply(p[held])
        oofs[kind] = out
    cv = {k: float(np.mean((v - y) ** 2)) if y.size else math.nan for k, v in oofs.items()}
    best = kinds[0]
    for k in kinds[1:]:  # simplest first: a more complex map must be strictly better
        if cv[k] < cv[best] - 1e-12:
            best = k
    base_map = CalibrationMap("shrink", {"base": float(base), "lam": 0.0})
    if not _beats_base(oofs[best], y, block, base):
        return MapChoice(base_map, cv, np.full_like(p, float(base)))
    return MapChoice(fit_map(best, p, y, base), cv, oofs[best])


def _beats_base(q: np.ndarray, y: np.ndarray, block: np.ndarray, base: float) -> bool:
    """Whether out-of-fold forecasts ``q`` have a lower Brier score than the constant
    ``base`` by more than one standard error of the per-fold mean difference."""
    if y.size == 0:
        return False
    d = (q - y) ** 2 - (base - y) ** 2
    folds = np.unique(block)
    per = np.array([d[block == b].mean() for b in folds])
    se = float(per.std(ddof=1) / math.sqrt(per.size)) if per.size > 1 else math.inf
    return bool(per.mean() < -se)


def calibration_path(model_path: str | Path) -> Path:
    """Where a model's calibration lives: ``model.pt`` -> ``model.calibration.json``."""
    p = Path(model_path)
    return p.with_name(p.stem + ".calibration.json")


def save_calibration(model_path: str | Path, content: dict[str, Any]) -> Path:
    """Write the calibration beside the checkpoint (atomically), bound to the checkpoint's
    sha256 so that a retrained model never meets an old map."""
    out = calibration_path(model_path)
    body = {"format": CALIBRATION_FORMAT, "model_sha256": sha256_file(model_path), **content}
    write_json_atomic(out, clean_json(body))
    return out


def read_calibration(model_path: str | Path) -> tuple[dict[str, Any] | None, str | None]:
    """The calibration saved beside ``model_path`` and, when there is none that applies,
    why in words: no file, a file that cannot be read or is not a calibration, or one made
    for another checkpoint (retrained since). ``(doc, None)`` when it applies."""
    path = calibration_path(model_path)
    if not path.is_file():
        return None, None
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, f"{path} cannot be read as JSON ({type(exc).__name__}: {exc})"
    if not isinstance(d, dict) or d.get("format") != CALIBRATION_FORMAT:
        got = d.get("format") if isinstance(d, dict) else type(d).__name__
        return None, (f"{path} is not a candletok calibration (format {got!r}, not "
                      f"{CALIBRATION_FORMAT!r})")
    if d.get("model_sha256") != sha256_file(model_path):
        return None, (f"{path} was fit for another version of {Path(model_path).name} "
                      "(the checkpoint changed since)")
    return d, None


def load_calibration(model_path: str | Path) -> dict[str, Any] | None:
    """The calibration saved beside ``model_path``, or None when there is none or it does
    not apply (:func:`read_calibration`). A file that is there but unusable is a fallback
    to the raw P(close up), so it is said, once, as a warning with the reason: silently
    showing an uncalibrated number where a calibration was expected misleads."""
    doc, why = read_calibration(model_path)
    if why is not None:
        say_fallback(log, f"ignoring the calibration: {why}; P(close up) is shown "
                     "uncalibrated until `candletok evaluate DIR --model FILE` fits a new one")
    return doc


@dataclass
class CalibratedProbability:
    """One probability as ``predict`` shows it: calibrated on val when a map exists, with
    the val skill of the calibrated forecasts (out-of-fold) and the base rate beside it.
    Without a map that applies, ``kind`` is ``"none"``, ``value`` is None (no calibrated
    number that was never calibrated) and ``reason`` says why in words."""

    raw: float
    value: float | None
    kind: str  # the map, or "none" when there is no calibration for this model
    base_rate: float | None = None
    skill: dict[str, float] | None = None  # {"value", "lo", "hi"}
    reason: str | None = None  # why there is no calibrated number (kind "none")

    @property
    def calibrated(self) -> bool:
        return self.kind != "none"

    @property
    def shows_skill(self) -> bool:
        """True only when the val skill's whole interval is above zero."""
        s = self.skill
        return bool(s and s.get("lo") is not None and s["lo"] > 0)

    def skill_text(self) -> str:
        s = self.skill
        if not s or s.get("value") is None:
            return "val skill unknown"
        lo, hi = s.get("lo"), s.get("hi")
        iv = "" if lo is None or hi is None else f" [{lo:+.3f}, {hi:+.3f}]"
        return f"val skill {s['value']:+.3f}{iv}"

    def to_dict(self) -> dict[str, Any] | None:
        """The calibrated number with its map and val skill; None without a calibration
        (the reason is :attr:`reason`). The base rate is reported once, beside it."""
        if not self.calibrated:
            return None
        return {"raw": self.raw, "value": self.value, "calibration": self.kind,
                "val_skill": self.skill, "skill_shown": self.shows_skill}


#: The model's forecaster in calibration files written before they recorded its name.
LEGACY_MODEL_FORECASTER = "CandleGPT"


def model_forecaster(calibration: dict[str, Any] | None) -> str:
    """The name under which ``calibration`` keeps the checkpoint's own forecaster (the one
    ``predict`` answers with): recorded by ``evaluate`` as ``model_forecaster``, so no
    caller has to know what the model's forecaster is called."""
    name = (calibration or {}).get("model_forecaster")
    return name if isinstance(name, str) and name else LEGACY_MODEL_FORECASTER


def saved_fit(calibration: dict[str, Any] | None, forecaster: str | None = None,
              horizon: int = 1, quantity: str = "p_up") -> dict[str, Any] | None:
    """The saved fit of ``forecaster``'s ``quantity`` at ``horizon`` (map, base rate, val
    skill, and what the evaluated split measured), or None. ``forecaster`` defaults to
    the model's own (:func:`model_forecaster`)."""
    forecaster = forecaster or model_forecaster(calibration)
    entry = (((calibration or {}).get("forecasters") or {}).get(forecaster) or {})
    fit = (entry.get(quantity) or {}).get(str(horizon))
    return fit if isinstance(fit, dict) and fit else None


def calibrate_probability(p_raw: float, calibration: dict[str, Any] | None,
                          forecaster: str | None = None, horizon: int = 1,
                          quantity: str = "p_up", *, symbol: str | None = None,
                          interval: str | None = None) -> CalibratedProbability:
    """Apply the saved map of ``forecaster``'s ``quantity`` at ``horizon`` to ``p_raw``.

    No map, or a map fit on other symbols than ``symbol`` (the calibration records its val
    symbols): no calibrated number, ``kind="none"`` and the reason in words. A map fit on
    bars of another ``interval`` is refused (:class:`ModelError`): its numbers describe
    another market rhythm."""
    if calibration is None:
        return CalibratedProbability(float(p_raw), None, "none", reason=(
            "no calibration beside the model: run `candletok evaluate DIR --model FILE` "
            "to fit and check it on val"))
    fit_iv = calibration.get("interval")
    if interval is not None and fit_iv is not None and normalize_interval(fit_iv) != \
            normalize_interval(interval):
        raise ModelError(f"The calibration beside the model was fit on {fit_iv} bars, not "
                         f"{interval}; re-run `candletok evaluate` on {interval} bars.")
    forecaster = forecaster or model_forecaster(calibration)
    fit = saved_fit(calibration, forecaster, horizon, quantity)
    if not fit:
        return CalibratedProbability(float(p_raw), None, "none", reason=(
            f"the calibration holds no {quantity} map for {forecaster} at h={horizon}"))
    syms = calibration.get("symbols")
    if symbol is not None and syms is not None and symbol not in syms:
        return CalibratedProbability(float(p_raw), None, "none", fit.get("base_rate"),
                                     reason=f"the calibration was fit on other symbols "
                                     f"({', '.join(syms[:8])}), not {symbol}; its skill "
                                     f"was never measured on {symbol}")
    m = CalibrationMap.from_dict(fit["map"])
    return CalibratedProbability(float(p_raw), float(m.apply(np.array([p_raw]))[0]), m.kind,
                                 fit.get("base_rate"), fit.get("val_skill"))


NOT_A_FORECAST = "the median's drift is not a forecast"


def _skill_words(est: dict[str, Any] | None, split: str) -> str:
    """``no skill on test (Brier skill -0.002 [-0.010, +0.010])`` from a saved estimate."""
    if not est or est.get("value") is None:
        return f"skill on {split} unknown"
    lo, hi, v = est.get("lo"), est.get("hi"), float(est["value"])
    iv = "" if lo is None or hi is None else f" [{lo:+.3f}, {hi:+.3f}]"
    if lo is not None and lo > 0:
        word = f"skill on {split}"
    elif hi is not None and hi < 0:
        word = f"worse than the base rate on {split}"
    elif lo is None or hi is None:
        word = f"no interval on {split}"
    else:
        word = f"no skill on {split}"
    return f"{word} (Brier skill {v:+.3f}{iv})"


def _measured(calibration: dict[str, Any] | None, forecaster: str, h: int) -> str | None:
    """What was measured of ``forecaster``'s P(up) at ``h``, in words: the evaluated split's
    skill (``evaluated``), else the val skill of the map; None when nothing was."""
    ev = (calibration or {}).get("evaluated") or {}
    rec = ((ev.get("p_up") or {}).get(forecaster) or {}).get(str(h))
    if isinstance(rec, dict):
        return _skill_words(rec.get("skill"), str(ev.get("split", "the evaluated split")))
    fit = saved_fit(calibration, forecaster, h)
    return None if fit is None else _skill_words(fit.get("val_skill"), "val (out-of-fold)")


def direction_caveat(calibration: dict[str, Any] | None, horizon: int,
                     forecaster: str | None = None) -> str:
    """What ``candletok evaluate`` measured of ``forecaster``'s direction at ``horizon``, in
    words, to stand beside a fan of sampled paths: a median path that drifts says nothing
    about direction unless direction skill was measured. Read from the calibration file
    (the evaluated split's skill, else the val skill of older files); without a record
    for ``horizon`` it says skill there was never measured (and what was, at the nearest
    horizon evaluated)."""
    h = int(horizon)
    forecaster = forecaster or model_forecaster(calibration)
    said = _measured(calibration, forecaster, h)
    if said is not None:
        return f"direction at h={h}: {said}; {NOT_A_FORECAST}"
    cal = calibration or {}
    keys = set(((cal.get("forecasters") or {}).get(forecaster) or {}).get("p_up") or {})
    keys |= set((((cal.get("evaluated") or {}).get("p_up") or {}).get(forecaster)) or {})
    hs = sorted(int(k) for k in keys if str(k).isdigit())
    if not hs:
        return (f"direction skill at h={h} was never measured (run `candletok evaluate "
                f"DIR --model FILE --horizon {h}`); {NOT_A_FORECAST}")
    near = min(hs, key=lambda k: abs(k - h))
    return (f"direction skill at h={h} was never measured (evaluate measured h="
            f"{', '.join(str(k) for k in hs)}; at h={near}: "
            f"{_measured(calibration, forecaster, near)}); {NOT_A_FORECAST}")
