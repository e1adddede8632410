"""Building a dataset folder: load bars, cut by time, fit the vocabulary on train only,
encode, write shards. The folder is built under a temporary sibling name and renamed into
place only when the manifest (written last) is complete, so an interrupted run never
leaves a folder that loads as a dataset.

The work per symbol group is one pure function, :func:`encode_group` (bars in, token rows
by split plus counts and error samples out). The local build maps it over staged groups on
this machine; a distributed engine maps the same function elsewhere and hands the results
to the same :class:`~candletok.dataset.writer.ShardWriter`, so both write the same bytes.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from candletok.core.atomic import (
    OutputLock,
    clean_stale_partials,
    disk_full_error,
    is_disk_full,
    lock_output,
    path_size,
    replace_dir,
    temp_dir_beside,
    write_json_atomic,
)
from candletok.core.errors import CandletokError, OutputError
from candletok.core.fields import setting
from candletok.core.ids import SPLITS
from candletok.core.jsonsafe import clean_json
from candletok.core.times import (
    iso,
    parse_time,
)
from candletok.data.sources import load_bars, normalize_symbols
from candletok.dataset.groups import (
    drop_lone_symbols,
    group_interval,
    is_sorted_by_symbol_ts,
    load_group,
    resolve_interval,
    symbol_groups,
)
from candletok.dataset.manifest import BAR_COLUMNS, MANIFEST_FORMAT
from candletok.dataset.splits import Cuts, expected_split_rows, split_boundaries
from candletok.dataset.writer import ShardWriter
from candletok.tokenize.base import Tokenizer
from candletok.tokenize.features import ZERO_TOL, features_from_prices
from candletok.tokenize.quality import (
    anchored_errors,
    entropy_bits,
    error_stats,
    frame_errors,
    reconstruction_errors,
)
from candletok.tokenize.registry import load_tokenizer, make_tokenizer

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)`` — called as symbol groups are loaded and encoded."""

When = str | date | datetime | None

DATASET_ENTRIES = frozenset({"manifest.json", "vocab.json", "vocab.txt", "_index", *SPLITS})
"""What a dataset folder holds at its top level; ``overwrite`` replaces only such a folder
(anything else in it would be deleted with it)."""

MIN_FIT_CANDLES = 2
"""Train candles a vocabulary needs (:meth:`Tokenizer.fit` refuses fewer)."""


@dataclass
class BuildConfig:
    """Everything a build needs besides the bars loader and the progress callback.

    Dates may be text (``2011-01-01``), dates or datetimes; naive times are UTC. Without
    ``val_from``/``test_from`` the cuts fall at the start of the first bar on or after 80%
    and 90% of the pooled time range (on a bar boundary, never between bars).

    The fields with help text are ``candletok encode``'s options (:func:`setting`): the
    command reads its defaults and help from here."""

    symbols: Sequence[str]
    out: str | Path = setting(help="Dataset folder to write.")
    scheme: str = setting("bins", "Tokenizer scheme: bins or kmeans.")
    vocab: str | Path | Tokenizer | None = setting(None, "Use this fitted vocab.json.")
    source: str = setting("auto", "auto, yahoo, sample, synthetic or a path.")
    interval: str | None = setting(  # None: the bars' own (inferred); the manifest records it
        None, "Bar interval, e.g. 1d, 1h, 5m (default: the bars' own, inferred from their "
        "times; daily for downloads).")
    start: When = setting(None, "First date (YYYY-MM-DD).")
    end: When = setting(None, "Last date (YYYY-MM-DD).")
    val_from: When = setting(None, "First date of val.")
    test_from: When = setting(None, "First date of test.")
    shard_rows: int = setting(1_000_000, "Rows per Parquet shard.")
    group_size: int = setting(64, "Symbols loaded at a time.")
    fit_max_candles: int = 1_000_000
    stats_max_candles: int = 1_000_000
    strict: bool = setting(False, "Stop at the first failing symbol.")
    overwrite: bool = setting(False, "Replace an existing dataset.")
    seed: int = setting(0, "Seed of the kmeans fit and of the symbols sampled for fitting.")
    tokenizer_params: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """Refuse settings that cannot work, before anything is loaded or written."""
        if self.shard_rows < 1 or self.group_size < 1:
            raise CandletokError("shard_rows and group_size must be positive.")
        if self.seed < 0:
            raise CandletokError(f"seed must be 0 or more, not {self.seed}.")
        self.symbols = normalize_symbols(self.symbols)  # also expands @FILE lists
        if not self.symbols:
            raise CandletokError("Give at least one symbol to encode.")
        out = Path(self.out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            if not self.overwrite:
                raise CandletokError(f"{out} already exists; pass overwrite=True to replace it.")
            if not (out / "manifest.json").exists():
                raise CandletokError(
                    f"{out} exists and is not a candletok dataset; choose another output "
                    "folder (overwrite only replaces a dataset folder)."
                )
            foreign = foreign_entries(out)
            if foreign:
                shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more"
                                                  if len(foreign) > 5 else "")
                raise CandletokError(
                    f"{out} also holds files that encode did not write ({shown}); move them "
                    "out first: overwrite=True replaces the whole folder and would delete them."
                )

    @classmethod
    def from_options(cls, symbols: Sequence[str], out: str | Path, **options: Any) -> BuildConfig:
        """A config from keyword options, naming an unknown one in a clear error."""
        known = {f.name for f in fields(cls)}
        if "tokenizer_kwargs" in options:  # the name before BuildConfig existed
            options["tokenizer_params"] = options.pop("tokenizer_kwargs") or {}
        bad = sorted(set(options) - known)
        if bad:
            raise CandletokError(f"build_dataset got unknown options {', '.join(bad)}.")
        return cls(symbols=symbols, out=out, **options)


def foreign_entries(root: Path) -> list[str]:
    """The files and folders in dataset folder ``root`` that a build did not write (a
    model kept there, notes): a top-level name outside :data:`DATASET_ENTRIES`, or
    anything but ``part-*.parquet`` shards inside a split folder. ``_index/`` holds only
    derived files (the search index, its caches) and is rebuilt, so it is not looked in."""
    out = sorted(p.name for p in root.iterdir() if p.name not in DATASET_ENTRIES)
    for s in SPLITS:
        d = root / s
        if d.is_dir():
            out += sorted(f"{s}/{p.name}" for p in d.iterdir()
                          if not (p.is_file() and p.name.startswith("part-")
                                  and p.name.endswith(".parquet")))
    return out


def claim_output(cfg: BuildConfig) -> OutputLock:
    """Take the output folder for this build: its lock (a second build of the same folder
    is refused while this one runs), the removal of temporary folders that killed builds
    left beside it (reported), and the settings checked again under the lock, so a folder
    another build finished meanwhile is not replaced without ``overwrite``."""
    out = Path(cfg.out)
    lock = lock_output(out)
    try:
        clean_stale_partials(out)
        cfg.check()
    except BaseException:
        lock.release()
        raise
    return lock


def write_failure(out: Path, tmp: Path, exc: BaseException) -> OutputError | None:
    """A full disk met while building ``out`` in ``tmp`` as one sentence naming ``out``
    (not the hidden temporary folder), with the space it had taken so far; None for any
    other error."""
    if not is_disk_full(exc):
        return None
    return disk_full_error(out, written=path_size(tmp))


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
    # share of candles with each point mass (POINT_MASSES: open = previous close, ...)
    point_masses: dict[str, float] = field(default_factory=dict)
    path: str = ""


@dataclass
class EncodeResult:
    root: Path
    manifest: dict[str, Any]
    stats: list[SplitStats]
    errors: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # the vocabulary's Tokenizer.notes()


@dataclass
class EncodedGroup:
    """What :func:`encode_group` gives back for one symbol group.

    ``rows[split]`` are that split's token rows (``TOKEN_COLUMNS``, sorted by symbol and
    ts), ``counts[split]`` its token histogram (length ``vocab_size``), and
    ``errors[split]`` a (4, k) array of O/H/L/C reconstruction errors in bps on every
    ``stride``-th candle, candles that decode to no price left out."""

    rows: dict[str, pl.DataFrame]
    counts: dict[str, np.ndarray]
    errors: dict[str, np.ndarray]
    masses: dict[str, np.ndarray] = field(default_factory=dict)  # POINT_MASSES counts


# What a trader sees as "nothing happened" in a candle, counted per split on the real
# prices (equal up to float noise): each is a point mass of a feature that a vocabulary
# should represent exactly (see candletok.tokenize.features.POINT_MASS_MIN).
POINT_MASSES: tuple[str, ...] = ("gap", "body", "upper", "lower", "flat")


def point_mass_counts(enc: pl.DataFrame) -> np.ndarray:
    """Per row of ``enc`` (token rows with ``prev_close``, ``scale`` and the candle's own
    bar): (len(POINT_MASSES), n) booleans: open == previous close, close == open, high ==
    max(open, close), low == min(open, close), and a flat bar (O == H == L == C: the
    last three at once). Equal means the feature is 0 (``ZERO_TOL``), as the tokenizer
    sees it: adjusted prices that differ in their last bits are equal."""
    cols = [enc[x].to_numpy() for x in ("open", "high", "low", "close", "prev_close",
                                        "scale")]
    with np.errstate(divide="ignore", invalid="ignore"):
        zero = np.abs(features_from_prices(*cols)) < ZERO_TOL
    return np.concatenate([zero.T, zero[:, 1:].all(axis=1)[None, :]])


def fit_symbols(counts: pl.DataFrame, fit_max_candles: int, seed: int) -> list[str] | None:
    """The symbols whose train bars fit the vocabulary, from ``counts`` (``symbol``,
    ``len``: train bars per symbol): all (None) when they hold at most ``fit_max_candles``,
    else whole symbols in an order drawn from ``seed`` while they fit (at least one). A
    bounded, deterministic sample that any engine draws the same way."""
    counts = counts.sort("symbol")
    if int(counts["len"].sum()) <= fit_max_candles:
        return None
    rng = np.random.default_rng(seed)
    order = rng.permutation(counts.height)
    keep = np.cumsum(counts["len"].to_numpy()[order]) <= fit_max_candles
    keep[0] = True
    return counts["symbol"].to_numpy()[order][keep].tolist()


def fit_vocabulary(cfg: BuildConfig, counts: pl.DataFrame,
                   check: Callable[[pl.DataFrame], None],
                   train_bars: Callable[[list[str] | None], pl.DataFrame],
                   tick: Progress) -> Tokenizer:
    """The build's vocabulary, the one rule every engine follows: ``cfg.vocab`` when given,
    else a fresh ``cfg.scheme`` tokenizer fit on the train bars of the symbols
    :func:`fit_symbols` draws from ``counts`` (train bars per symbol), after ``check``
    (which refuses too few train bars in the engine's own words).
    ``train_bars(chosen)`` gives those bars (None: every symbol's); how is the engine's
    business (a Parquet scan here, worker tasks under Ray)."""
    if cfg.vocab is not None:
        return cfg.vocab if isinstance(cfg.vocab, Tokenizer) else load_tokenizer(cfg.vocab)
    tok = make_tokenizer(cfg.scheme, **cfg.tokenizer_params)
    check(counts)
    chosen = fit_symbols(counts, cfg.fit_max_candles, cfg.seed)
    tick("fit", 0, 1)
    tok.fit(train_bars(chosen))
    tick("fit", 1, 1)
    return tok


def stats_stride(total: int, stats_max_candles: int) -> int:
    """Every how many candles the error figures are measured (1: all of them)."""
    return max(1, -(-total // max(1, stats_max_candles)))


def _with_bars(enc: pl.DataFrame, bars: pl.DataFrame) -> pl.DataFrame:
    """``enc`` plus each candle's own bar (:data:`BAR_COLUMNS`). On the fast path the
    encoded rows are the bars' rows minus each series' first, so the bars are one filter;
    otherwise a join."""
    lengths = bars["symbol"].rle().struct.field("len").to_numpy().astype(np.int64)
    if enc.height == bars.height - lengths.size:
        keep = np.ones(bars.height, dtype=bool)
        keep[np.concatenate([[0], np.cumsum(lengths)[:-1]])] = False
        kept = bars.select(BAR_COLUMNS).filter(pl.Series(keep))
        if kept.height == enc.height:
            return pl.concat([enc, kept], how="horizontal")
    return enc.join(bars.select("symbol", "ts", *BAR_COLUMNS), on=["symbol", "ts"],
                    how="left")


def encode_group(
    tok: Tokenizer, bars: pl.DataFrame, cuts: Cuts, stride: int = 1,
    pool: ThreadPoolExecutor | None = None,
) -> EncodedGroup:
    """Encode one group of whole series and route its rows to their split.

    Pure: the result depends only on the arguments (``pool`` only lends threads to the
    error kernel). ``bars`` must be canonical and sorted by (symbol, ts)."""
    enc = _with_bars(tok.encode(bars), bars) if bars.height else tok.encode(bars)
    errs = None
    if enc.height:
        if pool is not None:
            errs = anchored_errors(tok, enc, bars, pool, stride)
        if errs is None:
            errs = frame_errors(reconstruction_errors(tok, enc, bars))[:, ::stride]
    has_nan = errs is not None and bool(np.isnan(errs).any())
    code = cuts.split_of(enc["ts"])
    masks = {s: code == i for i, s in enumerate(SPLITS)}
    tokens = enc["token"].to_numpy().astype(np.int64)
    out = EncodedGroup({}, {}, {})
    flags = point_mass_counts(enc) if enc.height else np.zeros((len(POINT_MASSES), 0), bool)
    for s in SPLITS:
        m = masks[s]
        out.counts[s] = np.bincount(tokens[m], minlength=tok.vocab_size)
        out.masses[s] = flags[:, m].sum(axis=1) if flags.shape[1] else np.zeros(
            len(POINT_MASSES), np.int64)
        out.rows[s] = enc if m.all() else enc.filter(pl.Series(m))
        if errs is None:
            out.errors[s] = np.zeros((4, 0))
            continue
        ms = m[::stride]
        part = errs if ms.all() else errs[:, ms]
        if has_nan:  # candles that decode to no price: out of every figure
            part = part[:, ~np.isnan(part).any(axis=0)]
        out.errors[s] = part
    return out


def build_dataset(
    symbols: Sequence[str] | BuildConfig,
    out: str | Path | None = None,
    *,
    loader: Callable[..., pl.DataFrame] | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> EncodeResult:
    """Load bars, split them by time, fit the vocabulary on train only, encode, write shards.

    Pass a :class:`BuildConfig`, or ``symbols``, ``out`` and its fields as keywords.
    Symbols are handled in groups of ``group_size`` so memory stays bounded: pass 1 loads
    each group once and stages its canonical bars as Parquet; pass 2 fits the tokenizer on
    the train part (at most ``fit_max_candles``, whole symbols chosen by ``seed``); pass 3
    maps :func:`encode_group` over the groups and streams rows into shards. A symbol that
    fails to load is listed in ``errors`` and skipped, unless ``strict``. The
    reconstruction-error figures are measured on every candle up to ``stats_max_candles``
    in all, and above that on a systematic sample (every k-th candle of each group, k the
    same everywhere) of about that size; ``err_candles`` in each split's stats says how
    many.
    """
    if isinstance(symbols, BuildConfig):
        cfg = symbols
    else:
        if out is None:
            raise CandletokError("build_dataset needs an output folder (out=...).")
        cfg = BuildConfig.from_options(symbols, out, **options)
    cfg.check()
    out_path = Path(cfg.out)
    tick = progress or (lambda stage, done, total: None)
    with claim_output(cfg):
        tmp = temp_dir_beside(out_path, ".partial")
        try:
            # One background thread writes files (staged groups, then shards) while the
            # main thread loads or encodes the next group; leaving the ``with`` waits for
            # it, so nothing is still writing into ``tmp`` when it is removed or renamed.
            with ThreadPoolExecutor(1, thread_name_prefix="candletok-io") as io:
                result = _Build(cfg, tmp, io, loader or load_bars, tick).run()
            replace_dir(out_path, tmp, overwrite=cfg.overwrite)
            result.root = out_path
            return result
        except Exception as exc:
            err = write_failure(out_path, tmp, exc)
            if err is None:
                raise
            raise err from exc
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


class _Build:
    """The three passes of one local build, sharing their state on ``self``."""

    def __init__(self, cfg: BuildConfig, tmp: Path, io: ThreadPoolExecutor,
                 loader: Callable[..., pl.DataFrame], tick: Progress) -> None:
        self.cfg, self.tmp, self.io, self.loader, self.tick = cfg, tmp, io, loader, tick
        self.errors: dict[str, str] = {}
        self.staged: list[Path] = []
        self.loaded: list[str] = []
        self.bar_times: list[np.ndarray] = []
        self.intervals: dict[str, str] = {}  # interval -> the first symbol showing it
        self.masses: dict[str, np.ndarray] = {}  # per split, POINT_MASSES counts

    def run(self) -> EncodeResult:
        self.stage()
        first, last = self.first_last()
        vf, tf = split_boundaries(
            first, last, parse_time(self.cfg.val_from, "val_from"),
            parse_time(self.cfg.test_from, "test_from"),
            bar_times=np.unique(np.concatenate(self.bar_times)),
        )
        self.bar_times = []
        tok = self.vocabulary(vf)
        tok.save(self.tmp / "vocab.json")
        writers, counts, errs = self.encode(tok, Cuts(vf, tf))
        return finish_manifest(self.tmp, tok, self.cfg, writers, counts, errs,
                               (first, last, vf, tf), self.loaded, self.errors,
                               masses=self.masses)

    def stage(self) -> None:
        """Pass 1: load each group once and stage its sorted bars. Staging files live only
        for this run and are read back twice, so they are written uncompressed (zstd cost
        more than the whole encode)."""
        cfg, syms = self.cfg, list(self.cfg.symbols)
        staging = self.tmp / ".staging"
        staging.mkdir()
        groups = symbol_groups(syms, cfg.group_size)
        writing: Future[None] | None = None
        done = 0
        for gi, group in enumerate(groups):
            frames = load_group(group, self.loader, self.errors, cfg.strict, source=cfg.source,
                                interval=cfg.interval, start=cfg.start, end=cfg.end)
            done += len(group)
            self.tick("load", done, len(syms))
            if not frames:
                continue
            bars = pl.concat(frames) if len(frames) > 1 else frames[0]
            if not is_sorted_by_symbol_ts(bars):
                bars = bars.sort("symbol", "ts")
            bars = drop_lone_symbols(bars, self.errors)
            if bars.height == 0:
                continue
            iv = group_interval(bars)
            if iv is not None:
                self.intervals.setdefault(iv, str(bars["symbol"][0]))
            self.bar_times.append(np.unique(bars["ts"].to_physical().to_numpy()))
            self.loaded.extend(bars["symbol"].unique(maintain_order=True).to_list())
            path = staging / f"group-{gi:05d}.parquet"
            if writing is not None:
                writing.result()  # at most one group waits to be written: memory stays bounded
            writing = self.io.submit(bars.write_parquet, path, compression="uncompressed")
            self.staged.append(path)
            del bars, frames
        if writing is not None:
            writing.result()
        if not self.staged:
            detail = "; ".join(f"{s}: {m}" for s, m in list(self.errors.items())[:3])
            raise CandletokError(f"No symbol could be loaded ({detail}).")
        cfg.interval = resolve_interval(cfg.interval, self.intervals)

    def first_last(self) -> tuple[datetime, datetime]:
        span = pl.scan_parquet(self.staged).select(
            pl.col("ts").min().alias("a"), pl.col("ts").max().alias("b")).collect()
        return span["a"][0], span["b"][0]

    def vocabulary(self, vf: datetime) -> Tokenizer:
        """Pass 2: the vocabulary, fit on train bars only (or the one given)."""
        train_scan = pl.scan_parquet(self.staged).filter(pl.col("ts") < pl.lit(vf))

        def bars(chosen: list[str] | None) -> pl.DataFrame:
            scan = train_scan if chosen is None else train_scan.filter(
                pl.col("symbol").is_in(chosen))
            return scan.collect()

        counts = (pl.DataFrame(schema={"symbol": pl.String, "len": pl.UInt32})
                  if self.cfg.vocab is not None else
                  train_scan.group_by("symbol").len().collect().sort("symbol"))
        return fit_vocabulary(self.cfg, counts, lambda c: self.check_fit_bars(c, vf), bars,
                              self.tick)

    def check_fit_bars(self, counts: pl.DataFrame, vf: datetime) -> None:
        """Refuse, in one sentence with the numbers, train bars too few to fit a
        vocabulary: ``counts`` holds the train bars per symbol; each series' first bar
        only anchors the next, so n bars of one symbol give n - 1 candles."""
        candles = int((counts["len"] - 1).clip(lower_bound=0).sum()) if counts.height else 0
        if candles >= MIN_FIT_CANDLES:
            return
        total = int(pl.scan_parquet(self.staged).select(pl.len()).collect().item())
        train = int(counts["len"].sum()) if counts.height else 0
        need = MIN_FIT_CANDLES + 1
        how = ("choose a later val_from=DATE or load a longer history"
               if self.cfg.val_from is not None else
               f"load a longer history (at least {need + 1} bars of one symbol with the "
               "default cuts: val and test take the last ones)")
        plural = "" if candles == 1 else "s"
        raise CandletokError(
            f"{total} bar{'' if total == 1 else 's'} loaded, {train} before the validation "
            f"cut {vf.date()} ({candles} training candle{plural}: each series' first bar "
            f"only anchors the next); fitting a vocabulary needs at least {need} bars of one "
            f"symbol before the cut: {how}."
        )

    def encode(self, tok: Tokenizer, cuts: Cuts) -> tuple[
            dict[str, ShardWriter], dict[str, np.ndarray], dict[str, list[np.ndarray]]]:
        """Pass 3: :func:`encode_group` over every staged group, rows streamed into shards
        (written on the io thread while the next group is read and encoded)."""
        expected = expected_split_rows(pl.scan_parquet(self.staged), cuts)
        writers = {s: ShardWriter(self.tmp, s, self.cfg.shard_rows, tok.fingerprint,
                                  pool=self.io, expected_rows=expected[s]) for s in SPLITS}
        total = int(pl.scan_parquet(self.staged).select(pl.len()).collect().item())
        stride = stats_stride(total, self.cfg.stats_max_candles)
        errs: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
        counts = {s: np.zeros(tok.vocab_size, np.int64) for s in SPLITS}
        self.masses = {s: np.zeros(len(POINT_MASSES), np.int64) for s in SPLITS}
        with ThreadPoolExecutor(1, thread_name_prefix="candletok-read") as reader, \
                ThreadPoolExecutor(2, thread_name_prefix="candletok-err") as cpu:
            nxt = reader.submit(pl.read_parquet, self.staged[0])
            upcoming = [*self.staged[1:], None]  # read group i + 1 while group i encodes
            for gi, after in enumerate(upcoming):  # one step per symbol group, not per row
                bars = nxt.result()
                if after is not None:
                    nxt = reader.submit(pl.read_parquet, after)
                g = encode_group(tok, bars, cuts, stride, cpu)
                for s in SPLITS:
                    writers[s].add(g.rows[s])
                    counts[s] += g.counts[s]
                    errs[s].append(g.errors[s])
                    self.masses[s] += g.masses[s]
                del bars, g
                self.tick("encode", gi + 1, len(self.staged))
        shutil.rmtree(self.tmp / ".staging")
        return writers, counts, errs


def finish_manifest(
    tmp: Path, tok: Tokenizer, cfg: BuildConfig, writers: dict[str, ShardWriter],
    counts: dict[str, np.ndarray], errs: dict[str, list[np.ndarray]],
    times: tuple[datetime, datetime, datetime, datetime], loaded: list[str],
    errors: dict[str, str], masses: dict[str, np.ndarray] | None = None,
) -> EncodeResult:
    """Close every split's writer, compute the split figures and write the manifest last
    (its presence marks a complete folder). Shared by every engine. ``masses``: per split,
    the :data:`POINT_MASSES` counts summed over the groups."""
    first, last, vf, tf = times
    stats: list[SplitStats] = []
    splits_meta: dict[str, Any] = {}
    for s in SPLITS:
        meta = writers[s].close()
        c = counts[s]
        st = SplitStats(split=s, symbols=len(set(meta["symbols"])), candles=int(c.sum()),
                        tokens_used=int((c > 0).sum()), path=str(Path(cfg.out) / s),
                        bits_per_candle=entropy_bits(c))
        parts = [p for p in errs.pop(s) if p.shape[1]]
        st.err_candles = int(sum(p.shape[1] for p in parts))
        if masses is not None and st.candles:
            st.point_masses = {k: int(v) / st.candles
                               for k, v in zip(POINT_MASSES, masses[s].tolist(), strict=True)}
        figures = error_stats(parts)
        if figures is not None:
            (st.close_err_median_bps, st.close_err_p95_bps,
             st.ohlc_err_median_bps, st.ohlc_err_p95_bps) = figures
        stats.append(st)
        splits_meta[s] = {
            "from": iso(None if s == "train" else (vf if s == "val" else tf)),
            "to": iso(vf if s == "train" else (tf if s == "val" else None)),
            **meta,
        }
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "fingerprint": tok.fingerprint,
        "scheme": tok.scheme,
        "vocab_size": tok.vocab_size,
        "vocab": "vocab.json",
        "source": cfg.source,
        "interval": cfg.interval,
        "symbols": loaded,
        "boundaries": {"val_from": iso(vf), "test_from": iso(tf),
                       "first": iso(first), "last": iso(last)},
        "splits": splits_meta,
        "errors": errors,
        "stats": {st.split: {k: v for k, v in st.__dict__.items() if k not in ("split", "path")}
                  for st in stats},
    }
    write_json_atomic(tmp / "manifest.json", clean_json(manifest))  # last: marks completion
    return EncodeResult(root=Path(cfg.out), manifest=manifest, stats=stats, errors=errors,
                        notes=tok.notes())
