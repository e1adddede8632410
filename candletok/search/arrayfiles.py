"""The search index's own files: each saved array's record (size, mtime, digest), the
check that trusts an unchanged array by one stat, and the cached per-time sums.

The digests are xxHash's XXH3-128 of each array's bytes, taken from memory at save time
(no read-back of what was just written) and from the memory-mapped file when a check
needs one. They guard derived caches against accidental edits, which a 128-bit hash
catches as surely as sha256 does, at about 20x its speed (~8 GB/s against ~0.4 GB/s on
the development machine): at 10M candles the index is 740 MB, and hashing it with sha256
took longer than building it. The dataset's own shards keep their sha256 (the
manifest's contract)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from candletok.core.atomic import atomic_path

log = logging.getLogger(__name__)

DIGEST = "xxh3_128"


def digest(*arrays: np.ndarray, key: str = "") -> str:
    """XXH3-128 over ``key`` and each array's dtype, shape and bytes."""
    h = xxhash.xxh3_128(key.encode())
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a.reshape(-1)).cast("B"))
    return h.hexdigest()


def array_record(path: Path, arr: np.ndarray) -> list[Any]:
    """[size, mtime_ns, digest] of an array saved at ``path`` (digest from memory)."""
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, f"{DIGEST}:{digest(arr)}"]


def check_arrays(path: Path, names: Iterable[str], recorded: dict[str, list[Any]]) -> None:
    """Refuse (ValueError: :func:`~candletok.search.index.open_index` then rebuilds, with
    a warning) a saved array whose content is not what was saved. An array with its
    saved size and mtime is taken as it is (a query pays one stat per array); any other
    is hashed, so an array edited in place, even to the same size, is caught. An index
    saved without the record is rebuilt."""
    for name in names:
        want = recorded.get(name)
        if not want or len(want) != 3 or not str(want[2]).startswith(f"{DIGEST}:"):
            raise ValueError(f"{name}.npy has no recorded checksum: an index saved by an "
                             "older candletok")
        file = path / f"{name}.npy"
        st = os.stat(file)
        if [st.st_size, st.st_mtime_ns] != want[:2] and \
                f"{DIGEST}:{digest(np.load(file, mmap_mode='r'))}" != want[2]:
            raise ValueError(f"{name}.npy changed since the index was built (its checksum "
                             "does not match)")


def load_days(path: Path, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The per-time sums cached beside the index (None when absent, for other data, or
    not what was saved: the digest covers the key and both arrays, so an edited cache is
    recomputed, never trusted)."""
    try:
        with np.load(path / "days.npz") as z:
            if str(z["key"]) != key:
                return None
            times, cums = z["times"], z["cums"]
            if str(z["digest"]) != digest(times, cums, key=key):
                log.warning("the cached base-rate sums in %s/days.npz do not match their "
                            "checksum; recomputing them", path)
                return None
            return times, cums
    except (OSError, KeyError, ValueError):
        return None


def save_days(path: Path, key: str, days: tuple[np.ndarray, np.ndarray]) -> None:
    """Cache the per-time sums beside the index (a rebuild replaces the folder, and the
    key guards against a stale file); a read-only dataset simply recomputes them."""
    if not path.is_dir() or not key:
        return
    try:
        with atomic_path(path / "days.npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, key=np.array(key), times=days[0], cums=days[1],
                     digest=np.array(digest(days[0], days[1], key=key)))
    except OSError as exc:
        log.debug("could not cache %s/days.npz (%s)", path, exc)


def file_digest(path: Path) -> str:
    """XXH3-128 of a file's bytes, read in 16 MiB pieces."""
    h = xxhash.xxh3_128()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 24):
            h.update(chunk)
    return f"{DIGEST}:{h.hexdigest()}"
