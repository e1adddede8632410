"""The coarse search alphabet (symbols at their thresholds, motif counts on the sample, the
cache), the back-off hint of exact search, and token words that hold for a whole bin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from _helpers import COARSE as COARSE_BINS
from _helpers import run_main
from hypothesis import given, settings
from hypothesis import strategies as st

from candletok.core.ids import MISSING, N_SPECIAL
from candletok.data.synthetic import synthetic_bars
from candletok.dataset.build import build_dataset
from candletok.search.alphabet import (
    COARSE,
    Alphabet,
    alphabet_index,
    choose,
    motif_counts,
)
from candletok.search.index import index_dir, open_index
from candletok.search.modes.exact import backoff_hint
from candletok.search.similar import similar
from candletok.tokenize.bins import BinsTokenizer
from candletok.tokenize.features import features_from_prices
from candletok.tokenize.words import (
    BODY_WORDS,
    _feature_word,
    describe_bounds,
    thresholds_text,
)


def sym(a: Alphabet, gap: float, body: float, upper: float = 0.1, lower: float = 0.1) -> str:
    return a.describe(int(a.symbols(np.array([[gap, body, upper, lower]]))[0]))


# ---- symbols ------------------------------------------------------------------------------
def test_symbols_at_their_thresholds() -> None:
    a = Alphabet(gap=0.05, doji=0.1, wide=0.6)
    assert a.size == 18 and a.radix == N_SPECIAL + 18
    eps = 1e-9
    assert sym(a, 0.05, 0.3).startswith("gap up")  # at the threshold: a gap
    assert sym(a, 0.05 - eps, 0.3).startswith("no gap")
    assert sym(a, -0.05, 0.3).startswith("gap down")
    assert sym(a, -0.05 + eps, 0.3).startswith("no gap")
    assert sym(a, 0.0, 0.1).split(", ")[1] == "bull"
    assert sym(a, 0.0, 0.1 - eps).split(", ")[1] == "doji"
    assert sym(a, 0.0, -0.1 + eps).split(", ")[1] == "doji"
    assert sym(a, 0.0, -0.1).split(", ")[1] == "bear"
    # range = upper + |body| + lower, wide from 0.6 on
    assert sym(a, 0.0, -0.2, 0.2, 0.2).endswith("wide")
    assert sym(a, 0.0, -0.2, 0.2, 0.2 - eps).endswith("narrow")
    assert Alphabet(wide=None).size == 9 and sym(Alphabet(wide=None), 0.2, 0.0) == "gap up, doji"
    # a candle without features keeps its special token, or is MISSING
    X = np.array([[np.nan] * 4, [np.nan] * 4, [0.0, 0.0, 0.0, 0.0]])
    assert a.symbols(X, np.array([1, 500, 600])).tolist()[:2] == [1, MISSING]
    assert a.symbols(X).tolist()[:2] == [MISSING, MISSING]


def test_symbols_from_hand_built_bars() -> None:
    """Bars built so their features sit just either side of each threshold (prev close
    100, scale 1%): the symbols read what the bars show."""
    s = 0.01
    def bar(gap: float, body: float, up: float, lo: float) -> list[float]:
        o = 100 * np.exp(gap * s)
        c = o * np.exp(body * s)
        return [o, max(o, c) * np.exp(up * s), min(o, c) * np.exp(-lo * s), c]
    rows = np.array([bar(0.051, 0.101, 0.2, 0.3), bar(0.049, 0.099, 0.2, 0.3),
                     bar(-0.051, -0.101, 0.25, 0.24), bar(0.0, -0.2, 0.3, 0.11)])
    F = features_from_prices(*rows.T, np.full(4, 100.0), np.full(4, s))
    words = [COARSE.describe(int(x)) for x in COARSE.symbols(F)]
    assert words == ["gap up, bull, wide", "no gap, doji, narrow", "gap down, bear, narrow",
                     "no gap, bear, wide"]


def test_rules_say_the_thresholds() -> None:
    r = COARSE.rules()
    assert f"|gap| < {COARSE.gap:g}" in r and f"|body| < {COARSE.doji:g}" in r
    assert f">= {COARSE.wide:g}" in r and "volatility units" in r


# ---- the default on the sample ---------------------------------------------------------------
@pytest.fixture(scope="module")
def sample_feats() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The bundled sample's four symbols: causal features, series ids and a train mask
    (the default time split's train part)."""
    from candletok.data.sample import load_sample
    from candletok.dataset.splits import split_boundaries
    from candletok.tokenize.features import candle_features

    bars = load_sample(["AAPL", "MSFT", "IBM", "GOOG"])
    f = candle_features(bars)
    F = f.select("gap", "body", "upper", "lower").to_numpy()
    sid = f["symbol"].rle_id().to_numpy()
    times = np.unique(bars["ts"].dt.epoch("us").to_numpy())
    val_from, _ = split_boundaries(bars["ts"].min(), bars["ts"].max(), bar_times=times)
    return F, sid, (f["ts"] < val_from).to_numpy()


def test_top_3_candle_motifs_repeat_tens_of_times_on_the_sample(
        sample_feats: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    F, sid, train = sample_feats
    syms = COARSE.symbols(F)
    every = motif_counts(sid, syms, np.ones(syms.size, dtype=bool))
    assert every[0] >= 10 and every[19] >= 10  # tens, not the vocabulary's one or two
    on_train = motif_counts(sid, syms, train)
    assert on_train[19] >= 30  # the rule the default was chosen by
    # and the default is the rule's pick on train
    rows = choose(F, sid, train)
    best = next(r for r in rows if r["chosen"])
    assert (best["gap"], best["doji"], best["wide"]) == (COARSE.gap, COARSE.doji, COARSE.wide)
    assert all(r["bits"] <= best["bits"] for r in rows if r["top20"] >= 30)


# ---- the cache and the hint on a small dataset ------------------------------------------------
@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("alphabet") / "ds"
    bars = synthetic_bars(["AA", "BB"], n_bars=300, seed=3)

    def loader(symbols: list[str], **_: Any) -> pl.DataFrame:
        return bars.filter(pl.col("symbol").is_in(symbols))

    build_dataset(["AA", "BB"], out, loader=loader)  # the default (fine) vocabulary
    return out


def test_alphabet_index_is_cached_beside_the_index(small: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    idx = open_index(small)
    view = alphabet_index(idx, COARSE)
    assert alphabet_index(idx, COARSE) is view  # kept on the object
    path = index_dir(small) / "alphabet-coarse.npz"
    assert path.is_file()
    again = alphabet_index(open_index(small), COARSE)  # read from the cache
    assert np.array_equal(again.tokens, view.tokens) and np.array_equal(again.grams, view.grams)
    assert view.n == idx.n and int(np.asarray(view.tokens).max()) < COARSE.radix
    with np.load(path) as z:  # an edited cache is rebuilt, never trusted
        parts = dict(z)
    parts["symbols"] = np.asarray(parts["symbols"]).copy()
    parts["symbols"][5] = N_SPECIAL
    with open(path, "wb") as fh:
        np.savez(fh, **parts)
    with caplog.at_level("WARNING"):
        fixed = alphabet_index(open_index(small), COARSE)
    assert "checksum" in caplog.text and np.array_equal(fixed.tokens, view.tokens)


def test_backoff_hint_says_what_to_try(small: Path) -> None:
    tok = similar(small, "AA", last=5, alphabet="tokens", min_matches=10)
    assert tok.summary["backed_off"] and tok.summary["window"] < 5
    hint = [w for w in tok.words if w.startswith("hint:")]
    assert hint == [backoff_hint(5, tok.summary["window"], "tokens")]
    assert 'alphabet="coarse"' in hint[0] and 'mode="nearest"' in hint[0]
    assert f"last={tok.summary['window']}" in hint[0]
    co = similar(small, "AA", last=5, min_matches=10)  # the coarse default
    assert co.summary["alphabet"] == "coarse" and not co.summary["same_tokens"]
    assert co.summary["matches"] >= tok.summary["matches"] or \
        co.summary["window"] >= tok.summary["window"]
    hint = [w for w in co.words if w.startswith("hint:")]
    if co.summary["backed_off"]:
        assert len(hint) == 1 and "alphabet" not in hint[0] and 'mode="nearest"' in hint[0]
    none = similar(small, "AA", last=5, alphabet="tokens", min_matches=0)
    assert not none.summary["backed_off"] and not any(w.startswith("hint:") for w in none.words)


def test_cli_alphabet_flag(small: Path, capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = run_main(("similar", "AA", "--dataset", str(small), "--last", "4",
                             "--no-calibrate", "--alphabet", "tokens"), small.parent, capsys,
                            monkeypatch)
    assert code == 0 and "hint:" in out and 'alphabet="coarse"' in out
    code, out, _ = run_main(("motifs", str(small), "--n", "2", "--top", "3"), small.parent,
                            capsys, monkeypatch)
    assert code == 0 and "coarse alphabet" in out and "|body| <" in out
    code, _, err = run_main(("motifs", str(small), "--alphabet", "fine"), small.parent, capsys,
                            monkeypatch)
    assert code != 0 and "--alphabet" in err and "coarse or tokens" in " ".join(err.split())


# ---- faithful token words ----------------------------------------------------------------------
def _parts_hold(lo: np.ndarray, hi: np.ndarray, names: tuple[str, ...]) -> None:
    """Each feature's word in a box's description is the word of every value in the box
    (checked at both edges and inside), or the description gives the range instead."""
    parts = describe_bounds(lo, hi, names).split(", ")
    assert len(parts) == len(names)
    for j, (name, part) in enumerate(zip(names, parts, strict=True)):
        a = max(lo[j], 0.0) if name in ("upper", "lower") else lo[j]
        b = float(np.nextafter(hi[j], -np.inf))
        pts = [x for x in (a, b, (a + b) / 2) if np.isfinite(x)] or [0.0]
        pts += [-50.0] if not np.isfinite(a) else []
        pts += [50.0] if not np.isfinite(b) else []
        if any(ch.isdigit() for ch in part) or part.startswith("any "):  # a range
            continue
        if part.startswith("some "):  # a wick that is never exactly 0
            assert a > 0
            continue
        for x in pts:
            assert _feature_word(name, x) == part, (name, lo[j], hi[j], x)
        if name == "body" and part == "doji body":
            assert a > -BODY_WORDS[0][0] and b < BODY_WORDS[0][0]


@pytest.mark.parametrize("params", [COARSE_BINS, {}, dict(gap_bins=5, body_bins=7,
                                                          upper_bins=3, lower_bins=3)])
def test_every_bins_token_word_holds_for_its_whole_bin(params: dict[str, int]) -> None:
    tok = BinsTokenizer(**params)
    tok.fit(synthetic_bars(["X", "Y"], n_bars=600, seed=1))
    lo, hi = tok.token_bounds()
    assert lo.shape == (tok.n_candle_tokens, len(tok.feature_names))
    for i in range(tok.n_candle_tokens):
        _parts_hold(lo[i], hi[i], tok.feature_names)
    words = [tok.describe(t) for t in range(N_SPECIAL, tok.vocab_size)]
    assert len(set(words)) == len(words)  # still one reading per token
    if params == COARSE_BINS:  # the old unfaithful "doji" bin now reads as its range
        mid = [w for w in words if "body -" in w and "..+" in w]
        assert mid and not any("doji" in w for w in words)


@settings(max_examples=30, deadline=None)
@given(edges=st.lists(st.floats(-3, 3, allow_nan=False), min_size=1, max_size=6, unique=True))
def test_words_hold_for_any_box(edges: list[float]) -> None:
    e = np.sort(np.array(edges))
    names = ("gap", "body", "upper", "lower")
    cuts = np.concatenate([[-np.inf], e, [np.inf]])
    for k in range(cuts.size - 1):
        lo = np.array([cuts[k], cuts[k], max(cuts[k], 0.0), 0.0])
        hi = np.array([cuts[k + 1], cuts[k + 1], max(cuts[k + 1], 1e-9), np.inf])
        _parts_hold(lo, hi, names)


def test_inspect_prints_the_word_thresholds(small: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = run_main(("inspect", str(small / "vocab.json"), "--rows", "3"),
                            small.parent, capsys, monkeypatch)
    text = " ".join(out.split())
    assert code == 0 and " ".join(thresholds_text().split()) in text
    assert " ".join(COARSE.rules().split()) in text
