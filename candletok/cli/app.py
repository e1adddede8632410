"""The Typer application and the small printing helpers every command shares.

Commands live in ``cmd_*.py`` modules that register themselves on :data:`app`; this module
holds no pipeline logic."""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="candletok",
    help="Turn market price bars into a language: download, tokenize, shard, train, predict.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # one sentence, never hard-wrapped

STATE: dict[str, bool] = {"debug": bool(os.environ.get("CANDLETOK_DEBUG"))}


class _StderrHandler(logging.Handler):
    """The library logs; the CLI prints its warnings as ``candletok: ...`` lines on the
    stderr of the moment (so that test runners that swap stderr see them too)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(f"candletok: {record.getMessage()}", file=sys.stderr)
        except Exception:  # a logging handler never raises
            self.handleError(record)


def setup_logging(debug: bool = False) -> None:
    """Route the ``candletok`` loggers to stderr: warnings, or everything with --debug."""
    logger = logging.getLogger("candletok")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
    logger.setLevel(logging.DEBUG if debug else logging.WARNING)


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    """candletok — market candles as tokens."""
    if debug:
        STATE["debug"] = True
    setup_logging(STATE["debug"])


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    """A rich table with right-aligned numbers, printed by the caller."""
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[fmt(v) for v in r])
    return t


def fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != v:  # NaN
            return "-"
        return f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def fmt_bits(v: float | None) -> str:
    """Bits per candle as every command prints them: four decimals, "-" when missing."""
    return "-" if v is None or not math.isfinite(v) else f"{v:.4f}"


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one clear sentence on stderr and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)
