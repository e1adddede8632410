"""Loud fallbacks on the P(close up) path, and the shared primitives' one homes.

Every fallback (an unusable calibration, up-rates that could not be learned, a vocabulary
that could not be checked, an interval read as daily) says why, once, as a warning on the
``candletok`` logger; the answer it falls back to is unchanged.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from candletok.core import fallback
from candletok.core.display import is_intraday
from candletok.core.errors import CandletokError, ModelError
from candletok.core.horizons import check_horizons
from candletok.core.jsonsafe import clean_json
from candletok.core.stats import wilson
from candletok.data.synthetic import synthetic_bars
from candletok.evaluation.calibrate import (
    CALIBRATION_FORMAT,
    calibration_path,
    load_calibration,
    read_calibration,
)
from candletok.tokenize.bins import BinsTokenizer


@pytest.fixture(autouse=True)
def _fresh_fallbacks() -> Any:
    """Each test sees its own first warning (the process-wide 'said once' set is reset)."""
    fallback._SAID.clear()
    yield
    fallback._SAID.clear()


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
            and r.name.startswith("candletok")]


def _model_file(tmp_path: Path) -> Path:
    p = tmp_path / "model.pt"
    p.write_bytes(b"weights")
    return p


# ---- load_calibration -------------------------------------------------------------------
def test_no_calibration_file_is_no_fallback(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="candletok"):
        assert load_calibration(_model_file(tmp_path)) is None
    assert _warnings(caplog) == []
    assert read_calibration(_model_file(tmp_path)) == (None, None)


@pytest.mark.parametrize(("body", "words"), [
    ("{not json", "cannot be read as JSON"),
    (json.dumps({"format": "something-else/9"}), "is not a candletok calibration"),
    (json.dumps([1, 2]), "is not a candletok calibration"),
    (json.dumps({"format": CALIBRATION_FORMAT, "model_sha256": "0" * 64}),
     "fit for another version"),
])
def test_an_unusable_calibration_is_ignored_with_its_reason_said_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, body: str, words: str) -> None:
    model = _model_file(tmp_path)
    calibration_path(model).write_text(body, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="candletok"):
        assert load_calibration(model) is None
        assert load_calibration(model) is None  # the same reason is not said again
    said = _warnings(caplog)
    assert len(said) == 1 and words in said[0] and "uncalibrated" in said[0]
    doc, why = read_calibration(model)
    assert doc is None and why is not None and words in why


def test_a_matching_calibration_loads_without_a_word(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    from candletok.core.atomic import sha256_file

    model = _model_file(tmp_path)
    doc = {"format": CALIBRATION_FORMAT, "model_sha256": sha256_file(model)}
    calibration_path(model).write_text(json.dumps(doc), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="candletok"):
        assert load_calibration(model) == doc
    assert _warnings(caplog) == []


# ---- check_fingerprint ------------------------------------------------------------------
def test_an_unknown_fingerprint_is_not_a_mismatch_but_is_said(
        caplog: pytest.LogCaptureFixture) -> None:
    from candletok.model.checkpoint import check_fingerprint

    with caplog.at_level(logging.WARNING, logger="candletok"):
        check_fingerprint("abc", "abc")
        assert _warnings(caplog) == []
        check_fingerprint(None, "abc", "this tokenizer")
        check_fingerprint("abc", None)
    said = _warnings(caplog)
    assert len(said) == 2
    assert said[0].startswith("the model's vocabulary fingerprint is unknown")
    assert said[1].startswith("the dataset's vocabulary fingerprint is unknown")
    with pytest.raises(ModelError, match="trained on vocabulary"):
        check_fingerprint("abc", "abd")


# ---- up rates ---------------------------------------------------------------------------
class _NoVocab:
    root = None

    def tokenizer(self) -> None:
        return None


class _Unreadable:
    root = Path("/nonexistent/dataset")
    split = "train"

    def __init__(self, tok: BinsTokenizer) -> None:
        self.tok = tok

    def tokenizer(self) -> BinsTokenizer:
        return self.tok

    @property
    def bounds(self) -> np.ndarray:
        raise OSError("shard gone")


@pytest.fixture(scope="module")
def tok() -> BinsTokenizer:
    bars = synthetic_bars(["AAA", "BBB"], n_bars=200, seed=1)
    return BinsTokenizer(gap_bins=3, body_bins=3, upper_bins=2, lower_bins=2).fit(bars)


def test_up_rates_that_cannot_be_learned_say_why(tok: BinsTokenizer,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    from candletok.model.run import _up_rates

    with caplog.at_level(logging.WARNING, logger="candletok"):
        assert _up_rates(_NoVocab()) is None  # type: ignore[arg-type]
        assert _up_rates(_Unreadable(tok)) is None  # type: ignore[arg-type]
    said = _warnings(caplog)
    assert len(said) == 2
    assert "no vocabulary" in said[0] and "could not be read (shard gone)" in said[1]
    assert all("representative candle" in s for s in said)


def test_a_checkpoint_without_up_rates_falls_back_to_the_signs_and_says_so(
        tok: BinsTokenizer, caplog: pytest.LogCaptureFixture) -> None:
    from candletok.model.updown import up_mask, up_probability

    prior = up_mask(tok).astype(float)
    with caplog.at_level(logging.WARNING, logger="candletok"):
        got = up_probability(SimpleNamespace(meta={}), tok)  # type: ignore[arg-type]
        short = up_probability(SimpleNamespace(meta={"token_up_rate": [0.5]}), tok)  # type: ignore[arg-type]
        rates = np.linspace(0, 1, tok.vocab_size)
        full = up_probability(SimpleNamespace(meta={"token_up_rate": rates.tolist()}), tok)  # type: ignore[arg-type]
    assert np.array_equal(got, prior) and np.array_equal(short, prior)
    assert np.allclose(full, rates)
    said = _warnings(caplog)
    assert len(said) == 2 and "holds no learned" in said[0] and "holds 1 learned" in said[1]


# ---- is_intraday ------------------------------------------------------------------------
def test_is_intraday_says_when_it_guesses_daily(caplog: pytest.LogCaptureFixture) -> None:
    day = 86_400_000_000
    with caplog.at_level(logging.WARNING, logger="candletok"):
        assert is_intraday("1h") and not is_intraday("1d")
        assert is_intraday(None, np.array([day + 3_600_000_000]))
        assert not is_intraday("fortnightly", np.array([day]))  # the times tell: no guess
        assert _warnings(caplog) == []
        assert not is_intraday("fortnightly")
        assert not is_intraday(None)
    said = _warnings(caplog)
    assert len(said) == 2 and all("read as daily" in s for s in said)
    assert "'fortnightly'" in said[0]


def test_the_model_calendar_asks_the_one_is_intraday(caplog: pytest.LogCaptureFixture) -> None:
    from candletok.model.config import calendar_spec

    with caplog.at_level(logging.WARNING, logger="candletok"):
        assert calendar_spec("auto", None) is None  # unknown interval: off by design
        assert calendar_spec("auto", "1h") is not None
    assert _warnings(caplog) == []


# ---- the primitives' one homes ----------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 500), frac=st.floats(0, 1))
def test_wilson_arrays_equal_scalars_and_hold_the_proportion(n: int, frac: float) -> None:
    k = round(frac * n)
    lo, hi = wilson(k, n)
    alo, ahi = wilson(np.array([k, k]), np.array([n, n]))
    if n == 0:
        assert math.isnan(lo) and math.isnan(hi) and np.isnan(alo).all()
        return
    assert isinstance(lo, float) and 0.0 <= lo <= k / n <= hi <= 1.0
    assert alo.tolist() == [lo, lo] and ahi.tolist() == [hi, hi]


@settings(max_examples=60, deadline=None)
@given(st.recursive(
    st.floats(allow_nan=True, allow_infinity=True) | st.integers() | st.text(max_size=3)
    | st.none(),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.integers(0, 9), kids,
                                                             max_size=3),
    max_leaves=12))
def test_clean_json_always_gives_strict_json(obj: Any) -> None:
    out = clean_json(obj, str_keys=True)
    text = json.dumps(out, allow_nan=False)  # no NaN, no infinity reaches the file
    assert json.loads(text) == out
    assert clean_json((np.float64("nan"), np.int64(3))) == [None, 3]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-3, 30), max_size=6))
def test_check_horizons_sorts_unique_positive_or_says_why(hs: list[int]) -> None:
    if hs and min(hs) >= 1:
        assert check_horizons(hs) == tuple(sorted(set(hs)))
        assert check_horizons(",".join(map(str, hs))) == tuple(sorted(set(hs)))
    else:
        with pytest.raises(CandletokError, match="horizons must"):
            check_horizons(hs)


def test_history_and_checkpoint_up_rates_count_by_one_rule(tok: BinsTokenizer) -> None:
    from candletok.evaluation.history import history_from_bars, token_up_rates
    from candletok.model.updown import closed_up, smoothed_up_rates

    bars = synthetic_bars(["AAA", "BBB"], n_bars=200, seed=1)
    hist = history_from_bars(bars, tok, "2100-01-01", "2100-01-02")  # everything is train
    want = smoothed_up_rates(hist.token, closed_up(hist.close, hist.prev_close), tok)
    assert np.array_equal(token_up_rates(hist), want)
    assert closed_up(np.array([1.0, 2.0, 2.0]), np.array([2.0, 1.0, 2.0])).tolist() == \
        [0.0, 1.0, 0.0]  # an unchanged close is not up
    assert isinstance(pl.DataFrame, type)


def test_an_unreadable_train_split_leaves_the_base_rate_unknown_and_says_why(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from candletok.predict.predict import train_base_rate

    ds = SimpleNamespace(root=tmp_path / "not-a-dataset")
    with caplog.at_level(logging.WARNING, logger="candletok"):
        assert train_base_rate(SimpleNamespace(meta={}), ds) is None  # type: ignore[arg-type]
    said = _warnings(caplog)
    assert len(said) == 1 and "train base rate is unknown" in said[0]


def test_predict_says_why_a_stale_calibration_is_ignored(tmp_path: Path) -> None:
    """End to end: a calibration beside the model that does not apply is not applied, and
    the CLI says why on stderr (before, ``predict`` showed the raw number and only said
    there was no calibration)."""
    from typer.testing import CliRunner

    from candletok.cli import commands  # noqa: F401  (registers every command)
    from candletok.cli.app import app
    from candletok.dataset.build import build_dataset
    from candletok.model.train import TrainConfig, train

    ds, model = tmp_path / "ds", tmp_path / "m.pt"
    build_dataset(["AAPL"], ds, source="sample", start="2011-01-01",
                  tokenizer_params=dict(gap_bins=3, body_bins=3, upper_bins=2, lower_bins=2))
    train(ds, TrainConfig(steps=2, context=16, n_layer=1, n_head=2, n_embd=16, batch_size=8,
                          eval_every=2, eval_windows=4), out=model, device="cpu")
    calibration_path(model).write_text(json.dumps(
        {"format": CALIBRATION_FORMAT, "model_sha256": "0" * 64}), encoding="utf-8")
    r = CliRunner().invoke(app, ["predict", "AAPL", "--model", str(model), "--dataset",
                                 str(ds)])
    assert r.exit_code == 0, r.output
    text = r.output + (r.stderr if r.stderr_bytes is not None else "")
    assert "ignoring the calibration" in text and "fit for another version" in text
