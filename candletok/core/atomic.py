"""Atomic file writes: write to a temporary name in the same folder, fsync, then rename.

A crash or Ctrl-C at any moment leaves either the old file or the new one, never a
half-written file under the final name."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl

from candletok.core.errors import OutputError


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
    why = exc.strerror or type(exc).__name__
    return OutputError(f"Cannot write {final}: {why.lower()} (check the folder exists "
                       "and is writable).")


def replace_dir(final: Path, tmp: Path) -> None:
    """Move the finished folder ``tmp`` to ``final``, replacing an old folder there: the
    old one is renamed aside first and removed only after the new one is in place, so a
    crash leaves one complete folder under ``final`` (or the old one beside it)."""
    if final.exists():
        trash = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        final.rename(trash)
        tmp.rename(final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        tmp.rename(final)


def temp_dir_beside(final: Path, suffix: str) -> Path:
    """A fresh hidden folder beside ``final`` (same file system, so it can be renamed onto
    it), with the permissions a plain mkdir would give."""
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=suffix, dir=final.parent))
        os.chmod(tmp, 0o777 & ~_umask())
    except OSError as exc:
        raise output_error(final, exc) from exc
    return tmp


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success only.

    OS errors of the write itself (a folder in the way, no permission, a disk full) come
    out as :class:`OutputError` naming ``path``; errors of the caller's own code pass."""
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
        yield tmp
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
