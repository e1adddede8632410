"""Progress of long work, one home for every layer: a bar on a terminal, plain lines in a
pipe, nothing unless the command line asked for it.

``evaluate`` replays thousands of origins, ``similar`` calibrates on hundreds of val
searches, the model mode embeds every window: each can take minutes with nothing on the
screen. Any module wraps its loop in :func:`progress`::

    with progress("CandleGPT paths", total=len(chunks)) as bar:
        for chunk in chunks:
            ...
            bar.advance()

The library stays quiet by default (it logs, the CLI prints): the ``candletok`` command
calls :func:`enable` once, and ``CANDLETOK_PROGRESS=0`` (or ``1``) overrides either way.
On a terminal (stderr is a tty) the bars are rich's, drawn on stderr and erased when done;
bars opened inside an open one are rows of the same display (an evaluation's CandleGPT
paths under its panels). In a pipe or a file, each bar prints a plain line on stderr
at every tenth of its work once it has run for ``CANDLETOK_PROGRESS_AFTER`` seconds (2
by default), so quick work prints nothing and a log of long work stays short. The lines
go to the process's own stderr (``sys.__stderr__``), never into a redirected
``sys.stderr`` that holds a command's JSON in tests.
"""

from __future__ import annotations

import os
import sys
import time
from types import TracebackType
from typing import IO, Any

#: On or off for this process (the CLI switches it on), the terminal display, open bars.
_STATE: dict[str, Any] = {"enabled": False, "live": None, "open": 0}
#: A bar's row on a terminal, in characters: descriptions are cut to fit 80 columns.
DESCRIPTION_WIDTH = 28


def enable(on: bool = True) -> None:
    """Show progress from now on (the ``candletok`` command calls this)."""
    _STATE["enabled"] = bool(on)


def enabled() -> bool:
    """Whether bars show: ``CANDLETOK_PROGRESS`` (``0``/``1``) wins over :func:`enable`."""
    env = os.environ.get("CANDLETOK_PROGRESS", "").strip().lower()
    if env in ("0", "false", "no", "off"):
        return False
    if env in ("1", "true", "yes", "on"):
        return True
    return bool(_STATE["enabled"])


def _after() -> float:
    try:
        return max(0.0, float(os.environ.get("CANDLETOK_PROGRESS_AFTER", "2")))
    except ValueError:
        return 2.0


class Progress:
    """One bar: ``advance`` it as work gets done; a context manager that closes it."""

    def __init__(self, what: str, total: int, stream: IO[str] | None = None) -> None:
        self.what = what
        self.total = max(0, int(total))
        self.done = 0
        self.stream = stream
        self._on = False
        self._task: Any = None
        self._owner = False
        self._start = time.monotonic()
        self._tenth = 0  # the last tenth a plain line was printed for

    def __enter__(self) -> Progress:
        self._start = time.monotonic()
        if not enabled() or self.total == 0:
            return self
        self.stream = self.stream or sys.__stderr__ or sys.stderr
        self._on = True
        if _isatty(self.stream):
            live = _STATE["live"]
            if live is None:
                live = _rich_progress(self.stream)
                live.start()
                _STATE["live"], self._owner = live, True
            self._task = live.add_task(self.what[:DESCRIPTION_WIDTH], total=self.total)
        _STATE["open"] += 1
        return self

    def advance(self, n: int = 1, label: str | None = None) -> None:
        """``n`` more units done; ``label`` says what is being done now (the bar's text)."""
        self.done = min(self.total, self.done + int(n))
        if not self._on:
            return
        if self._task is not None:
            text = self.what if label is None else f"{self.what}: {label}"
            _STATE["live"].update(self._task, completed=self.done,
                                  description=text[:DESCRIPTION_WIDTH])
            return
        tenth = (10 * self.done) // max(self.total, 1)
        secs = time.monotonic() - self._start
        if tenth > self._tenth and secs >= _after():
            self._tenth = tenth
            tail = f" ({label})" if label else ""
            print(f"candletok: {self.what}: {self.done}/{self.total} "
                  f"({100 * self.done // max(self.total, 1)}%, {secs:.0f} s){tail}",
                  file=self.stream, flush=True)

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self._on:
            return
        _STATE["open"] -= 1
        live = _STATE["live"]
        if self._task is not None and live is not None:
            live.remove_task(self._task)
        if self._owner and live is not None:
            live.stop()
            _STATE["live"] = None


def progress(what: str, total: int) -> Progress:
    """A bar for ``total`` units of ``what`` (see the module doc); use it with ``with``."""
    return Progress(what, total)


def _isatty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _rich_progress(stream: IO[str]) -> Any:
    """rich's progress display on ``stream``, erased when it stops (rich is a dependency;
    imported here, on the first bar)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as RichProgress

    return RichProgress(TextColumn("{task.description}"), BarColumn(bar_width=20),
                        MofNCompleteColumn(), TimeElapsedColumn(),
                        console=Console(file=stream), transient=True,
                        # stdout stays the command's (a JSON document, a table); warnings
                        # on stderr print above the bar
                        redirect_stdout=False, redirect_stderr=True)
