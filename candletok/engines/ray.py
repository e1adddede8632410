"""The Ray Data engine: the local build's passes as Ray Data stages, same bytes out.

Install with ``pip install "candletok[ray]"``. Ray is imported inside :func:`build_ray`
only, so nothing else in candletok needs it.

The stages, each one Ray Data ``map_batches`` over the build's symbol groups (the local
build's groups, from :func:`~candletok.dataset.groups.symbol_groups`):

1. read: one task per group loads it with the same loader as the local build (so the
   same validation and repair), sorts it and keeps its canonical bars in the object store
   as one row of Arrow IPC bytes beside a small summary. A group is one row, so no block
   split can ever cut a series in two, and the later stages never touch the source
   again. Partitioned by symbol group: no ``groupby`` shuffle.
2. plan (driver): the cut dates from the groups' first/last bars and bar times, exactly as
   the local build computes them.
3. count: train bars per symbol and the token rows each split will get, per group.
4. fit (driver): the same bounded, deterministic sample of whole train symbols
   (:func:`~candletok.dataset.build.fit_symbols`), its rows gathered in group order, the
   vocabulary fit once and broadcast with ``ray.put`` (or the given vocabulary).
5. encode: :func:`~candletok.dataset.build.encode_group` per group; the results stream
   back in group order into the same :class:`~candletok.dataset.writer.ShardWriter` and
   :func:`~candletok.dataset.build.finish_manifest` as the local build, so the shards,
   the token index, the manifest's splits and the fingerprint are byte for byte the local
   engine's (only ``created`` differs).

The folder is built under a temporary name and renamed at the end, the manifest written
last; a failed run leaves nothing that loads. A task that fails says which symbol (or
group of symbols) it was working on. On a cluster every node must see ``source`` at the
same path (or use a source that needs no files) and have candletok installed.
"""

from __future__ import annotations

import io
import json
import logging
import pickle
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from candletok.core.atomic import replace_dir, temp_dir_beside
from candletok.core.errors import CandletokError
from candletok.core.ids import SPLITS
from candletok.core.times import parse_time
from candletok.data.sources import load_bars
from candletok.dataset.build import (
    POINT_MASSES,
    BuildConfig,
    EncodeResult,
    Progress,
    claim_output,
    encode_group,
    finish_manifest,
    fit_vocabulary,
    stats_stride,
    write_failure,
)
from candletok.dataset.groups import (
    drop_lone_symbols,
    group_interval,
    is_sorted_by_symbol_ts,
    load_group,
    resolve_interval,
    symbol_groups,
)
from candletok.dataset.splits import Cuts, expected_split_rows, split_boundaries
from candletok.dataset.writer import ShardWriter
from candletok.tokenize.base import Tokenizer

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_INSTALL = 'The Ray engine needs Ray: pip install "candletok[ray]" (or "ray[data]").'


def build_ray(
    cfg: BuildConfig,
    *,
    ray_address: str | None = None,
    loader: Callable[..., pl.DataFrame] | None = None,
    progress: Progress | None = None,
) -> EncodeResult:
    """Build ``cfg``'s dataset on Ray Data (see the module docs).

    Uses the Ray already initialized in this process if there is one; else starts a local
    Ray (``ray_address=None``) or connects to the cluster at ``ray_address`` (``auto``,
    ``ray://host:10001``...), and shuts down what it started when done."""
    ray = _import_ray()
    cfg.check()
    out_path = Path(cfg.out)
    tick = progress or (lambda stage, done, total: None)
    lock = claim_output(cfg)  # one build per folder; stale partial folders removed
    started, tmp = False, None
    try:
        started = _connect(ray, ray_address)
        tmp = temp_dir_beside(out_path, ".partial")
        with ThreadPoolExecutor(1, thread_name_prefix="candletok-io") as pool:
            result = _RayBuild(ray, cfg, tmp, pool, loader or load_bars, tick).run()
        replace_dir(out_path, tmp, overwrite=cfg.overwrite)
        result.root = out_path
        return result
    except Exception as exc:
        err = write_failure(out_path, tmp, exc) if tmp is not None else None
        if err is None:
            raise
        raise err from exc
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if started:
            ray.shutdown()
        lock.release()


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # the Data library comes with the [data] extra
    except ImportError as exc:
        raise CandletokError(_INSTALL) from exc
    return ray


def _connect(ray: Any, address: str | None) -> bool:
    """Make sure Ray is up; True when this call started it (and must shut it down)."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise CandletokError(f"Could not start or reach {where} ({exc}); check "
                             "--ray-address and that `ray start` runs there.") from exc
    return True


class _RayBuild:
    """The driver side of one Ray build: stages, cut dates, fit, shard writing."""

    def __init__(self, ray: Any, cfg: BuildConfig, tmp: Path, pool: ThreadPoolExecutor,
                 loader: Callable[..., pl.DataFrame], tick: Progress) -> None:
        self.ray, self.cfg, self.tmp, self.pool, self.loader, self.tick = (
            ray, cfg, tmp, pool, loader, tick)
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # the CLI draws progress
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # results come back in group order
        ctx.enable_progress_bars = False
        ctx.verbose_stats_logs = False

    def _map(self, ds: Any, fn: Callable[..., pa.Table], **kwargs: Any) -> Any:
        return ds.map_batches(fn, batch_size=1, batch_format="pyarrow", fn_kwargs=kwargs)

    def run(self) -> EncodeResult:
        cfg = self.cfg
        groups = symbol_groups(cfg.symbols, cfg.group_size)
        items = [{"gi": i, "symbols": g} for i, g in enumerate(groups)]
        self.tick("load", 0, len(cfg.symbols))
        read = self._map(
            self.ray.data.from_items(items, override_num_blocks=len(items)), _read_task,
            loader=self.loader, strict=cfg.strict,
            load_kw={"source": cfg.source, "interval": cfg.interval, "start": cfg.start,
                     "end": cfg.end})
        loaded = _run_stage("read", read.materialize)
        info = _rows(loaded.drop_columns(["bars"]), "read")
        self.tick("load", len(cfg.symbols), len(cfg.symbols))
        errors: dict[str, str] = {}
        symbols: list[str] = []
        for r in info:
            errors.update(json.loads(r["errors"]))
            symbols.extend(json.loads(r["loaded"]))
        full = [r for r in info if r["rows"]]
        if not full:
            detail = "; ".join(f"{s}: {m}" for s, m in list(errors.items())[:3])
            raise CandletokError(f"No symbol could be loaded ({detail}).")
        found: dict[str, str] = {}
        for r in full:
            if r["interval"]:
                found.setdefault(r["interval"], json.loads(r["loaded"])[0])
        cfg.interval = resolve_interval(cfg.interval, found)
        first = _time(min(r["first"] for r in full))
        last = _time(max(r["last"] for r in full))
        times = np.unique(np.concatenate([np.frombuffer(r["times"], np.int64) for r in full]))
        vf, tf = split_boundaries(first, last, parse_time(cfg.val_from, "val_from"),
                                  parse_time(cfg.test_from, "test_from"), bar_times=times)
        del times
        cuts = Cuts(vf, tf)
        counted = _rows(self._map(loaded, _count_task, cuts=cuts), "count")
        tok = self.vocabulary(loaded, counted, vf)
        tok.save(self.tmp / "vocab.json")
        expected = {s: sum(int(r[s]) for r in counted) for s in SPLITS}
        total = sum(int(r["rows"]) for r in info)
        writers, counts, errs = self.encode(loaded, tok, cuts, expected,
                                            stats_stride(total, cfg.stats_max_candles))
        return finish_manifest(self.tmp, tok, cfg, writers, counts, errs,
                               (first, last, vf, tf), symbols, errors, masses=self.masses)

    def vocabulary(self, loaded: Any, counted: list[dict[str, Any]], vf: datetime
                   ) -> Tokenizer:
        """The given vocabulary, or one fit on the local build's sample of train bars."""
        counts = pl.DataFrame(
            {"symbol": [s for r in counted for s in r["symbols"]],
             "len": [n for r in counted for n in r["lens"]]},
            schema={"symbol": pl.String, "len": pl.Int64},
        ).filter(pl.col("len") > 0)

        def check(counts: pl.DataFrame) -> None:
            if counts.height == 0 or int(counts["len"].sum()) < 2:
                raise CandletokError(
                    f"No training bars before the validation cut {vf.date()}; "
                    "choose an earlier val_from or load a longer history."
                )

        def bars(chosen: list[str] | None) -> pl.DataFrame:
            rows = _rows(self._map(loaded, _train_task, vf=vf, chosen=chosen), "fit")
            frames = [pl.read_ipc(io.BytesIO(r["bars"])) for r in rows if r["rows"]]
            return pl.concat(frames) if len(frames) > 1 else frames[0]

        return fit_vocabulary(self.cfg, counts, check, bars, self.tick)

    def encode(self, loaded: Any, tok: Tokenizer, cuts: Cuts, expected: dict[str, int],
               stride: int) -> tuple[dict[str, ShardWriter], dict[str, np.ndarray],
                                     dict[str, list[np.ndarray]]]:
        """:func:`encode_group` on the workers, rows into the shard writers here, in group
        order (shard files written on the io thread while the next result arrives)."""
        writers = {s: ShardWriter(self.tmp, s, self.cfg.shard_rows, tok.fingerprint,
                                  pool=self.pool, expected_rows=expected[s]) for s in SPLITS}
        errs: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
        counts = {s: np.zeros(tok.vocab_size, np.int64) for s in SPLITS}
        self.masses = {s: np.zeros(len(POINT_MASSES), np.int64) for s in SPLITS}
        ref = self.ray.put(tok)  # the broadcast: each worker fetches it once
        n = loaded.count()
        stage = self._map(loaded, _encode_task, tok=ref, cuts=cuts, stride=stride)
        for done, row in enumerate(_in_order(_iter_stage(stage, "encode"))):
            _relog(row)
            if row["payload"] is None:
                continue
            g = pickle.loads(row["payload"])
            for s in SPLITS:
                writers[s].add(g.rows[s])
                counts[s] += g.counts[s]
                errs[s].append(g.errors[s])
                self.masses[s] += g.masses[s]
            self.tick("encode", done + 1, n)
        return writers, counts, errs


# ---------------------------------------------------------------- driver helpers


def _time(us: int) -> datetime:
    """Microseconds since the epoch as an aware UTC datetime (exact, no float)."""
    return _EPOCH + timedelta(microseconds=int(us))


def _run_stage(stage: str, fn: Callable[[], Any]) -> Any:
    """Run a Ray call; a failure Ray itself reports (a worker lost, a task that raised
    outside the guarded code) becomes one sentence naming the stage."""
    try:
        return fn()
    except CandletokError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise CandletokError(f"The Ray build failed in its {stage} stage: {first}") from exc


def _rows(ds: Any, stage: str) -> list[dict[str, Any]]:
    """All rows of a small stage result, in group order, failures raised."""
    rows = sorted(_run_stage(stage, ds.take_all), key=lambda r: r["gi"])
    for r in rows:
        _relog(r)
    return rows


def _iter_stage(ds: Any, stage: str) -> Iterator[dict[str, Any]]:
    it = iter(ds.iter_rows())
    while True:
        row = _run_stage(stage, lambda: next(it, None))
        if row is None:
            return
        yield row


def _in_order(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Rows by ascending ``gi`` (Ray keeps the order here; this only guarantees it)."""
    pending: dict[int, dict[str, Any]] = {}
    want = 0
    for row in rows:
        pending[int(row["gi"])] = row
        while want in pending:
            yield pending.pop(want)
            want += 1
    yield from (pending[k] for k in sorted(pending))


def _relog(row: dict[str, Any]) -> None:
    """Replay a task's log records here, then raise its failure if it had one."""
    for level, message in json.loads(row.get("logs") or "[]"):
        log.log(level, "%s", message)
    if row.get("failure"):
        raise CandletokError(row["failure"])


# ---------------------------------------------------------------- worker tasks


class _Capture(logging.Handler):
    """Collects candletok's warnings inside a task, to be replayed on the driver."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.levelno, record.getMessage()))


@contextmanager
def _captured() -> Iterator[_Capture]:
    handler = _Capture()
    root = logging.getLogger("candletok")
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def _out(gi: int, handler: _Capture, failure: str = "", **cols: Any) -> pa.Table:
    """One result row: the group, its replayable logs, its failure, and ``cols``."""
    data: dict[str, Any] = {"gi": pa.array([gi], pa.int64()),
                            "logs": pa.array([json.dumps(handler.records)], pa.string()),
                            "failure": pa.array([failure], pa.string())}
    for name, (value, typ) in cols.items():
        data[name] = pa.array([value], typ)
    return pa.table(data)


def _ipc(df: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.write_ipc(buf, compression="uncompressed")
    return buf.getvalue()


def _bars_of(batch: pa.Table) -> pl.DataFrame:
    return pl.read_ipc(io.BytesIO(batch.column("bars")[0].as_py()))


def _culprit(group: list[str], loader: Callable[..., pl.DataFrame], load_kw: dict[str, Any],
             exc: Exception) -> str:
    """The failing symbol of a group that failed to load as a whole, with its message."""
    if len(group) > 1:
        for sym in group:
            try:
                loader([sym], **load_kw)
            except Exception as sub:
                return f"Symbol {sym} failed to load: {sub}"
    return f"Symbol {', '.join(group)} failed to load: {exc}"


def _read_task(batch: pa.Table, loader: Callable[..., pl.DataFrame], strict: bool,
               load_kw: dict[str, Any]) -> pa.Table:
    """Stage 1: load one group, sort it, and return its bars (IPC) and its summary."""
    gi = int(batch.column("gi")[0].as_py())
    group = [str(s) for s in batch.column("symbols")[0].as_py()]
    errors: dict[str, str] = {}
    with _captured() as logs:
        try:
            frames = load_group(group, loader, errors, strict, **load_kw)
            bars = pl.concat(frames) if len(frames) > 1 else (frames[0] if frames else None)
            if bars is not None and not is_sorted_by_symbol_ts(bars):
                bars = bars.sort("symbol", "ts")
            if bars is not None:
                bars = drop_lone_symbols(bars, errors)
            interval = group_interval(bars) if bars is not None and bars.height else None
        except Exception as exc:
            return _out(gi, logs, _culprit(group, loader, load_kw, exc)
                        if isinstance(exc, CandletokError) else
                        f"Loading {', '.join(group)} failed: {type(exc).__name__}: {exc}",
                        bars=(None, pa.large_binary()), errors=("{}", pa.string()),
                        loaded=("[]", pa.string()), rows=(0, pa.int64()),
                        first=(0, pa.int64()), last=(0, pa.int64()),
                        times=(b"", pa.large_binary()), interval=("", pa.string()))
    if bars is None or bars.height == 0:
        return _out(gi, logs, bars=(None, pa.large_binary()),
                    errors=(json.dumps(errors), pa.string()), loaded=("[]", pa.string()),
                    rows=(0, pa.int64()), first=(0, pa.int64()), last=(0, pa.int64()),
                    times=(b"", pa.large_binary()), interval=("", pa.string()))
    ts = bars["ts"].to_physical()
    return _out(
        gi, logs, bars=(_ipc(bars), pa.large_binary()),
        errors=(json.dumps(errors), pa.string()),
        loaded=(json.dumps(bars["symbol"].unique(maintain_order=True).to_list()), pa.string()),
        rows=(bars.height, pa.int64()), first=(int(ts.min()), pa.int64()),
        last=(int(ts.max()), pa.int64()),
        times=(np.unique(ts.to_numpy()).astype(np.int64).tobytes(), pa.large_binary()),
        interval=(interval or "", pa.string()))


def _count_task(batch: pa.Table, cuts: Cuts) -> pa.Table:
    """Stage 3: train bars per symbol and the token rows of each split, for one group."""
    gi = int(batch.column("gi")[0].as_py())
    with _captured() as logs:
        if not batch.column("bars")[0].is_valid:
            return _out(gi, logs, symbols=([], pa.list_(pa.string())),
                        lens=([], pa.list_(pa.int64())),
                        **{s: (0, pa.int64()) for s in SPLITS})
        bars = _bars_of(batch)
        train = bars.filter(pl.col("ts") < pl.lit(cuts.val_from)).group_by(
            "symbol", maintain_order=True).len()
        rows = expected_split_rows(bars, cuts)
    return _out(gi, logs, symbols=(train["symbol"].to_list(), pa.list_(pa.string())),
                lens=(train["len"].cast(pl.Int64).to_list(), pa.list_(pa.int64())),
                **{s: (rows[s], pa.int64()) for s in SPLITS})


def _train_task(batch: pa.Table, vf: datetime, chosen: list[str] | None) -> pa.Table:
    """Stage 4: one group's train bars of the chosen symbols, for the fit."""
    gi = int(batch.column("gi")[0].as_py())
    with _captured() as logs:
        if not batch.column("bars")[0].is_valid:  # every symbol of the group failed
            return _out(gi, logs, bars=(None, pa.large_binary()), rows=(0, pa.int64()))
        bars = _bars_of(batch).filter(pl.col("ts") < pl.lit(vf))
        if chosen is not None:
            bars = bars.filter(pl.col("symbol").is_in(chosen))
    return _out(gi, logs, bars=(_ipc(bars), pa.large_binary()), rows=(bars.height, pa.int64()))


_TOKENIZERS: dict[str, Tokenizer] = {}


def _encode_task(batch: pa.Table, tok: Any, cuts: Cuts, stride: int) -> pa.Table:
    """Stage 5: :func:`encode_group` on one group; the result goes back pickled."""
    import ray

    gi = int(batch.column("gi")[0].as_py())
    with _captured() as logs:
        if not batch.column("bars")[0].is_valid:
            return _out(gi, logs, payload=(None, pa.large_binary()))
        key = tok.hex()
        if key not in _TOKENIZERS:  # one fetch of the broadcast vocabulary per worker
            _TOKENIZERS.clear()
            _TOKENIZERS[key] = ray.get(tok)
        bars = _bars_of(batch)
        try:
            with ThreadPoolExecutor(1, thread_name_prefix="candletok-err") as pool:
                g = encode_group(_TOKENIZERS[key], bars, cuts, stride, pool)
        except Exception as exc:
            names = ", ".join(bars["symbol"].unique(maintain_order=True).to_list())
            return _out(gi, logs, f"Encoding {names} failed: {type(exc).__name__}: {exc}",
                        payload=(None, pa.large_binary()))
    return _out(gi, logs, payload=(pickle.dumps(g, protocol=5), pa.large_binary()))
