"""Atomic file writes: write to a temporary name in the same folder, fsync, then rename.

A crash or Ctrl-C at any moment leaves either the old file or the new one, never a
half-written file under the final name. Also here, because every writer needs them: the
refusal to replace an existing output without ``overwrite``, the lock that keeps two runs
from writing one output folder, the clean-up of the temporary folders that killed runs
leave behind, and one sentence for a full disk whichever library noticed it."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from candletok.core.errors import OutputError

log = logging.getLogger(__name__)

STALE_PARTIAL_AGE_S = 24 * 3600
"""A temporary folder whose owner cannot be checked (another machine, a reused pid, an
older candletok) counts as stale after this long."""

_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
# How libraries report a full disk when they do not raise OSError: polars' ComputeError
# carries the OS text; torch.save raises RuntimeError from its zip writer, which names no
# cause ("[enforce fail at inline_container.cc:672] . unexpected pos", "PytorchStreamWriter
# failed writing file ... : file write failed").
_DISK_FULL_TEXT = ("no space left on device", "disk quota exceeded")
_SHORT_WRITE_TEXT = ("inline_container", "file write failed", "pytorchstreamwriter")


def refuse_existing(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
                    overwrite: bool, hint: str = "") -> None:
    """Refuse to replace an output that existed before the command started, unless
    ``overwrite``: one sentence naming it (``hint`` may add another way out). Called
    before any work, so a refusal costs nothing."""
    many = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    there = [Path(p) for p in many if Path(p).exists()]
    if there and not overwrite:
        raise OutputError(f"{there[0]} already exists; pass overwrite=True to replace it"
                          f"{hint or ', or write to another path'}.")


def human_bytes(n: float) -> str:
    """``17.3 MB``: sizes in sentences (decimal units, as disk tools print them)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def path_size(path: Path) -> int:
    """Bytes under ``path`` (a file or a folder); 0 when it is gone."""
    try:
        if path.is_file():
            return path.stat().st_size
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    except OSError:
        return 0


def free_bytes(path: Path) -> int | None:
    """Free bytes on the file system of ``path`` (its nearest existing folder)."""
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p if p.is_dir() else p.parent).free
    except OSError:
        return None


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) says the disk or quota is full,
    whichever library raised it; a torch write that stopped part-way counts too (torch
    names no cause, and a full disk is what stops it)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _DISK_FULL_ERRNOS:
            return True
        text = str(e).lower()
        if any(t in text for t in _DISK_FULL_TEXT) or (
                isinstance(e, RuntimeError) and any(t in text for t in _SHORT_WRITE_TEXT)):
            return True
        e = e.__cause__ or e.__context__
    return False


def disk_full_error(final: Path, written: int = 0, need: int | None = None) -> OutputError:
    """One sentence for a full disk: the user's path, the space free there now and the
    space needed (``need`` when the writer knows it, else more than the ``written`` bytes
    that fit before the disk filled)."""
    free = free_bytes(final)
    where = final.parent if str(final.parent) not in ("", ".") else Path.cwd()
    have = "unknown space" if free is None else human_bytes(free)
    wanted = (f"; about {human_bytes(need)} needed" if need else
              f"; more than {human_bytes(written)} needed" if written else ", not enough")
    err = OutputError(f"Cannot write {final}: the disk is full ({have} free in {where}"
                      f"{wanted}); free some space or write to another disk.")
    err.errno = errno.ENOSPC
    return err


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (no race with
    threads creating files); elsewhere set and restored at once."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def output_error(final: Path, exc: OSError) -> OutputError:
    """One sentence naming the user's path (not the hidden temporary one) and the cause."""
    if final.is_dir():
        return OutputError(f"Cannot write {final}: it is a folder; give a file path.")
    if is_disk_full(exc):
        return disk_full_error(final)
    why = exc.strerror or type(exc).__name__
    return OutputError(f"Cannot write {final}: {why.lower()} (check the folder exists "
                       "and is writable).")


def replace_dir(final: Path, tmp: Path, overwrite: bool = True) -> None:
    """Move the finished folder ``tmp`` to ``final``, replacing an old folder there: the
    old one is renamed aside first and removed only after the new one is in place, so a
    crash leaves one complete folder under ``final`` (or the old one beside it). Without
    ``overwrite`` a folder with contents (or a file) that appeared at ``final`` while
    ``tmp`` was being built (by something that took no lock) is refused, checked again at
    the rename; an empty folder there is taken, as the checks before the build allow."""
    if not overwrite and final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise OutputError(f"{final} appeared while this run was writing it; nothing was "
                          "replaced (pass overwrite=True to replace it).")
    if final.exists():
        trash = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        final.rename(trash)
        tmp.rename(final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        tmp.rename(final)


def temp_dir_beside(final: Path, suffix: str) -> Path:
    """A fresh hidden folder beside ``final`` (same file system, so it can be renamed onto
    it), with the permissions a plain mkdir would give. Its name carries this process's
    pid (``.NAME.p<pid>-xxxx<suffix>``) so that a later run can tell a killed run's folder
    from a live one (:func:`clean_stale_partials`)."""
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.p{os.getpid()}-", suffix=suffix,
                                    dir=final.parent))
        os.chmod(tmp, 0o777 & ~_umask())
    except OSError as exc:
        raise output_error(final, exc) from exc
    return tmp


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], need: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success only.

    OS errors of the write itself (a folder in the way, no permission, a disk full) come
    out as :class:`OutputError` naming ``path``; so does a full disk that the caller's
    writer (polars, torch, numpy) reports in its own words, with the free space and
    ``need`` (the bytes the file takes, when the caller knows); other errors of the
    caller's own code pass."""
    final = Path(path)
    if final.is_dir():
        raise output_error(final, IsADirectoryError())
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp",
                                        dir=final.parent)
        os.close(fd)
    except OSError as exc:
        raise output_error(final, exc) from exc
    tmp = Path(tmp_name)
    try:
        try:
            yield tmp
        except OutputError:
            raise  # already names its own file (a nested atomic_path): keep that one
        except Exception as exc:  # a full disk, however the writer's library words it
            if is_disk_full(exc):
                raise disk_full_error(final, path_size(tmp), need) from exc
            raise
        try:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp made it 0600; give open()'s mode
            os.replace(tmp, final)
        except OSError as exc:
            raise output_error(final, exc) from exc
    finally:
        if tmp.exists():
            tmp.unlink()


@dataclass
class OutputLock:
    """An exclusive ``flock`` on ``.NAME.lock`` beside an output: one run at a time may
    build that output. The kernel drops the lock when its process dies (kill -9 too), so
    a lock file left behind never blocks a later run."""

    path: Path
    fd: int | None

    def release(self) -> None:
        """Remove the lock file and drop the lock (removed while still held, so no other
        run can be holding a lock on a file that is no longer there)."""
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> OutputLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def lock_output(final: Path) -> OutputLock:
    """Take :class:`OutputLock` for ``final``, or refuse in one sentence when another run
    holds it (naming its pid and host, written in the lock file)."""
    path = final.parent / f".{final.name}.lock"
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(final, exc) from exc
    for _ in range(10):  # the holder may remove the file between our open and our flock
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        except OSError as exc:
            raise output_error(final, exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another run"
            finally:
                os.close(fd)
            raise OutputError(f"{final} is being written by another candletok run ({holder}); "
                              "wait for it to finish or write to another folder.") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # locked a file its holder had just removed: try the new one
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        return OutputLock(path, fd)
    raise OutputError(f"Could not lock {final} for writing; try again.")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def clean_stale_partials(final: Path, suffix: str = ".partial",
                         max_age_s: float = STALE_PARTIAL_AGE_S) -> list[tuple[Path, int]]:
    """Remove the temporary folders (:func:`temp_dir_beside`) that killed runs left beside
    ``final``, and return each with its size (the caller reports them). Call it holding
    ``final``'s :class:`OutputLock`: then no live run of this machine builds ``final``,
    and a folder is stale when its pid is dead, or (pid unknown, or alive but a
    different process by now) when it is older than ``max_age_s``."""
    removed: list[tuple[Path, int]] = []
    prefix = f".{final.name}."
    try:
        candidates = [p for p in final.parent.iterdir() if p.is_dir() and
                      p.name.startswith(prefix) and p.name.endswith(suffix)]
    except OSError:
        return removed
    now = time.time()
    for p in candidates:
        middle = p.name[len(prefix):-len(suffix)]
        pid = None
        if middle.startswith("p") and "-" in middle and middle[1:].split("-")[0].isdigit():
            pid = int(middle[1:].split("-")[0])
        try:
            age = now - p.stat().st_mtime
        except OSError:
            continue
        dead = pid is not None and pid != os.getpid() and not _pid_alive(pid)
        if (pid is not None and pid == os.getpid()) or not (dead or age > max_age_s):
            continue
        size = path_size(p)
        shutil.rmtree(p, ignore_errors=True)
        if not p.exists():
            removed.append((p, size))
    if removed:
        log.warning("removed %d temporary folder%s left beside %s by interrupted runs: %s",
                    len(removed), "" if len(removed) == 1 else "s", final,
                    ", ".join(f"{p.name} ({human_bytes(n)})" for p, n in removed))
    return removed


def atomic_write(path: str | os.PathLike[str], writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp_path)`` and move the result onto ``path`` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_parquet_atomic(
    df: pl.DataFrame, path: str | os.PathLike[str], metadata: dict[str, str] | None = None
) -> Path:
    """Write ``df`` as Parquet (zstd) atomically, with optional key-value metadata."""
    return atomic_write(
        path, lambda p: df.write_parquet(p, compression="zstd", metadata=metadata)
    )


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
