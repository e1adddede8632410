"""Token datasets on disk: the folder layout, the manifest, and reading it back.

Layout (see docs/architecture.md)::

    DIR/manifest.json        format, fingerprint, symbols, split boundaries, shards + sha256
    DIR/vocab.json           the tokenizer (and vocab.txt, its readable table)
    DIR/<split>/part-00000.parquet ...   rows: symbol, ts, token, prev_close, scale,
                                         open, high, low, close, volume
    DIR/_index/<split>.tokens.npy  the split's tokens, one BOS before each series (memory-
    DIR/_index/<split>.series.npy  mapped by TokenDataset), and each series' [start, end)

The index lives in ``_index/`` because readers of Parquet folders (pyarrow, Hugging Face
``datasets``) skip names starting with ``_``; each split folder holds Parquet only.

Format 2 added each candle's own bar (``open, high, low, close, volume``): forward
outcomes need the last close of a series, which ``prev_close`` cannot give, and range
forecasts and charts need the real high and low, which the tokens only approximate.
Format 1 folders are refused with a message that says to re-encode.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from candletok.core.atomic import sha256_file
from candletok.core.errors import DatasetError
from candletok.core.ids import BOS, SPLITS, normalize_split
from candletok.tokenize.base import Tokenizer
from candletok.tokenize.registry import load_tokenizer

log = logging.getLogger(__name__)

MANIFEST_FORMAT = "candletok-dataset/2"
OLD_FORMATS = ("candletok-dataset/1",)
FINGERPRINT_KEY = "candletok.fingerprint"
INDEX_DIR = "_index"
BAR_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
TOKEN_COLUMNS: tuple[str, ...] = ("symbol", "ts", "token", "prev_close", "scale", *BAR_COLUMNS)
TOKEN_SCHEMA: dict[str, Any] = {
    "symbol": pl.String, "ts": pl.Datetime("us", "UTC"), "token": pl.UInt16,
    "prev_close": pl.Float64, "scale": pl.Float64, "open": pl.Float64, "high": pl.Float64,
    "low": pl.Float64, "close": pl.Float64, "volume": pl.Float64,
}


def read_manifest(root: str | Path) -> dict[str, Any]:
    """The dataset's manifest, or a clear :class:`DatasetError` if the folder is not one."""
    root = Path(root)
    path = root / "manifest.json"
    if not root.is_dir():
        raise DatasetError(f"{root} is not a dataset folder; create one with `candletok encode`.")
    if not path.exists():
        raise DatasetError(
            f"{root} has no manifest.json, so it is not a complete dataset "
            "(an interrupted `candletok encode`?); run the encode again."
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path} is not valid JSON; re-run `candletok encode`.") from exc
    fmt = manifest.get("format") if isinstance(manifest, dict) else None
    if fmt in OLD_FORMATS:
        raise DatasetError(
            f"{path} is a {fmt} manifest from an older candletok, whose rows lack each "
            "candle's own bar; re-run `candletok encode` to rebuild the dataset."
        )
    if fmt != MANIFEST_FORMAT or not isinstance(manifest.get("splits"), dict):
        raise DatasetError(
            f"{path} has format {fmt!r} or no splits; this candletok reads "
            f"{MANIFEST_FORMAT!r} manifests from `candletok encode`."
        )
    return manifest


def open_dataset(
    root: str | Path, vocab: str | Path | Tokenizer | None = None
) -> tuple[dict[str, Any], Tokenizer]:
    """Manifest and tokenizer of a dataset, refusing any fingerprint mismatch between the
    manifest, ``vocab.json`` and an optional vocabulary the caller expects."""
    root = Path(root)
    manifest = read_manifest(root)
    try:
        tok = load_tokenizer(root / manifest.get("vocab", "vocab.json"))
    except FileNotFoundError as exc:
        raise DatasetError(f"{root} has no vocab.json; re-run `candletok encode`.") from exc
    if tok.fingerprint != manifest["fingerprint"]:
        raise DatasetError(
            f"{root}/vocab.json (fingerprint {tok.fingerprint}) does not match the manifest "
            f"({manifest['fingerprint']}); the folder was mixed from two runs — re-encode it."
        )
    if vocab is not None:
        want = vocab if isinstance(vocab, Tokenizer) else load_tokenizer(vocab)
        if want.fingerprint != tok.fingerprint:
            raise DatasetError(
                f"The dataset {root} was encoded with vocab {tok.fingerprint}, not "
                f"{want.fingerprint}; encode it with vocab= that file or use its own vocab."
            )
    return manifest, tok


def split_meta(manifest: dict[str, Any], split: str) -> dict[str, Any]:
    """The manifest's entry for ``split`` (``validation`` is read as ``val``)."""
    split = normalize_split(split) if split.lower() not in manifest["splits"] else split
    if split not in manifest["splits"]:
        raise DatasetError(
            f"Unknown split {split!r}; the dataset has {', '.join(manifest['splits'])}."
        )
    return manifest["splits"][split]


def index_paths(root: str | Path, split: str) -> tuple[Path, Path]:
    """The split's token index and series bounds: ``_index/<split>.tokens.npy`` and
    ``_index/<split>.series.npy``."""
    base = Path(root) / INDEX_DIR
    return base / f"{split}.tokens.npy", base / f"{split}.series.npy"


def check_series_bounds(bounds: np.ndarray, tokens: np.ndarray, n_series: int, path: Path,
                        full: bool = False) -> None:
    """Refuse series bounds that do not describe the token index's layout: one row per
    symbol, back to back from 0 to the array's end, each starting on its BOS. A moved
    boundary would let training windows run from one symbol into the next.

    The bounds are a function of the tokens (each series starts at a BOS, and BOS occurs
    nowhere else), so with ``full`` -- one pass over the tokens -- a verified token array
    verifies its bounds completely, even where the manifest holds no checksum of them."""
    b = np.asarray(bounds)
    ok = b.ndim == 2 and b.shape == (n_series, 2) and (
        n_series == 0 or (int(b[0, 0]) == 0 and int(b[-1, 1]) == len(tokens)
                          and bool((b[:, 1] > b[:, 0]).all())
                          and bool((b[1:, 0] == b[:-1, 1]).all())))
    if ok and n_series:
        ok = bool((np.asarray(tokens[b[:, 0]]) == BOS).all())
    if ok and full:
        ok = int(np.count_nonzero(np.asarray(tokens) == BOS)) == n_series
    if not ok:
        raise DatasetError(
            f"{path} does not match the token index beside it (each of the {n_series} "
            "series must start on its BOS, back to back): the folder is damaged, re-run "
            "`candletok encode`."
        )


def _verify_index(root: Path, split: str, meta: dict[str, Any]) -> None:
    """The split's ``_index`` arrays against the manifest: both checksums (the bounds'
    only in folders written since the manifest records it; older ones get the bounds
    checked against the verified tokens' BOS markers instead, which is as strict)."""
    tokens_path, series_path = index_paths(root, split)
    if not tokens_path.exists() and not series_path.exists():
        return  # written by another tool: TokenDataset rebuilds the arrays from the shards
    for path, key in ((tokens_path, "tokens_sha256"), (series_path, "series_sha256")):
        if not path.exists():
            raise DatasetError(f"{path} is missing; re-run `candletok encode`.")
        if meta.get(key) is not None and sha256_file(path) != meta[key]:
            raise DatasetError(
                f"{path} is corrupt (its sha256 does not match the manifest); "
                "re-run `candletok encode`."
            )
    try:
        tokens = np.load(tokens_path, mmap_mode="r", allow_pickle=False)
        bounds = np.load(series_path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"The token index of {split} in {root / INDEX_DIR} is unreadable "
                           f"({exc}); re-run `candletok encode`.") from exc
    if meta.get("series_sha256") is None:
        log.info("%s predates series checksums; its bounds were checked against the "
                 "token index instead", root)
    check_series_bounds(bounds, tokens, len(meta.get("symbols", [])), series_path,
                        full=meta.get("series_sha256") is None)


def shard_stat(path: Path) -> list[int]:
    """(size, mtime_ns) of a file: what tells a verified shard from one changed since."""
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def verify_dataset(root: str | Path, splits: Sequence[str] = SPLITS,
                   verified: dict[str, list[int]] | None = None) -> list[dict[str, Any]]:
    """Check every shard's presence, sha256 and vocabulary fingerprint (the Parquet
    metadata's, against the manifest's), and each split's ``_index`` arrays; raise naming
    the first bad file. ``verified``: per shard path, the (size, mtime_ns) it had when it
    was last checked against this same manifest (a search index records them); a shard
    with that stat still is not hashed again (hashing is most of a rebuild's reading)."""
    root = Path(root)
    manifest = read_manifest(root)
    shards = [shard for split in splits for shard in split_meta(manifest, split)["shards"]]
    stats = {}
    for shard in shards:
        try:
            stats[shard["path"]] = shard_stat(root / shard["path"])
        except FileNotFoundError:
            raise DatasetError(f"Shard {root / shard['path']} is missing; re-run "
                               "`candletok encode`.") from None
    known = verified or {}
    todo = [s for s in shards if known.get(s["path"]) != stats[s["path"]]]
    # hashlib releases the GIL: the shards hash on every core at once (the checks below
    # still name the first bad file in manifest order)
    with ThreadPoolExecutor(max_workers=max(1, min(len(todo), os.cpu_count() or 1))) as ex:
        digests = dict(zip([s["path"] for s in todo],
                           ex.map(lambda s: sha256_file(root / s["path"]), todo),
                           strict=True))
    report = []
    for split in splits:
        meta = split_meta(manifest, split)
        for shard in meta["shards"]:
            path = root / shard["path"]
            if shard["path"] not in digests:  # unchanged since it was verified
                report.append({"split": split, "path": shard["path"], "rows": shard["rows"]})
                continue
            if digests[shard["path"]] != shard["sha256"]:
                raise DatasetError(
                    f"Shard {path} is corrupt (its sha256 does not match the manifest); "
                    "re-run `candletok encode`."
                )
            check_shard_fingerprint(path, manifest["fingerprint"])
            report.append({"split": split, "path": shard["path"], "rows": shard["rows"]})
        _verify_index(root, split, meta)
    return report


def check_shard_fingerprint(path: Path, fingerprint: str) -> None:
    """Refuse a shard whose Parquet metadata names another vocabulary than ``fingerprint``
    (its tokens mean something else)."""
    try:
        found = pl.read_parquet_metadata(path).get(FINGERPRINT_KEY)
    except Exception as exc:
        raise DatasetError(f"Shard {path} is corrupt or unreadable ({exc}).") from exc
    if found != fingerprint:
        raise DatasetError(
            f"Shard {path} was written with vocab {found}, not the dataset's "
            f"{fingerprint}; re-run `candletok encode`."
        )


def read_split(root: str | Path, split: str = "train", *, verify: bool = False) -> pl.DataFrame:
    """All rows of one split (:data:`TOKEN_COLUMNS`), sorted by (symbol, ts)."""
    root = Path(root)
    manifest, tok = open_dataset(root)
    if verify:
        verify_dataset(root, [split])
    return _read_shards(root, manifest, tok, [split])[0]


def read_rows(root: str | Path, columns: Sequence[str] | None = None
              ) -> tuple[pl.DataFrame, np.ndarray]:
    """The flat series loader: every split's rows (``columns``, default all), the splits
    in time order (train, val, test; those the dataset has), each sorted by (symbol, ts),
    and each row's split code (its index in :data:`~candletok.core.ids.SPLITS`).

    A symbol's whole series is its rows taken in this order; the search index and the
    evaluation harness both read the folder through here, so both see the same rows with
    the same checks (every shard present, readable and of the dataset's vocabulary)."""
    root = Path(root)
    manifest, tok = open_dataset(root)
    return _read_shards(root, manifest, tok, [s for s in SPLITS if s in manifest["splits"]],
                        columns)


def _read_shards(root: Path, manifest: dict[str, Any], tok: Tokenizer, splits: Sequence[str],
                 columns: Sequence[str] | None = None) -> tuple[pl.DataFrame, np.ndarray]:
    """The rows of ``splits``' shards in order, and each row's split code.

    One Polars scan over every shard, only ``columns``: the files and their row groups
    are read in parallel, in file order (no sort: each shard is already sorted)."""
    paths, codes = [], []
    for split in splits:
        for shard in split_meta(manifest, split)["shards"]:
            path = root / shard["path"]
            if not path.exists():
                raise DatasetError(f"Shard {path} is missing; re-run `candletok encode`.")
            check_shard_fingerprint(path, tok.fingerprint)
            paths.append(path)
            codes.append(np.full(int(shard["rows"]), SPLITS.index(normalize_split(split)),
                                 np.int8))
    if not paths:
        schema = (TOKEN_SCHEMA if columns is None else
                  {c: TOKEN_SCHEMA[c] for c in columns if c in TOKEN_SCHEMA})
        return pl.DataFrame(schema=schema), np.zeros(0, np.int8)
    cols = None if columns is None else list(columns)
    try:
        lf = pl.scan_parquet(paths)
        df = (lf if cols is None else lf.select(cols)).collect()
    except Exception:  # name the bad file: read them one by one
        for path in paths:
            try:
                pl.read_parquet(path, columns=cols, n_rows=None)
            except Exception as exc:
                raise DatasetError(f"Shard {path} is corrupt or unreadable ({exc}).") from exc
        raise
    code = np.concatenate(codes)
    if code.size != df.height:
        raise DatasetError(f"The shards of {root} hold {df.height:,} rows, not the "
                           f"manifest's {code.size:,}; re-run `candletok encode`.")
    return df, code


def decode_dataset(root: str | Path, split: str = "test") -> pl.DataFrame:
    """Canonical bars rebuilt from one split's tokens, each anchored on the real close
    stored before it."""
    _, tok = open_dataset(root)
    return tok.decode(read_split(root, split))


def inspect_dataset(root: str | Path) -> dict[str, Any]:
    """Manifest summary plus a checksum verification of every shard."""
    manifest = read_manifest(root)
    open_dataset(root)
    verify_dataset(root)
    return manifest
