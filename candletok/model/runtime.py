"""Process-level settings while training runs: CPU threads, and Ctrl-C and SIGTERM.

Both are restored when training ends, so a library caller's own settings survive a call
to :func:`candletok.model.train.train`."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from candletok.core.errors import Terminated


def available_cores() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def resolve_threads(requested: int, env: Mapping[str, str], torch_threads: int,
                    available: int) -> int:
    """The intra-op thread count training uses on CPU, first rule that applies:

    1. ``requested`` when positive (``TrainConfig.threads``, ``--threads``);
    2. ``OMP_NUM_THREADS`` from ``env`` when it is a positive integer (the usual way to
       share a machine between jobs);
    3. torch's current setting (what the user chose with ``torch.set_num_threads``, else
       torch's own default, one per physical core), capped at the ``available`` cores:
       more threads than cores only thrash.

    A pure function of its arguments so that the rule is testable as written."""
    if requested > 0:
        return int(requested)
    raw = env.get("OMP_NUM_THREADS", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return max(1, min(int(torch_threads), int(available)))


@contextlib.contextmanager
def torch_threads(requested: int, dev: torch.device) -> Iterator[int]:
    """Use :func:`resolve_threads`' count of intra-op threads on CPU while the block runs
    (the torch setting is restored after); yields the count in use."""
    old = torch.get_num_threads()
    n = resolve_threads(requested, os.environ, old, available_cores())
    if dev.type == "cpu":
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(old)


class StopRequest(threading.Event):
    """Set when the run was asked to stop; ``signum`` says by which signal (SIGINT,
    SIGTERM), None when set by the caller."""

    signum: int | None = None


@contextlib.contextmanager
def stop_on_sigint(sigterm: bool = True) -> Iterator[StopRequest]:
    """The first Ctrl-C (SIGINT) or SIGTERM (what schedulers, ``timeout`` and ``docker
    stop`` send; ``torchrun`` also forwards Ctrl-C to its workers as SIGTERM) sets the
    yielded event, so the loop stops at the next step boundary with a checkpoint; a
    second one of the same signal interrupts at once (KeyboardInterrupt, or
    :class:`~candletok.core.errors.Terminated` for SIGTERM). ``sigterm=False`` leaves
    SIGTERM alone. Outside the main thread (where signals cannot be handled) the event
    is only set by the caller."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    seen: set[int] = set()

    def handler(signum: int, frame: Any) -> None:
        if signum in seen:
            raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        seen.add(signum)
        if stop.signum is None:
            stop.signum = signum
        stop.set()

    sigs = [signal.SIGINT] + ([signal.SIGTERM] if sigterm else [])
    old = {s: signal.signal(s, handler) for s in sigs}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)
