"""Token datasets on disk: time-split Parquet shards, a manifest, and the vocabulary.

Layout (DESIGN.md §6)::

    DIR/manifest.json        format, fingerprint, symbols, split boundaries, shards + sha256
    DIR/vocab.json           the tokenizer (and vocab.txt, its readable table)
    DIR/<split>/part-00000.parquet ...   rows: symbol, ts, token, prev_close, scale
    DIR/_index/<split>.tokens.npy  the split's tokens, one BOS before each series (memory-
    DIR/_index/<split>.series.npy  mapped by TokenDataset), and each series' [start, end)

The index lives in ``_index/`` because readers of Parquet folders (pyarrow, Hugging Face
``datasets``) skip names starting with ``_``; each split folder holds Parquet only.

The whole folder is built under a temporary sibling name and renamed into place only when
the manifest (written last) is complete, so an interrupted run never leaves a folder that
loads as a dataset.
"""

from __future__ import annotations

import json
import math
import shutil
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from candletok._io import sha256_file, temp_dir_beside, write_json_atomic, write_parquet_atomic
from candletok.errors import CandletokError, DatasetError
from candletok.quality import (
    _anchored_errors,
    _error_stats,
    _frame_errors,
    reconstruction_errors,
)
from candletok.tokenizer import Tokenizer, load_tokenizer

MANIFEST_FORMAT = "candletok-dataset/1"
SPLITS: tuple[str, ...] = ("train", "val", "test")
FINGERPRINT_KEY = "candletok.fingerprint"
INDEX_DIR = "_index"
TOKEN_COLUMNS: tuple[str, ...] = ("symbol", "ts", "token", "prev_close", "scale")

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)`` — called as symbol groups are loaded and encoded."""


@dataclass
class SplitStats:
    """Per-split figures printed after ``candletok encode``."""

    split: str
    symbols: int = 0
    candles: int = 0
    tokens_used: int = 0
    bits_per_candle: float = float("nan")
    close_err_median_bps: float = float("nan")
    close_err_p95_bps: float = float("nan")
    ohlc_err_median_bps: float = float("nan")
    ohlc_err_p95_bps: float = float("nan")
    err_candles: int = 0  # candles the error figures are measured on (a systematic sample)
    path: str = ""


@dataclass
class EncodeResult:
    root: Path
    manifest: dict[str, Any]
    stats: list[SplitStats]
    errors: dict[str, str] = field(default_factory=dict)


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.astimezone(timezone.utc).isoformat()


def parse_when(value: str | date | datetime | None) -> datetime | None:
    """A user date (``2011-01-01``, a date or datetime) as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise CandletokError(
            f"Could not read {value!r} as a date; use YYYY-MM-DD or an ISO timestamp."
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def split_boundaries(
    ts_min: datetime,
    ts_max: datetime,
    val_from: datetime | None = None,
    test_from: datetime | None = None,
    val_frac: float = 0.1,
    test_frac: float = 0.1,
) -> tuple[datetime, datetime]:
    """Cut dates of the time split: by default the last 10% of the pooled time range is test
    and the 10% before it is val. Explicit dates win; they must be ordered."""
    span = ts_max - ts_min
    if test_from is None:
        test_from = ts_max - span * test_frac
    if val_from is None:
        val_from = test_from - span * val_frac
    if val_from > test_from:
        raise CandletokError(
            f"--val-from ({val_from.date()}) must not be after --test-from ({test_from.date()})."
        )
    return val_from, test_from


def _is_sorted_by_symbol_ts(bars: pl.DataFrame) -> bool:
    """True when ``bars`` is already sorted by (symbol, ts) with no repeated (symbol, ts):
    then ``sort("symbol", "ts")`` could only return the same rows in the same order, and
    the O(n log n) string sort can be skipped. Checked in O(n)."""
    sym, ts = bars["symbol"], bars["ts"]
    if bars.height < 2:
        return True
    if sym.null_count() or ts.null_count() or not sym.is_sorted():
        return False
    lengths = sym.rle().struct.field("len").to_numpy()
    step = np.diff(ts.to_physical().to_numpy())
    ok = step > 0
    ok[np.cumsum(lengths)[:-1] - 1] = True  # a new symbol may restart its timestamps
    return bool(ok.all())


class _ShardWriter:
    """Buffers sorted rows of one split and writes fixed-size shards plus the token arrays.

    With ``pool``, each shard's Parquet write and sha256 run on that (single) background
    thread while the caller encodes the next group; ``close`` waits for them in order."""

    def __init__(self, root: Path, split: str, shard_rows: int, fingerprint: str, bos: int,
                 pool: ThreadPoolExecutor | None = None):
        self.dir = root / split
        self.dir.mkdir(parents=True, exist_ok=True)
        self.split = split
        self.shard_rows = shard_rows
        self.meta = {FINGERPRINT_KEY: fingerprint, "candletok.split": split}
        self.bos = bos
        self.pool = pool
        self.buffer: list[pl.DataFrame] = []
        self.buffered = 0
        self.shards: list[dict[str, Any]] = []
        self.pending: list[Future[dict[str, Any]]] = []
        self.token_parts: list[np.ndarray] = []
        self.series: list[tuple[str, int]] = []  # (symbol, n candles) in order
        self.rows = 0

    def add(self, rows: pl.DataFrame) -> None:
        if rows.height == 0:
            return
        rows = rows.select(TOKEN_COLUMNS)
        self.buffer.append(rows)
        self.buffered += rows.height
        self.rows += rows.height
        # Token arrays: a BOS before every series (vectorized per group). Rows arrive
        # sorted by symbol, so its runs are its groups.
        runs = rows["symbol"].rle()
        syms = runs.struct.field("value").to_list()
        lens = runs.struct.field("len").to_numpy().astype(np.int64)
        toks = rows["token"].to_numpy().astype(np.uint16)
        starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
        self.token_parts.append(np.insert(toks, starts, self.bos))
        self.series.extend(zip(syms, lens.tolist(), strict=True))
        while self.buffered >= self.shard_rows:
            self._flush(self.shard_rows)

    def _flush(self, n: int) -> None:
        df = pl.concat(self.buffer, rechunk=False)
        head, tail = df.head(n), df.slice(n)
        path = self.dir / f"part-{len(self.shards) + len(self.pending):05d}.parquet"
        if self.pool is None:
            self.shards.append(self._write(head, path))
        else:
            self.pending.append(self.pool.submit(self._write, head, path))
        self.buffer = [tail] if tail.height else []
        self.buffered = tail.height

    def _write(self, head: pl.DataFrame, path: Path) -> dict[str, Any]:
        write_parquet_atomic(head, path, metadata=self.meta)
        return {"path": f"{self.split}/{path.name}", "rows": head.height,
                "sha256": sha256_file(path)}

    def wait(self) -> None:
        """Collect the finished background writes (re-raising their errors), in order."""
        self.shards.extend(f.result() for f in self.pending)
        self.pending = []

    def close(self) -> dict[str, Any]:
        if self.buffered:
            self._flush(self.buffered)
        self.wait()
        tokens = (
            np.concatenate(self.token_parts) if self.token_parts else np.zeros(0, np.uint16)
        )
        lens = np.array([n for _, n in self.series], dtype=np.int64)
        ends = np.cumsum(lens + 1)
        bounds = np.stack([ends - lens - 1, ends], axis=1) if lens.size else np.zeros((0, 2))
        index = self.dir.parent / INDEX_DIR
        index.mkdir(exist_ok=True)
        np.save(index / f"{self.split}.tokens.npy", tokens)
        np.save(index / f"{self.split}.series.npy", bounds.astype(np.int64))
        return {
            "rows": self.rows,
            "symbols": [s for s, _ in self.series],
            "shards": self.shards,
            "tokens_sha256": sha256_file(index / f"{self.split}.tokens.npy"),
        }


def _make_tokenizer(scheme: str, **kwargs: Any) -> Tokenizer:
    if scheme == "bins":
        from candletok.bins import BinsTokenizer

        return BinsTokenizer(**kwargs)
    if scheme == "kmeans":
        from candletok.kmeans import KMeansTokenizer

        return KMeansTokenizer(**kwargs)
    raise CandletokError(f"Unknown scheme {scheme!r}; use 'bins' or 'kmeans'.")


def build_dataset(
    symbols: Sequence[str],
    out: str | Path,
    *,
    scheme: str = "bins",
    vocab: str | Path | Tokenizer | None = None,
    source: str = "auto",
    interval: str = "1d",
    start: str | date | datetime | None = None,
    end: str | date | datetime | None = None,
    val_from: str | date | datetime | None = None,
    test_from: str | date | datetime | None = None,
    shard_rows: int = 1_000_000,
    group_size: int = 64,
    fit_max_candles: int = 1_000_000,
    stats_max_candles: int = 1_000_000,
    strict: bool = False,
    overwrite: bool = False,
    seed: int = 0,
    tokenizer_kwargs: dict[str, Any] | None = None,
    loader: Callable[..., pl.DataFrame] | None = None,
    progress: Progress | None = None,
) -> EncodeResult:
    """Load bars, split them by time, fit the vocabulary on train only, encode, write shards.

    Symbols are handled in groups of ``group_size`` so memory stays bounded: pass 1 loads
    each group once and stages its canonical bars as Parquet; pass 2 fits the tokenizer on
    the train part (at most ``fit_max_candles``, whole symbols chosen by ``seed``); pass 3
    encodes each group and streams rows into shards. A symbol that fails to load is listed
    in ``errors`` and skipped, unless ``strict``. The reconstruction-error figures of the
    summary are measured on every candle up to ``stats_max_candles`` in all, and above that
    on a systematic sample (every k-th candle of each group, k the same everywhere) of
    about that size; ``err_candles`` in each split's stats says how many.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise CandletokError(f"{out} already exists; pass --overwrite to replace it.")
        if not (out / "manifest.json").exists():
            raise CandletokError(
                f"{out} exists and is not a candletok dataset; choose another --out "
                "(--overwrite only replaces a dataset folder)."
            )
    if shard_rows < 1 or group_size < 1:
        raise CandletokError("--shard-rows and --group-size must be positive.")
    if loader is None:
        from candletok.sources import load_bars as loader
    symbols = list(dict.fromkeys(s.strip() for s in symbols if s.strip()))
    if not symbols:
        raise CandletokError("Give at least one symbol to encode.")
    tick = progress or (lambda stage, done, total: None)

    tmp = temp_dir_beside(out, ".partial")
    try:
        result = _build(
            symbols, out, tmp, scheme=scheme, vocab=vocab, source=source, interval=interval,
            start=start, end=end, val_from=parse_when(val_from), test_from=parse_when(test_from),
            shard_rows=shard_rows, group_size=group_size, fit_max_candles=fit_max_candles,
            stats_max_candles=stats_max_candles,
            strict=strict, seed=seed, tokenizer_kwargs=tokenizer_kwargs or {}, loader=loader,
            tick=tick,
        )
        if out.exists():
            trash = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            out.rename(trash)
            tmp.rename(out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            tmp.rename(out)
        result.root = out
        return result
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _build(
    symbols: list[str], out: Path, tmp: Path, *, scheme: str, vocab: Any, source: str,
    interval: str, start: Any, end: Any, val_from: datetime | None, test_from: datetime | None,
    shard_rows: int, group_size: int, fit_max_candles: int, stats_max_candles: int,
    strict: bool, seed: int,
    tokenizer_kwargs: dict[str, Any], loader: Callable[..., pl.DataFrame], tick: Progress,
) -> EncodeResult:
    # One background thread writes files (staged groups, then shards) while the main
    # thread loads or encodes the next group; leaving the ``with`` waits for it, so
    # nothing is still writing into ``tmp`` when the caller removes or renames it.
    with ThreadPoolExecutor(1, thread_name_prefix="candletok-io") as io:
        return _build_passes(
            symbols, out, tmp, io, scheme=scheme, vocab=vocab, source=source,
            interval=interval, start=start, end=end, val_from=val_from, test_from=test_from,
            shard_rows=shard_rows, group_size=group_size, fit_max_candles=fit_max_candles,
            stats_max_candles=stats_max_candles,
            strict=strict, seed=seed, tokenizer_kwargs=tokenizer_kwargs, loader=loader,
            tick=tick,
        )


def _load_group(
    group: list[str], loader: Callable[..., pl.DataFrame], errors: dict[str, str],
    strict: bool, **kw: Any,
) -> list[pl.DataFrame]:
    """Load one group at once, or symbol by symbol when the group fails."""
    frames: list[pl.DataFrame] = []
    try:
        frames.append(loader(group, **kw))
    except CandletokError as exc:
        if strict or len(group) == 1:
            if strict:
                raise
            errors[group[0]] = str(exc)
        else:
            for sym in group:
                try:
                    frames.append(loader([sym], **kw))
                except CandletokError as sub:
                    errors[sym] = str(sub)
    return [f for f in frames if f.height]


def _build_passes(
    symbols: list[str], out: Path, tmp: Path, io: ThreadPoolExecutor, *, scheme: str,
    vocab: Any, source: str, interval: str, start: Any, end: Any,
    val_from: datetime | None, test_from: datetime | None, shard_rows: int, group_size: int,
    fit_max_candles: int, stats_max_candles: int, strict: bool, seed: int,
    tokenizer_kwargs: dict[str, Any],
    loader: Callable[..., pl.DataFrame], tick: Progress,
) -> EncodeResult:
    staging = tmp / ".staging"
    staging.mkdir()
    errors: dict[str, str] = {}
    groups = [symbols[i : i + group_size] for i in range(0, len(symbols), group_size)]
    staged: list[Path] = []
    ts_min: datetime | None = None
    ts_max: datetime | None = None
    loaded: list[str] = []

    # Pass 1: load each group once (per symbol inside a group when the group fails) and
    # stage its sorted bars. Staging files live only for this run and are read back
    # twice, so they are written uncompressed (zstd cost more than the whole encode).
    done = 0
    writing: Future[None] | None = None
    for gi, group in enumerate(groups):
        frames = _load_group(group, loader, errors, strict, source=source,
                             interval=interval, start=start, end=end)
        done += len(group)
        tick("load", done, len(symbols))
        if not frames:
            continue
        bars = pl.concat(frames) if len(frames) > 1 else frames[0]
        if not _is_sorted_by_symbol_ts(bars):
            bars = bars.sort("symbol", "ts")
        lo, hi = bars["ts"].min(), bars["ts"].max()
        ts_min = lo if ts_min is None else min(ts_min, lo)
        ts_max = hi if ts_max is None else max(ts_max, hi)
        loaded.extend(bars["symbol"].unique(maintain_order=True).to_list())
        path = staging / f"group-{gi:05d}.parquet"
        if writing is not None:
            writing.result()  # at most one group waits to be written: memory stays bounded
        writing = io.submit(bars.write_parquet, path, compression="uncompressed")
        staged.append(path)
        del bars, frames
    if writing is not None:
        writing.result()
    if not staged or ts_min is None or ts_max is None:
        detail = "; ".join(f"{s}: {m}" for s, m in list(errors.items())[:3])
        raise CandletokError(f"No symbol could be loaded ({detail}).")

    vf, tf = split_boundaries(ts_min, ts_max, val_from, test_from)

    # Pass 2: the vocabulary, fit on train bars only.
    if vocab is None:
        tok = _make_tokenizer(scheme, **tokenizer_kwargs)
        train_scan = pl.scan_parquet(staged).filter(pl.col("ts") < pl.lit(vf))
        counts = train_scan.group_by("symbol").len().collect().sort("symbol")
        if counts.height == 0 or int(counts["len"].sum()) < 2:
            raise CandletokError(
                f"No training bars before the validation cut {vf.date()}; "
                "choose an earlier --val-from or load a longer history."
            )
        if int(counts["len"].sum()) > fit_max_candles:
            rng = np.random.default_rng(seed)
            order = rng.permutation(counts.height)
            keep = np.cumsum(counts["len"].to_numpy()[order]) <= fit_max_candles
            keep[0] = True
            chosen = counts["symbol"].to_numpy()[order][keep].tolist()
            train_scan = train_scan.filter(pl.col("symbol").is_in(chosen))
        tick("fit", 0, 1)
        tok.fit(train_scan.collect())
        tick("fit", 1, 1)
    else:
        tok = vocab if isinstance(vocab, Tokenizer) else load_tokenizer(vocab)
        if tok.scheme != scheme and tokenizer_kwargs.get("_strict_scheme"):
            raise CandletokError(f"The vocabulary is {tok.scheme!r}, not {scheme!r}.")
    tok.save(tmp / "vocab.json")

    # Pass 3: encode every group, route rows to their split, stream into shards (written
    # on the io thread while the next group is read and encoded).
    writers = {
        s: _ShardWriter(tmp, s, shard_rows, tok.fingerprint, tok.BOS, pool=io) for s in SPLITS
    }
    # Reconstruction errors per split, (4, n) O/H/L/C arrays: every candle, or every
    # ``stride``-th one of each group when the dataset is larger than ``stats_max_candles``.
    total = int(pl.scan_parquet(staged).select(pl.len()).collect().item())
    stride = max(1, -(-total // max(1, stats_max_candles)))
    errs_by_split: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    counts_by_split = {s: np.zeros(tok.vocab_size, np.int64) for s in SPLITS}
    with ThreadPoolExecutor(1, thread_name_prefix="candletok-read") as reader, \
            ThreadPoolExecutor(2, thread_name_prefix="candletok-err") as cpu:
        nxt = reader.submit(pl.read_parquet, staged[0])
        for gi, _ in enumerate(staged):  # one step per symbol group, not per row
            bars = nxt.result()
            if gi + 1 < len(staged):
                nxt = reader.submit(pl.read_parquet, staged[gi + 1])
            enc = tok.encode(bars)
            errs = None
            if enc.height:
                errs = _anchored_errors(tok, enc, bars, cpu, stride)
                if errs is None:
                    errs = _frame_errors(reconstruction_errors(tok, enc, bars))[:, ::stride]
            has_nan = errs is not None and bool(np.isnan(errs).any())
            ts = enc["ts"]
            is_test = (ts >= tf).to_numpy()
            is_val = (ts >= vf).to_numpy() & ~is_test
            masks = {"train": ~(is_val | is_test), "val": is_val, "test": is_test}
            tokens = enc["token"].to_numpy()
            for s in SPLITS:
                m = masks[s]
                if not m.any():
                    continue
                writers[s].add(enc.filter(pl.Series(m)) if not m.all() else enc)
                counts_by_split[s] += np.bincount(
                    tokens[m].astype(np.int64), minlength=tok.vocab_size
                )
                if errs is not None:
                    ms = m[::stride]
                    part = errs[:, ms] if not ms.all() else errs
                    if has_nan:  # candles that decode to no price: out of every figure
                        part = part[:, ~np.isnan(part).any(axis=0)]
                    errs_by_split[s].append(part)
            del bars, enc, errs
            tick("encode", gi + 1, len(staged))
    shutil.rmtree(staging)

    stats: list[SplitStats] = []
    splits_meta: dict[str, Any] = {}
    for s in SPLITS:
        meta = writers[s].close()
        c = counts_by_split[s]
        n = int(c.sum())
        st = SplitStats(split=s, symbols=len(set(meta["symbols"])), candles=n,
                        tokens_used=int((c > 0).sum()), path=str(out / s))
        if n:
            p = c[c > 0] / n
            st.bits_per_candle = float(-(p * np.log2(p)).sum())
        parts = errs_by_split.pop(s)
        st.err_candles = int(sum(p.shape[1] for p in parts))
        figures = _error_stats(parts)
        if figures is not None:
            (st.close_err_median_bps, st.close_err_p95_bps,
             st.ohlc_err_median_bps, st.ohlc_err_p95_bps) = figures
        stats.append(st)
        splits_meta[s] = {
            "from": _iso(None if s == "train" else (vf if s == "val" else tf)),
            "to": _iso(vf if s == "train" else (tf if s == "val" else None)),
            **meta,
        }

    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "fingerprint": tok.fingerprint,
        "scheme": tok.scheme,
        "vocab_size": tok.vocab_size,
        "vocab": "vocab.json",
        "source": source,
        "interval": interval,
        "symbols": loaded,
        "boundaries": {"val_from": _iso(vf), "test_from": _iso(tf),
                       "first": _iso(ts_min), "last": _iso(ts_max)},
        "splits": splits_meta,
        "errors": errors,
        "stats": {st.split: {k: v for k, v in st.__dict__.items() if k not in ("split", "path")}
                  for st in stats},
    }
    write_json_atomic(tmp / "manifest.json", _clean_json(manifest))  # last: marks completion
    return EncodeResult(root=out, manifest=manifest, stats=stats, errors=errors)


def _clean_json(obj: Any) -> Any:
    """NaN is not JSON: write it as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean_json(v) for v in obj]
    return obj


# ----------------------------------------------------------------------------- reading


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
                f"{want.fingerprint}; encode it with `--vocab` that file or use its own vocab."
            )
    return manifest, tok


def _split_meta(manifest: dict[str, Any], split: str) -> dict[str, Any]:
    if split not in manifest["splits"]:
        raise DatasetError(
            f"Unknown split {split!r}; the dataset has {', '.join(manifest['splits'])}."
        )
    return manifest["splits"][split]


def verify_dataset(root: str | Path, splits: Sequence[str] = SPLITS) -> list[dict[str, Any]]:
    """Check every shard's presence, sha256 and fingerprint; raise naming the first bad file."""
    root = Path(root)
    manifest = read_manifest(root)
    report = []
    for split in splits:
        for shard in _split_meta(manifest, split)["shards"]:
            path = root / shard["path"]
            if not path.exists():
                raise DatasetError(f"Shard {path} is missing; re-run `candletok encode`.")
            if sha256_file(path) != shard["sha256"]:
                raise DatasetError(
                    f"Shard {path} is corrupt (its sha256 does not match the manifest); "
                    "re-run `candletok encode`."
                )
            report.append({"split": split, "path": shard["path"], "rows": shard["rows"]})
    return report


def read_split(root: str | Path, split: str = "train", *, verify: bool = False) -> pl.DataFrame:
    """All rows of one split (symbol, ts, token, prev_close, scale), sorted by (symbol, ts)."""
    root = Path(root)
    manifest, tok = open_dataset(root)
    if verify:
        verify_dataset(root, [split])
    frames = []
    for shard in _split_meta(manifest, split)["shards"]:
        path = root / shard["path"]
        if not path.exists():
            raise DatasetError(f"Shard {path} is missing; re-run `candletok encode`.")
        try:
            df = pl.read_parquet(path)
            meta = pl.read_parquet_metadata(path)
        except Exception as exc:
            raise DatasetError(f"Shard {path} is corrupt or unreadable ({exc}).") from exc
        if meta.get(FINGERPRINT_KEY) != tok.fingerprint:
            raise DatasetError(
                f"Shard {path} was written with vocab {meta.get(FINGERPRINT_KEY)}, not the "
                f"dataset's {tok.fingerprint}; re-run `candletok encode`."
            )
        frames.append(df)
    if not frames:
        return pl.DataFrame(schema={"symbol": pl.String, "ts": pl.Datetime("us", "UTC"),
                                    "token": pl.UInt16, "prev_close": pl.Float64,
                                    "scale": pl.Float64})
    return pl.concat(frames)


def decode_dataset(root: str | Path, split: str = "test") -> pl.DataFrame:
    """Canonical bars rebuilt from one split's tokens (each anchored on its stored close)."""
    _, tok = open_dataset(root)
    return tok.decode(read_split(root, split))


def inspect_dataset(root: str | Path) -> dict[str, Any]:
    """Manifest summary plus a checksum verification of every shard."""
    manifest = read_manifest(root)
    open_dataset(root)
    verify_dataset(root)
    return manifest
