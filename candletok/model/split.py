"""What one split of a token dataset offers training, scoring and calibration.

:class:`SplitSource` is the contract between the dataset stage and everything that reads
a split here (the trainer, the evaluator, the up-rate table, calibration): a
:class:`~candletok.dataset.torchdata.TokenDataset` satisfies it, and so does any in-memory
stand-in (the tests use one). Written as a typing ``Protocol`` so that nothing in
``model/`` has to probe an object with ``getattr`` to learn what it can do; an optional
capability is a member that may answer ``None`` (``root``, ``tokenizer()``, ``interval``).
No torch here (the up-rate table imports it).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import numpy as np

from candletok.tokenize.base import Tokenizer
from candletok.tokenize.calendar import CalendarSpec


class Vocabulary(Protocol):
    """Anything that names a vocabulary: a tokenizer, a split, a dataset."""

    @property
    def fingerprint(self) -> str | None: ...

    @property
    def vocab_size(self) -> int: ...


class SplitSource(Vocabulary, Protocol):
    """One time split: its tokens, its fixed evaluation windows, and where it came from.

    - ``tokens``: every series laid end to end, each after one BOS
      (:func:`candletok.core.ids.with_bos` layout); ``bounds`` (n_series, 2) their
      ``[start, end)``, start at the BOS. Training samples its random windows from these.
    - ``len(split)`` fixed windows; ``batch(ids)`` gives windows ``ids`` as int64
      ``(x, y)`` of shape (len(ids), context), in which every candle of the split is a
      target exactly once over all windows (padded or already-counted targets are -1), so
      a sum over them is an exact bits-per-candle figure. ``starts[w]`` is the flat
      position of window ``w``'s first input (target k of window w is token
      ``starts[w] + 1 + k``).
    - ``series()``: the candle tokens of each series (no BOS), for the baselines.
    - ``tokenizer()``, ``root``, ``interval``: the vocabulary, the dataset folder and the
      bar interval, or ``None`` for a bare in-memory split.
    - ``calendar_ids(spec)``: (len(tokens), n_fields) calendar ids of every position of
      ``tokens`` (:func:`candletok.tokenize.calendar.calendar_layout`; BOS unknown), or
      ``None`` when the split has no timestamps. Only models with calendar inputs ask.
    - ``level_inputs()``: (len(tokens), levels) float32 level inputs of every position
      (:func:`candletok.dataset.torchdata.level_layout`; BOS zeros). Only models with
      level inputs ask.
    """

    @property
    def split(self) -> str: ...

    @property
    def tokens(self) -> np.ndarray: ...

    @property
    def bounds(self) -> np.ndarray: ...

    @property
    def starts(self) -> np.ndarray: ...

    @property
    def root(self) -> Path | None: ...

    @property
    def interval(self) -> str | None: ...

    def __len__(self) -> int: ...

    def batch(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def series(self) -> list[np.ndarray]: ...

    def tokenizer(self) -> Tokenizer | None: ...

    def calendar_ids(self, spec: CalendarSpec) -> np.ndarray | None: ...

    def level_inputs(self) -> np.ndarray: ...


Splits = Mapping[str, SplitSource | None]
"""``{"train": split, "val": split or None, "test": split or None}``."""


def vocab_json(split: SplitSource) -> str | None:
    """The text of the split's ``vocab.json`` (what a checkpoint carries), if it has one."""
    p = split.root / "vocab.json" if split.root is not None else None
    return p.read_text(encoding="utf-8") if p is not None and p.is_file() else None
