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

The stop and target odds (P(+k vol units before -k) and the reverse within h bars) are
scored beside these, against the driftless random walk's closed form
(:mod:`~candletok.evaluation.oddsscore`).

Every score comes with a 95% circular block-bootstrap interval over dates (a date's
forecasts share one market; blocks cover at least h dates because h-step windows
overlap) and a baseline beside it; each row ends in a verdict in words.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from candletok.core.errors import CandletokError
from candletok.core.horizons import check_horizons
from candletok.core.ids import normalize_split
from candletok.core.jsonsafe import clean_json
from candletok.core.progress import Progress, progress
from candletok.dataset.manifest import read_manifest
from candletok.evaluation import conformal, winner
from candletok.evaluation import scores as sc
from candletok.evaluation.analogues import SEARCH_MODES, search_forecasters
from candletok.evaluation.calibrate import MapChoice, choose_map, save_calibration
from candletok.evaluation.forecasters import (
    Forecast,
    Forecaster,
    NGram,
    roles_of,
)
from candletok.evaluation.history import SPLIT_CODE, History, load_history, split_dates
from candletok.evaluation.oddsscore import DEFAULT_KS, OddsScoreRow, odds_verdicts, score_odds
from candletok.evaluation.references import default_forecasters
from candletok.evaluation.rows import (  # noqa: F401  (BASE, Panel: read from here too)
    BASE,
    BitsRow,
    Boot,
    DirectionRow,
    Losses,
    Panel,
    QuantileRow,
    RangeRow,
    _by_date,
    _est,
    bits_rows,
    direction_row,
    make_panel,
    mcs_of,
    quantile_row,
    range_constants,
    range_row,
)

log = logging.getLogger(__name__)

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
    #: stop and target odds (:mod:`~candletok.evaluation.oddsscore`), when asked for
    odds: list[OddsScoreRow] = field(default_factory=list)
    #: every origin's shown forecast (:func:`~candletok.evaluation.forecastfile.
    #: forecast_frame`), when asked for (``keep_forecasts``); not part of the JSON
    forecasts: Any = field(default=None, repr=False)
    #: conformal intervals' coverage before and after (:mod:`~candletok.evaluation.conformal`)
    intervals: list[Any] = field(default_factory=list)
    #: the forecaster each answer comes from, chosen on val (:mod:`~candletok.evaluation.winner`)
    winners: dict[str, Any] = field(default_factory=dict)

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


# ---- fitting on val -----------------------------------------------------------------------
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
    #: calendar of the sampled bars' times: "auto" (each symbol's exchange), a MIC, or
    #: None (the series' own weekly grid)
    exchange: str | None = "auto"


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
        gpt = GPTForecaster(m, samples=c.samples, subsample=c.subsample,
                            max_horizon=max(horizons), seed=c.seed, name=name,
                            answer=i == 0)
        gpt.exchange = c.exchange
        fcs.append(gpt)
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
    odds: Sequence[float] = DEFAULT_KS,
    calendar_exchange: str | None = "auto",
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
    ``report.forecasts`` (what ``evaluate --forecasts`` writes).

    ``odds`` are the barrier multiples k of the stop and target odds scored at every
    horizon (empty: none; :mod:`~candletok.evaluation.oddsscore`); CandleGPT's maps of
    them are saved with the others. ``calendar_exchange`` gives the times of CandleGPT's
    sampled bars (their calendar inputs): ``"auto"`` each symbol's exchange
    (:func:`~candletok.tokenize.exchange.exchange_for_symbol`), a MIC such as ``"XNYS"``
    for every symbol, or ``"none"`` for each series' own weekly grid."""
    split, hs = _check_args(split, horizons)
    exchange = _exchange(calendar_exchange)
    hist = dataset if isinstance(dataset, History) else load_history(dataset)
    fcs = _forecasters(dataset, model, forecasters, hs,
                       Costly(samples, subsample, tuple(analogues), analogue_subsample, seed,
                              device, exchange), compare)
    base_only = [f for f in fcs if not f.learned]
    steps = len(fcs) + len(base_only) + len(hs) * len(fcs) * (1 if split == "val" else 2) + 2
    with progress("evaluate", steps) as bar:
        return _evaluate(hist, dataset, model, fcs, base_only, split, hs, folds,
                         Boot(n_boot, seed), keep_forecasts, odds, save_calibration_map, bar)


def _evaluate(hist: History, dataset: Any, model: Any, fcs: list[Forecaster],
              base_only: list[Forecaster], split: str, hs: tuple[int, ...], folds: int,
              boot: Boot, keep_forecasts: bool, odds: Sequence[float],
              save_calibration_map: bool, bar: Progress) -> EvalReport:
    """The body of :func:`evaluate_forecasts`, advancing ``bar`` as it goes: fits,
    panels (one step per forecaster and panel), scoring, the odds."""
    for f in fcs:
        bar.advance(0, f"fit {f.name}")
        f.fit(hist)
        bar.advance()
    dates = hist.ts
    train1 = make_panel(hist, base_only, "train", 1, bar)
    val = {h: make_panel(hist, fcs, "val", h, bar) for h in hs}
    ev = val if split == "val" else {h: make_panel(hist, fcs, split, h, bar) for h in hs}
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
    bar.advance(0, "scores")
    report = _score(hist, fcs, ev, choices, consts, fit_on, split, hs, boot)
    bar.advance(1, "stop/target odds")
    if odds:
        gpt = next((f for f in fcs if callable(getattr(f, "path_logs", None))), None)
        scored = score_odds(hist, gpt, split, hs, odds, folds, boot)
        report.odds = scored.rows
        if gpt is not None and scored.saved:
            saved.setdefault(gpt.name, {}).update(scored.saved)
        report.notes += scored.notes + odds_verdicts(scored.rows)
    bar.advance()
    ifits = conformal.fit_all(val, [f.name for f in fcs], hist, consts)
    walks, report.intervals = conformal.apply_all(ev, ifits, hist, consts)
    aci_walk = conformal.save_fits(saved, ifits, walks, hist, ev)
    report.winners = winner.choose(val, fcs, choices, consts, dates, report)
    if keep_forecasts:
        from candletok.evaluation.forecastfile import forecast_frame

        report.forecasts = forecast_frame(
            hist, ev, {n: {h: c.map for h, c in by.items()} for n, by in choices.items()},
            consts, {f.name for f in fcs if f.learned}, ifits, walks)
    measured: dict[str, dict[str, Any]] = {}  # what the evaluated split measured (generate)
    for row in report.direction:
        if "p_up" in saved.get(row.forecaster, {}):
            # everything predict's test check prints, so it shows what was scored here
            measured.setdefault(row.forecaster, {})[str(row.horizon)] = {
                "n": row.n, "skill": _est(row.skill), "verdict": row.verdict,
                "brier": row.brier.value, "brier_base": row.brier_base,
                "base_rate": row.base_rate, "calibration": row.calibration,
                "reliability": [list(r) for r in row.reliability]}
    report.calibration = {"fingerprint": hist.tok.fingerprint, "fit_on": "val",
                          "folds": folds, "split_from": report.split_from,
                          **_fit_facts(dataset, hist), "forecasters": saved,
                          # which entry is the checkpoint's own forecaster (what predict shows)
                          "model_forecaster": next((f.name for f in fcs
                                                    if "answer" in roles_of(f)), None),
                          "evaluated": {"split": split, "p_up": measured},
                          "winners": report.winners,
                          "aci_walk": {"split": split, **aci_walk}}
    report.notes += _notes(fcs, choices, val)
    if split == "val":
        report.notes.append("on val, P(up) is calibrated out-of-fold, but the learned "
                            "forecasters' range constants (one each) were fit on val itself, "
                            "and so were the conformal intervals (in-sample).")
    if model is not None and isinstance(model, str | Path) and save_calibration_map:
        report.calibration_file = str(save_calibration(model, _clean(report.calibration)))
    return report


def _exchange(choice: str | None) -> str | None:
    """``calendar_exchange`` as the forecaster takes it: "auto", a checked MIC, or None."""
    from candletok.tokenize.exchange import resolve_exchange

    if choice is None or choice.strip().lower() == "auto":
        return "auto"
    return resolve_exchange("", choice)  # "none" -> None; an unknown code is refused


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
