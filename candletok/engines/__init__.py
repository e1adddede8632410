"""Engines that map the per-group encode of :mod:`candletok.dataset.build` over many cores
or machines: each takes a :class:`~candletok.dataset.build.BuildConfig` and writes the same
dataset folder as the local build, byte for byte (the manifest's ``created`` aside).

``local`` (the default) runs on this machine's threads and needs nothing more; ``ray``
runs on Ray Data, on a local Ray or a cluster (``pip install "candletok[ray]"``); Ray is
imported only when that engine runs."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from candletok.core.errors import CandletokError
from candletok.dataset.build import BuildConfig, EncodeResult, Progress, build_dataset

__all__ = ["ENGINES", "build"]

ENGINES = ("local", "ray")


def build(
    config: BuildConfig,
    engine: str = "local",
    ray_address: str | None = None,
    *,
    loader: Callable[..., pl.DataFrame] | None = None,
    progress: Progress | None = None,
) -> EncodeResult:
    """Build ``config``'s dataset with ``engine`` (``local`` or ``ray``).

    ``ray_address`` (``auto``, ``ray://host:10001``...) connects the Ray engine to a
    cluster; without it the Ray engine starts a local Ray (or uses the one this process
    already started)."""
    name = str(engine).strip().lower()
    if name not in ENGINES:
        raise CandletokError(f"Unknown engine {engine!r}; use local or ray.")
    if name == "local":
        if ray_address:
            raise CandletokError("ray_address only applies to engine='ray'.")
        return build_dataset(config, loader=loader, progress=progress)
    from candletok.engines.ray import build_ray

    return build_ray(config, ray_address=ray_address, loader=loader, progress=progress)


__all__ = ["ENGINES", "build"]

