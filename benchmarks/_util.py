"""Timing and peak-memory helpers shared by the benchmark scripts."""

from __future__ import annotations

import os
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class Measured:
    seconds: float
    peak_rss_mib: float  # highest resident set size seen while the call ran
    delta_rss_mib: float  # that peak minus the RSS just before the call
    value: Any = None
    times: tuple[float, ...] = ()  # every call's wall time, in order

    @property
    def median(self) -> float:
        t = sorted(self.times)
        return t[len(t) // 2] if len(t) % 2 else (t[len(t) // 2 - 1] + t[len(t) // 2]) / 2


def _rss_mib() -> float:
    try:
        import psutil

        return psutil.Process(os.getpid()).memory_info().rss / 2**20
    except ImportError:  # pragma: no cover - psutil is in the dev extra
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(fn: Callable[[], T], repeat: int = 1) -> Measured:
    """Best wall time of ``repeat`` calls, and the peak RSS sampled every 5 ms meanwhile."""
    times: list[float] = []
    value: Any = None
    base = _rss_mib()
    peak = base
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _rss_mib())
            time.sleep(0.005)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        for _ in range(repeat):
            t0 = time.perf_counter()
            value = fn()
            times.append(time.perf_counter() - t0)
    finally:
        stop.set()
        th.join()
    peak = max(peak, _rss_mib())
    return Measured(min(times), peak, peak - base, value, tuple(times))


def best_of(fn: Callable[[], Any], repeat: int = 3) -> float:
    """Best wall time of ``repeat`` calls, in seconds (no memory sampling: for quick,
    small calls where :func:`measure`'s sampling thread would be noise)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def machine() -> str:
    """One line describing the machine the figures come from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import psutil

        mem = f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
    except ImportError:  # pragma: no cover
        mem = "RAM unknown"
    return f"{cpu}, {os.cpu_count()} cores, {mem}, Python {platform.python_version()}"
