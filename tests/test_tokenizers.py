"""Tokenizers: exact round trips, bounded decoding, causality, scale invariance, files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_features import random_bars

from candletok import TokenizerError
from candletok.data.bars import validate_bars
from candletok.data.sample import load_sample
from candletok.tokenize.base import Tokenizer
from candletok.tokenize.bins import WICKS, BinsTokenizer
from candletok.tokenize.features import FeatureConfig, features_from_prices
from candletok.tokenize.kmeans import KMeansTokenizer
from candletok.tokenize.nearest_centroid import CentroidGrid, brute_nearest
from candletok.tokenize.registry import load_tokenizer

SCHEMES = ["bins", "bins_vol", "kmeans"]


def make(name: str) -> Tokenizer:
    if name == "bins":
        return BinsTokenizer()
    if name == "bins_vol":
        return BinsTokenizer(5, 7, 3, 3, vol_bins=3)
    return KMeansTokenizer(k=48, seed=3)


@pytest.fixture(scope="module")
def sample() -> pl.DataFrame:
    return load_sample(["AAPL", "IBM", "MSFT"])


@pytest.fixture(scope="module")
def train(sample: pl.DataFrame) -> pl.DataFrame:
    return sample.filter(pl.col("ts") < pl.datetime(2008, 1, 1, time_zone="UTC"))


@pytest.fixture(scope="module")
def toks(train: pl.DataFrame) -> dict[str, Tokenizer]:
    return {n: make(n).fit(train) for n in SCHEMES}


@pytest.mark.parametrize("name", SCHEMES)
def test_specials_and_sizes(toks: dict[str, Tokenizer], name: str) -> None:
    tok = toks[name]
    assert (tok.PAD, tok.BOS, tok.EOS, tok.MISSING, tok.N_SPECIAL) == (0, 1, 2, 3, 4)
    assert tok.vocab_size == tok.n_candle_tokens + 4 <= 65536
    assert len(tok.fingerprint) == 16
    D = tok.decode_features(np.arange(4, dtype=np.uint16))
    assert np.isnan(D).all()


@pytest.mark.parametrize("name", SCHEMES)
def test_every_candle_token_reencodes_to_itself(toks: dict[str, Tokenizer], name: str) -> None:
    tok = toks[name]
    t = np.arange(tok.N_SPECIAL, tok.vocab_size, dtype=np.uint16)
    D = tok.decode_features(t)
    assert (D[:, 2:4] >= 0).all()  # wicks never negative
    assert np.array_equal(tok.encode_features(D), t)


@pytest.mark.parametrize("name", SCHEMES)
@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_generate_then_encode_is_exact(toks: dict[str, Tokenizer], name: str,
                                       data: st.DataObject) -> None:
    tok = toks[name]
    t = np.array(data.draw(st.lists(st.integers(tok.N_SPECIAL, tok.vocab_size - 1),
                                    min_size=1, max_size=80)), dtype=np.uint16)
    c0 = data.draw(st.floats(0.01, 1e5))
    s0 = data.draw(st.one_of(st.none(), st.floats(1e-4, 0.2)))
    bars = tok.generate_bars(t, c0, s0)
    validate_bars(bars, "strict")
    enc = tok.encode(bars)
    assert np.array_equal(enc["token"].to_numpy(), t)
    # anchored decode, re-featurized against the stored prev_close/scale -> same tokens
    dec = tok.decode(enc)
    validate_bars(dec, "strict")
    F = features_from_prices(*(dec[c].to_numpy() for c in ("open", "high", "low", "close")),
                             enc["prev_close"].to_numpy(), enc["scale"].to_numpy())
    if tok.features.volume:
        F = np.column_stack([F, tok.decode_features(t)[:, 4]])
    assert np.array_equal(tok.encode_features(F), t)
    # the vectorized path rebuild matches the single-path rebuild
    paths = tok.rebuild_paths(np.stack([t, t]), c0, s0 if s0 else tok.default_scale())
    np.testing.assert_allclose(paths["close"][1], bars["close"].to_numpy()[1:], rtol=1e-12)


@pytest.mark.parametrize("name", SCHEMES)
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_anchored_roundtrip_on_random_bars(toks: dict[str, Tokenizer], name: str,
                                           seed: int) -> None:
    tok = toks[name]
    bars = random_bars(seed, n=120)
    enc = tok.encode(bars)
    assert enc.schema["token"] == pl.UInt16 and enc.equals(enc.sort("symbol", "ts"))
    t = enc["token"].to_numpy()
    assert t.min() >= tok.N_SPECIAL
    dec = tok.decode(enc)
    validate_bars(dec, "strict")
    assert dec["volume"].null_count() == dec.height
    F = features_from_prices(*(dec[c].to_numpy() for c in ("open", "high", "low", "close")),
                             enc["prev_close"].to_numpy(), enc["scale"].to_numpy())
    if tok.features.volume:
        F = np.column_stack([F, tok.decode_features(t)[:, 4]])
    assert np.array_equal(tok.encode_features(F), t)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_bins_decode_within_half_a_bin(toks: dict[str, Tokenizer], seed: int) -> None:
    tok = toks["bins"]
    assert isinstance(tok, BinsTokenizer)
    bars = random_bars(seed, n=150)
    _feats, X = tok.feature_matrix(bars)
    t = tok.encode_features(X)
    D = tok.decode_features(t)
    tail = tok.tail_mask(t)
    b = tok.bin_indices(t)
    for j, name in enumerate(tok.feature_names):
        e = tok.edges[name]
        inner = ~tail[:, j]
        if name in WICKS:  # the zero-wick bin decodes exactly
            zero = b[:, j] == 0
            assert (D[zero, j] == 0).all() and (X[zero, j] < 1e-9).all()
            inner &= ~zero
        width = e[b[inner, j]] - e[b[inner, j] - 1]
        assert (np.abs(D[inner, j] - X[inner, j]) <= width / 2 + 1e-12).all()


def test_bins_default_on_sample(toks: dict[str, Tokenizer], sample: pl.DataFrame) -> None:
    tok = toks["bins"]
    assert isinstance(tok, BinsTokenizer)
    assert tok.n_candle_tokens <= 1097
    assert all(np.all(np.diff(e) > 0) for e in tok.edges.values())
    enc = tok.encode(sample)
    dec = tok.decode(enc)
    validate_bars(dec, "strict")
    err = dec.join(sample, on=["symbol", "ts"], suffix="_t").select(
        ((pl.col("close") / pl.col("close_t")).log().abs() * 1e4).alias("e"))["e"]
    assert float(err.median()) < 30  # bps; a loose sanity bound, the benchmark reports it


@pytest.mark.parametrize("name", SCHEMES)
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), cut=st.integers(1, 78), factor=st.floats(0.3, 3.0))
def test_tokens_are_causal(toks: dict[str, Tokenizer], name: str, seed: int, cut: int,
                           factor: float) -> None:
    tok = toks[name]
    bars = random_bars(seed, n=80, symbols=("AAA",))
    later = pl.int_range(pl.len()) > cut
    changed = bars.with_columns(
        [pl.when(later).then(pl.col(c) * factor).otherwise(pl.col(c)).alias(c)
         for c in ("open", "high", "low", "close", "volume")]
    )
    assert tok.encode(bars).head(cut).equals(tok.encode(changed).head(cut))


@pytest.mark.parametrize("name", SCHEMES)
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.sampled_from([0.001, 0.37, 3.0, 1234.5]))
def test_scale_invariance(toks: dict[str, Tokenizer], name: str, seed: int, k: float) -> None:
    tok = toks[name]
    bars = random_bars(seed, n=100)
    scaled = bars.with_columns([pl.col(c) * k for c in ("open", "high", "low", "close")])
    assert np.array_equal(tok.encode(bars)["token"].to_numpy(),
                          tok.encode(scaled)["token"].to_numpy())


@pytest.mark.parametrize("name", SCHEMES)
def test_save_load_and_fingerprints(toks: dict[str, Tokenizer], name: str, tmp_path: Path,
                                    sample: pl.DataFrame) -> None:
    tok = toks[name]
    p = tok.save(tmp_path / "vocab.json")
    assert (tmp_path / "vocab.txt").read_text().startswith("candletok vocabulary")
    back = load_tokenizer(p)
    assert type(back) is type(tok) and back.fingerprint == tok.fingerprint
    assert back.encode(sample).equals(tok.encode(sample))
    assert np.array_equal(back.decode_features(np.arange(back.vocab_size)),
                          tok.decode_features(np.arange(tok.vocab_size)), equal_nan=True)
    other = make(name).fit(sample.filter(pl.col("symbol") == "IBM"))
    assert other.fingerprint != tok.fingerprint
    # tampering with any content is refused
    content = json.loads(p.read_text())
    key = "edges" if "edges" in content else "centroids"
    if key == "edges":
        content["edges"]["body"][0] += 0.01
    else:
        content["centroids"][0][0] += 0.01
    (tmp_path / "bad.json").write_text(json.dumps(content))
    with pytest.raises(TokenizerError, match="fingerprint"):
        load_tokenizer(tmp_path / "bad.json")


def test_unknown_format_scheme_and_missing_file(toks: dict[str, Tokenizer],
                                                tmp_path: Path) -> None:
    p = toks["bins"].save(tmp_path / "v.json")
    content = json.loads(p.read_text())
    for field, value in (("format", "candletok-vocab/99"), ("scheme", "bpe")):
        bad = dict(content, **{field: value})
        (tmp_path / "x.json").write_text(json.dumps(bad))
        with pytest.raises(TokenizerError):
            load_tokenizer(tmp_path / "x.json")
    (tmp_path / "y.json").write_text("not json")
    with pytest.raises(TokenizerError):
        load_tokenizer(tmp_path / "y.json")
    with pytest.raises(TokenizerError):
        load_tokenizer(tmp_path / "nope.json")


@pytest.mark.parametrize("name", SCHEMES)
def test_missing_rows_and_bad_tokens(toks: dict[str, Tokenizer], name: str) -> None:
    tok = toks[name]
    X = np.zeros((3, len(tok.feature_names)))
    X[1, 0] = np.nan
    t = tok.encode_features(X)
    assert t[1] == tok.MISSING and t[0] >= tok.N_SPECIAL
    enc = pl.DataFrame({"symbol": ["A"] * 3, "ts": [1, 2, 3], "token": t,
                        "prev_close": [1.0] * 3, "scale": [0.01] * 3})
    dec = tok.decode(enc)
    assert dec["close"].null_count() == 1 and dec["close"][1] is None
    with pytest.raises(TokenizerError):
        tok.generate_bars(np.array([tok.BOS, 10]), 100.0)
    with pytest.raises(TokenizerError):
        tok.decode_features(np.array([tok.vocab_size]))
    with pytest.raises(TokenizerError):
        tok.encode_features(np.zeros((2, 9)))


def test_continuation_state_continues_the_series(toks: dict[str, Tokenizer],
                                                 sample: pl.DataFrame) -> None:
    tok = toks["bins"]
    bars = sample.filter(pl.col("symbol") == "IBM")
    head, nxt = bars.head(500), bars.slice(500, 1)
    last_close, next_scale = tok.continuation_state(head)["IBM"]
    enc = tok.encode(pl.concat([head, nxt]))
    assert enc["prev_close"][-1] == last_close
    assert abs(enc["scale"][-1] - next_scale) <= 1e-12 * next_scale
    t = enc["token"].to_numpy()[-1:]
    gen = tok.generate_bars(t, last_close, next_scale)
    assert np.array_equal(tok.encode(gen)["token"].to_numpy(), t)


def test_describe_and_table(toks: dict[str, Tokenizer]) -> None:
    tok = toks["bins"]
    assert tok.describe(tok.PAD) == "<PAD>"
    words = tok.describe(tok.N_SPECIAL)
    assert "gap" in words and "body" in words and "wick" in words
    df = tok.token_table()
    assert df.height == tok.vocab_size
    assert abs(float(df["share"].sum()) - 1.0) < 1e-9
    assert {"token", "meaning", "gap", "body", "upper", "lower", "count"} <= set(df.columns)


def test_kmeans_seed_duplicates_and_empty_clusters(train: pl.DataFrame) -> None:
    a = KMeansTokenizer(k=24, seed=7).fit(train)
    b = KMeansTokenizer(k=24, seed=7).fit(train)
    c = KMeansTokenizer(k=24, seed=8).fit(train)
    assert a.fingerprint == b.fingerprint and np.array_equal(a.centroids, b.centroids)
    assert a.fingerprint != c.fingerprint
    assert np.unique(a.centroids, axis=0).shape[0] == a.n_candle_tokens
    # k larger than the number of distinct candles: duplicates removed, no empty tokens
    few = random_bars(5, n=6, symbols=("AAA",))
    tiny = KMeansTokenizer(k=50, seed=0).fit(few)
    assert 1 <= tiny.n_candle_tokens <= 5
    assert tiny.counts is not None and (tiny.counts > 0).all()
    t = np.arange(4, tiny.vocab_size, dtype=np.uint16)
    assert np.array_equal(tiny.encode_features(tiny.decode_features(t)), t)


def test_kmeans_grid_index_matches_brute_force(toks: dict[str, Tokenizer]) -> None:
    tok = toks["kmeans"]
    assert isinstance(tok, KMeansTokenizer) and tok._cw is not None
    rng = np.random.default_rng(0)
    Z = np.concatenate([rng.standard_normal((20_000, 4)) * [1.5, 2, 0.5, 0.5],
                        tok._cw + rng.normal(0, 1e-3, tok._cw.shape)]) * 1.0
    grid = CentroidGrid(tok._cw)
    assert np.array_equal(grid.assign(Z, tok._cw), brute_nearest(Z, tok._cw))


def test_bad_settings_are_refused() -> None:
    with pytest.raises(TokenizerError):
        BinsTokenizer(upper_bins=1)
    with pytest.raises(TokenizerError):
        BinsTokenizer(100, 100, 10, 10)
    with pytest.raises(TokenizerError):
        KMeansTokenizer(k=0)
    with pytest.raises(TokenizerError):
        KMeansTokenizer(weights=(1.0, -1.0, 1.0, 1.0))
    with pytest.raises(TokenizerError):
        BinsTokenizer().encode(load_sample(["IBM"]))  # not fitted


def test_fixed_edges(sample: pl.DataFrame) -> None:
    edges = {"gap": [-1.0, 0.0, 1.0], "body": [-1.0, -0.3, 0.3, 1.0], "upper": [0.3],
             "lower": [0.3]}
    tok = BinsTokenizer(edges=edges, tail_z=None).fit(sample)
    assert tok.radix == (4, 5, 3, 3)
    assert np.array_equal(tok.edges["body"], edges["body"])
    with pytest.raises(TokenizerError):
        BinsTokenizer(edges={"gap": [1.0, 0.0], "body": [0], "upper": [1], "lower": [1]})


def test_feature_config_is_saved(train: pl.DataFrame, tmp_path: Path) -> None:
    tok = BinsTokenizer(features=FeatureConfig(alpha=0.3, min_scale=1e-4)).fit(train)
    back = load_tokenizer(tok.save(tmp_path / "v.json"))
    assert back.features == tok.features and back.features.alpha == 0.3


@pytest.mark.parametrize("name", SCHEMES)
def test_chunked_encode_matches_feature_matrix(toks: dict[str, Tokenizer], name: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """encode assigns features chunk by chunk on worker threads; with tiny chunks (so
    series starts and the EWMA restart straddle chunk edges) it must give exactly the
    tokens of the materialized feature matrix, and the same frame as the grouped path."""
    import candletok.tokenize.features as feats_mod

    tok = toks[name]
    bars = random_bars(11, n=300, symbols=("AAA", "BBB", "CCC", "DDD"))
    monkeypatch.setattr(feats_mod, "CHUNK_ROWS", 97)
    enc = tok.encode(bars)
    _feats, X = tok.feature_matrix(bars)
    assert np.array_equal(enc["token"].to_numpy(), tok.encode_features(X))
    grouped = feats_mod.candle_features_grouped(bars, tok.features)
    assert enc.select("symbol", "ts", "prev_close", "scale").equals(
        grouped.select("symbol", "ts", "prev_close", "scale"))
    interleaved = tok.encode(bars.sort("ts", "symbol"))  # grouped fallback path
    assert interleaved.sort("symbol", "ts").equals(enc)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), on_edges=st.booleans())
def test_bins_one_row_encodes_as_in_a_batch(toks: dict[str, Tokenizer], seed: int,
                                            on_edges: bool) -> None:
    """A live bar is encoded one row at a time (a plain-Python count of edges): every row
    alone gets the token the vectorized batch gives it, values exactly on an edge too."""
    tok = toks["bins"]
    assert isinstance(tok, BinsTokenizer)
    r = np.random.default_rng(seed)
    X = r.normal(0, 1.5, (40, len(tok.feature_names)))
    if on_edges:  # half the values sit exactly on an edge of their feature
        for j, name in enumerate(tok.feature_names):
            e = np.asarray(tok.edges[name], dtype=np.float64)
            if e.size:
                X[::2, j] = r.choice(e, X[::2, j].size)
    batch = tok.encode_features(X)
    alone = np.concatenate([tok.encode_features(X[i:i + 1]) for i in range(len(X))])
    assert np.array_equal(batch, alone)
