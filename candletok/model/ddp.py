"""Distributed data-parallel training: the process group ``torchrun`` asks for.

``torchrun --nproc_per_node N -m candletok.cli train DIR [options]`` (or ``candletok train DIR
--nproc N``, which launches exactly that) starts N copies of ``candletok train``; each
finds its rank in the environment ``torchrun`` sets (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``), joins the process group here and trains
through :func:`candletok.model.train.train` with the :class:`~candletok.model.train.Ranks`
this module yields:

- gloo on CPU, nccl on GPU (one GPU per rank: ``cuda:LOCAL_RANK``);
- ``--batch`` is the global batch; each rank steps on ``batch / N`` windows, its
  contiguous share of the single-process batch of the same ``(seed, step)``, and DDP
  averages the gradients, so N processes follow the one-process run (exactly, up to float
  summation order, when dropout is 0: dropout masks are drawn per rank);
- evaluation sums, the logged loss and the stop flag (Ctrl-C) are all-reduced; only rank
  0 writes checkpoints and scores the baselines; the checkpoint holds the plain module
  and no per-rank state, so a run resumes with any number of processes.

Without ``torchrun``'s environment (``WORLD_SIZE`` unset or 1) nothing is started and the
yielded ranks are a single process.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from collections.abc import Iterator, Mapping

import torch

from candletok.core.errors import ModelError
from candletok.model.checkpoint import resolve_device
from candletok.model.train import Ranks

log = logging.getLogger(__name__)

TIMEOUT = datetime.timedelta(minutes=30)  # rank 0 scores baselines while the others wait


def world_from_env(env: Mapping[str, str]) -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from ``torchrun``'s variables; ``(0, 1, 0)``
    when they are absent."""
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise ModelError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers ({exc}); "
                         "start distributed runs with torchrun.") from exc
    if world < 1 or not 0 <= rank < world:
        raise ModelError(f"Rank {rank} of {world} processes is not a valid place in a "
                         "distributed run; start distributed runs with torchrun.")
    return rank, world, local


def is_distributed(env: Mapping[str, str] | None = None) -> bool:
    """Whether this process was started by ``torchrun`` with more than one process."""
    return world_from_env(os.environ if env is None else env)[1] > 1


@contextlib.contextmanager
def process_group(device: str = "auto") -> Iterator[Ranks]:
    """Join ``torchrun``'s process group for the block (gloo on CPU, nccl on GPU) and
    yield this process's :class:`Ranks`; a single process when not under ``torchrun``."""
    rank, world, local = world_from_env(os.environ)
    if world == 1:
        yield Ranks()
        return
    dev = resolve_device(device)
    if dev.type == "cuda":
        if local >= torch.cuda.device_count():
            raise ModelError(f"Local rank {local} has no GPU ({torch.cuda.device_count()} "
                             "visible); give --nproc at most the number of GPUs.")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    torch.distributed.init_process_group(backend, timeout=TIMEOUT)
    log.info("rank %d of %d joined the %s process group on %s", rank, world, backend, dev)
    try:
        yield Ranks(rank=rank, world_size=world, comm=dev)
    finally:
        torch.distributed.destroy_process_group()


def torchrun_command(nproc: int, args: list[str], python: str) -> list[str]:
    """The command line that runs ``candletok train ARGS`` as ``nproc`` DDP processes on
    this machine: ``python -m torch.distributed.run --standalone --nproc_per_node N -m
    candletok.cli train ARGS`` (``--standalone`` picks a free port for the rendezvous)."""
    if nproc < 1:
        raise ModelError(f"The number of processes must be at least 1, not {nproc}.")
    return [python, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", "-m", "candletok.cli", "train", *args]


def forwarded_args(argv: list[str]) -> list[str]:
    """The ``candletok train`` arguments of a command line ``argv`` (everything after the
    ``train`` command) without ``--nproc N``: what every rank is started with."""
    args = argv[argv.index("train") + 1:] if "train" in argv else list(argv)
    out: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def launch(nproc: int, args: list[str], python: str) -> int:
    """Run ``candletok train ARGS`` as ``nproc`` DDP processes (:func:`torchrun_command`)
    and return ``torchrun``'s exit code. Ctrl-C reaches ``torchrun`` and the ranks
    directly (they share the terminal's process group), so this process ignores it
    while it waits instead of killing ``torchrun`` before the ranks save. A SIGTERM sent
    to this process alone (``timeout``, a scheduler) is passed on to ``torchrun``, which
    passes it to the ranks: they stop with a checkpoint as after Ctrl-C."""
    import signal
    import subprocess

    cmd = torchrun_command(nproc, args, python)
    log.info("launching %s", " ".join(cmd))
    proc = subprocess.Popen(cmd)
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    old_term = signal.signal(signal.SIGTERM, lambda signum, frame: proc.send_signal(signum))
    try:
        return proc.wait()
    finally:
        signal.signal(signal.SIGINT, old)
        signal.signal(signal.SIGTERM, old_term)
