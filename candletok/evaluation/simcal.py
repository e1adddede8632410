"""``similar``, calibrated: the analogue P(close up) of one query through a map fit on val.

A search answers "what followed candles like these?" with a share of up moves among its
matches. That share is not a forecast yet: with 20 matches it swings by ±20 points on
noise alone, and nothing says the search's shares came true on data it had not seen.
:func:`calibrated_similar` turns it into one, with exactly the pieces ``candletok
evaluate`` scores:

* the **raw analogue P(up)** is the evaluate harness's analogue forecaster
  (:class:`~candletok.evaluation.analogues.AnalogueForecaster`): the matches' share shrunk
  toward the train base rate by their effective number;
* the **map** is fit on val only (:func:`~candletok.evaluation.calibrate.choose_map`, via
  :func:`~candletok.evaluation.evaluate.fit_calibration`): the same forecaster, with the
  same mode, window, k and horizons, is replayed point in time at a seeded subsample of
  val origins, and the map val prefers by time-blocked cross-validation is kept;
* the **val skill** is the out-of-fold Brier skill of the calibrated val forecasts
  against the base rate, with its 95% block-bootstrap interval over dates
  (:mod:`candletok.evaluation.scores`). Where it includes zero, the answer says in words
  that this search has shown no skill and that the base rate is the better guide.

The time rule holds for the whole answer: a val origin counts only when its outcome was
known by the query's time T, and the train base rate only when train ended before T, so
changing any bar after T changes nothing (a property test checks it). When T falls
inside val the map is fit on the val origins before T; before val there is no map.

The fitted maps are cached under the dataset's ``_index/search/`` beside the search
index (``simcal-<key>.json``, written atomically), keyed to the index's digest of the
vocabulary fingerprint and shard checksums and to every setting that changes the replay
(mode, window, k, min_matches, horizons, the checkpoint's sha256 for the model mode, the
subsample, seed, prior, folds, and the cut at T when T is inside val). A rebuilt index
replaces the folder and with it every stale map.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from candletok.core.atomic import write_json_atomic
from candletok.core.errors import CandletokError
from candletok.core.jsonsafe import clean_json
from candletok.dataset.manifest import read_manifest
from candletok.evaluation.analogues import (
    AnalogueForecaster,
    analogue_p_up,
    answers_of,
    search_query,
)
from candletok.evaluation.calibrate import (
    CalibratedProbability,
    CalibrationMap,
    calibrate_probability,
)
from candletok.evaluation.evaluate import BASE, Boot, Panel, fit_calibration
from candletok.evaluation.forecasters import BaseRate
from candletok.evaluation.history import History, load_history
from candletok.search.index import SearchIndex, index_dir, open_index
from candletok.search.result import SimilarResult
from candletok.search.similar import similar
from candletok.search.spec import SearchSpec

log = logging.getLogger(__name__)

SIMCAL_FORMAT = "candletok-simcal/1"
NAME = "analogues"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MIN_VAL = 20  # val forecasts needed at a horizon before a map is fit on them


@dataclass(frozen=True)
class ReplaySettings:
    """Everything that changes the val replay, hence the cache key: the search (the
    same :class:`~candletok.search.spec.SearchSpec` the live query ran) and how the
    replay samples and scores it."""

    spec: SearchSpec
    val_origins: int
    prior: float
    seed: int
    folds: int
    n_boot: int


@dataclass
class HorizonAnswer:
    """The calibrated analogue P(close up) at one horizon, with its val evidence."""

    horizon: int
    matches_p_up: float | None  # share of matches up (None: no match with an outcome by T)
    n_eff: float
    p_up_raw: float | None  # shrunk toward the train base rate (the harness's forecaster)
    p_up_calibrated: float | None
    base_rate: float | None  # train up-frequency at this horizon (the map keeps this level)
    val_skill: dict[str, float] | None  # calibrated, out-of-fold, vs the base rate
    val_skill_raw: dict[str, float] | None
    calibration: str  # the map val chose, or why there is none
    val_n: int  # val forecasts the map and the skill rest on
    skill_shown: bool
    words: str


@dataclass
class AnalogueCalibration:
    """The calibration part of a calibrated ``similar`` answer."""

    horizons: list[HorizonAnswer]
    val_origins_asked: int  # distinct val origins the search was replayed at
    val_origins_available: dict[str, int]  # val origins with an outcome known by T, per h
    val_origins: int  # the subsample size asked for
    seed: int
    prior: float
    cut: str  # "all of val", or the time T the val origins were cut at
    cache: str | None  # the cache file (None: not written)
    from_cache: bool
    fit_seconds: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return clean_json(asdict(self))


@dataclass
class CalibratedSimilar:
    """A :class:`~candletok.search.result.SimilarResult` and, unless skipped, its
    calibrated analogue probabilities."""

    result: SimilarResult
    calibration: AnalogueCalibration | None

    def to_dict(self) -> dict[str, Any]:
        d = self.result.to_dict()
        d["calibration"] = None if self.calibration is None else self.calibration.to_dict()
        return d


def _us(text: str | None) -> int | None:
    if not text:
        return None
    dt = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return (dt - EPOCH) // timedelta(microseconds=1)  # exact, no float rounding


def _iso(us: int) -> str:
    return str(np.datetime64(int(us), "us")) + "+00:00"


def val_cut(manifest: dict[str, Any], t_us: int) -> tuple[str | None, int | None]:
    """How much of val a query at T (``t_us``) may learn from: ``("all", None)`` when every val
    outcome was known by T, ``(iso, T)`` when T falls inside val (origins cut at T), and
    ``(None, None)`` when T is before val (train's base rate and any val map would use
    bars after T)."""
    b = manifest.get("boundaries") or {}
    val_from, test_from, last = _us(b.get("val_from")), _us(b.get("test_from")), \
        _us(b.get("last"))
    if "val" not in manifest.get("splits", {}) or val_from is None or t_us < val_from:
        return None, None
    end = test_from if test_from is not None else last
    if end is None or t_us >= end:
        return "all", None
    return _iso(t_us), t_us


def _key(idx: SearchIndex, s: ReplaySettings, cut: str) -> dict[str, Any]:
    calib = {f.name: getattr(s, f.name) for f in fields(s) if f.name != "spec"}
    return {"format": SIMCAL_FORMAT, "index": idx.key, "fingerprint": idx.fingerprint,
            "cut": cut, **s.spec.key(), **calib}


def cache_path(root: str | Path, key: dict[str, Any]) -> Path:
    """Where the fitted maps of one (dataset, settings, cut) live."""
    body = json.dumps(key, sort_keys=True, separators=(",", ":"))
    return index_dir(root) / f"simcal-{hashlib.sha256(body.encode()).hexdigest()[:24]}.json"


def _load(path: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return d if isinstance(d, dict) and d.get("key") == key else None


def fit_val_maps(hist: History, idx: SearchIndex, s: ReplaySettings,
                 cut_us: int | None) -> dict[str, Any]:
    """Replay the analogue forecaster at up to ``s.val_origins`` seeded val origins whose
    outcome was known by ``cut_us`` (all of val when None), and fit a P(up) map per
    horizon on them (the harness's :func:`fit_calibration`)."""
    q = search_query(idx, s.spec)
    fc = AnalogueForecaster(NAME, q, s.spec.horizons, s.val_origins, s.prior, s.seed)
    base = BaseRate()
    fc.fit(hist)
    base.fit(hist)
    panels: dict[int, Panel] = {}
    available: dict[str, int] = {}
    for h in s.spec.horizons:
        rows, dropped = hist.origins("val", h)
        if cut_us is not None:
            rows = rows[hist.ts[rows + h] <= cut_us]  # outcome known by T
        available[str(h)] = int(rows.size)
        panel = Panel("val", h, rows, dropped, hist.forward(rows, h))
        panel.fc[BASE] = base.forecast(hist, rows, h)
        got = fc.forecast(hist, rows, h)
        if got is not None and got.rows.size >= MIN_VAL:
            panel.fc[NAME] = got
        panels[h] = panel
    _, saved = fit_calibration(panels, [fc], hist.ts, s.folds, Boot(s.n_boot, s.seed))
    return {"entries": (saved.get(NAME) or {}).get("p_up", {}), "available": available,
            "asked": fc.asked}


def _words(h: int, cp: CalibratedProbability | None, base: float | None,
           share: float | None) -> str:
    bars = f"{h} bar{'s' if h > 1 else ''}"
    if share is None:
        return (f"{bars}: no match with a known outcome before T, so no analogue forecast"
                + (f"; the base rate, {base:.1%}, is the guide." if base is not None else "."))
    if cp is None or not cp.calibrated:
        return (f"{bars}: no map fit on val for this horizon; the matches' share of up "
                f"moves ({share:.1%}) is uncalibrated and has not been scored.")
    if cp.shows_skill:
        return (f"{bars}: this search has shown skill on val ({cp.skill_text()}, above "
                f"zero): calibrated P(up) {cp.value:.1%} against a base rate of "
                f"{cp.base_rate:.1%}.")
    s = cp.skill or {}
    worse = s.get("hi") is not None and s["hi"] < 0
    return (f"{bars}: this search has shown no skill for this horizon on val "
            f"({cp.skill_text()} {'is below zero' if worse else 'includes zero'}); the "
            f"base rate, {cp.base_rate:.1%}, is the better guide.")


def _answers(res: SimilarResult, fit: dict[str, Any] | None, hs: tuple[int, ...],
             prior: float) -> list[HorizonAnswer]:
    got = answers_of(res)
    out = []
    for h in hs:
        entry = ((fit or {}).get("entries") or {}).get(str(h))
        base = None if entry is None else float(entry["base_rate"])
        a = got.get(h)
        raw = None
        cp = None
        if a is not None and base is not None:
            raw = float(analogue_p_up([a], base, prior)[0])
            cp = calibrate_probability(raw, {"forecasters": {NAME: {"p_up": {str(h): entry}}}},
                                       NAME, h)
        why = "none (no val forecasts)" if entry is None else \
            CalibrationMap.from_dict(entry["map"]).describe()
        out.append(HorizonAnswer(
            horizon=h, matches_p_up=None if a is None else a.p_up,
            n_eff=0.0 if a is None else a.n_eff, p_up_raw=raw,
            p_up_calibrated=None if cp is None else cp.value, base_rate=base,
            val_skill=None if entry is None else entry.get("val_skill"),
            val_skill_raw=None if entry is None else entry.get("val_skill_raw"),
            calibration=why, val_n=0 if entry is None else int(entry.get("n", 0)),
            skill_shown=bool(cp is not None and cp.shows_skill),
            words=_words(h, cp, base, None if a is None else a.p_up)))
    return out


def calibrated_similar(
    dataset: str | Path,
    query: Any,
    spec: SearchSpec | None = None,
    *,
    at: Any = None,
    source: str | None = None,
    calibrate: bool = True,
    val_origins: int = 200,
    prior: float = 20.0,
    seed: int = 0,
    folds: int = 5,
    n_boot: int = 1000,
    refit: bool = False,
    **search: Any,
) -> CalibratedSimilar:
    """:func:`candletok.search.similar.similar` on the dataset folder ``dataset`` (same
    arguments: ``spec``, and ``search`` keywords -- last, mode, top, horizons,
    min_matches, model, device, approximate -- that replace its fields; the one list of
    them is :class:`SearchSpec`'s), plus the calibrated analogue P(close up) at each
    horizon (see the module doc). ``calibrate=False`` skips the calibration;
    ``val_origins`` bounds the val replay (a seeded subsample); ``refit=True`` ignores a
    cached map."""
    if val_origins < 1:
        raise CandletokError(f"val_origins={val_origins} must be at least 1.")
    spec = SearchSpec.of(spec, **search)
    hs = spec.horizons
    idx = open_index(dataset)
    res = similar(idx, query, spec, at=at, source=source)
    if not calibrate:
        return CalibratedSimilar(res, None)
    s = ReplaySettings(spec, int(val_origins), float(prior), int(seed), int(folds),
                       int(n_boot))
    cut, cut_us = val_cut(read_manifest(dataset), res.t_us)
    if cut is None:
        note = ("the query's time T is before the val years: a map fit on val (and the "
                "train base rate) would use bars after T, so no calibration is shown.")
        return CalibratedSimilar(res, AnalogueCalibration(
            _answers(res, None, hs, prior), 0, {}, val_origins, seed, prior, "none",
            None, False, 0.0, [note]))
    key = _key(idx, s, cut)
    path = cache_path(dataset, key)
    fit = None if refit else _load(path, key)
    from_cache = fit is not None
    cached: str | None = str(path)
    if fit is None:
        t0 = time.perf_counter()
        fit = fit_val_maps(load_history(dataset), idx, s, cut_us)
        fit["seconds"] = time.perf_counter() - t0
        fit = clean_json({"format": SIMCAL_FORMAT, "key": key, **fit})
        try:
            write_json_atomic(path, fit)
        except OSError as exc:  # a read-only dataset still answers; it refits each time
            log.warning("could not cache the analogue calibration in %s (%s)", path, exc)
            cached = None
    assert fit is not None
    notes = [] if cut == "all" else [
        f"T is inside val: the map is fit on the val origins whose outcome was known by "
        f"{cut[:10]}."]
    return CalibratedSimilar(res, AnalogueCalibration(
        _answers(res, fit, hs, prior), int(fit.get("asked", 0)),
        dict(fit.get("available", {})), val_origins, seed, prior, cut,
        cached, from_cache, float(fit.get("seconds", 0.0)),
        notes))
