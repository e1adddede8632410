"""The Typer application and the small printing helpers every command shares.

Commands live in ``cmd_*.py`` modules that register themselves on :data:`app`; this module
holds no pipeline logic.

Output that survives pipes: when stdout is not a terminal, tables print at full width
(never cut at 80 columns); ``--format csv|json|markdown`` prints the summary tables in
that form instead of boxes, and with csv or json everything that is not a table (titles,
verdicts, notes) goes to stderr so that stdout holds only the data. ``--debug`` and
``--format`` may stand anywhere on the command line.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import typer
from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from candletok.core.errors import CandletokError, Terminated

FORMATS = ("table", "csv", "json", "markdown")
MACHINE_FORMATS = ("csv", "json")
WIDE = 100_000  # the width of a console that is not a terminal: no table is ever cut

STATE: dict[str, Any] = {"debug": bool(os.environ.get("CANDLETOK_DEBUG")), "format": "table",
                         "tables": 0}

_GLOBAL_FLAGS = ("--debug",)
_GLOBAL_VALUED = ("--format",)


def hoist_global_options(args: Sequence[str]) -> list[str]:
    """``--debug`` and ``--format X`` moved to the front wherever they stand (before a bare
    ``--``), so ``candletok encode AAPL --debug`` works like ``candletok --debug encode``."""
    front: list[str] = []
    rest: list[str] = []
    i, args = 0, list(args)
    while i < len(args):
        a = args[i]
        if a == "--":
            rest.extend(args[i:])
            break
        if a in _GLOBAL_FLAGS or any(a.startswith(f"{v}=") for v in _GLOBAL_VALUED):
            front.append(a)
        elif a in _GLOBAL_VALUED and i + 1 < len(args):
            front.extend(args[i : i + 2])
            i += 1
        else:
            rest.append(a)
        i += 1
    return front + rest


class _Group(TyperGroup):
    """The command group: takes the global options from anywhere on the line, and words
    the library's errors for the command line (flags, not API arguments)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(args))

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except CandletokError as exc:
            if exc.args and isinstance(exc.args[0], str):
                exc.args = (flag_wording(exc.args[0]), *exc.args[1:])
            raise
        except KeyboardInterrupt as exc:  # here, not in typer, which makes every one 130
            raise stopped(exc) from exc


app = typer.Typer(
    name="candletok",
    cls=_Group,
    help="Turn market price bars into a language: download, tokenize, shard, train, predict.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class _Console(Console):
    """stdout's console: with ``--format csv|json`` a :class:`DataTable` goes to stdout as
    data and everything else to stderr."""

    def print(self, *objects: Any, **kwargs: Any) -> None:  # type: ignore[override]
        if STATE["format"] in MACHINE_FORMATS and any(isinstance(o, DataTable) for o in objects):
            for o in objects:
                if isinstance(o, DataTable):
                    o.write_machine(STATE["format"])
                else:
                    super().print(o, **kwargs)
            return
        super().print(*objects, **kwargs)


console = _Console()
err_console = Console(stderr=True, soft_wrap=True)  # one sentence, never hard-wrapped


def configure_output(fmt: str) -> None:
    """Point :data:`console` at stdout (or stderr for csv/json prose) and size it: a
    terminal's width, or :data:`WIDE` when stdout is a pipe or a file."""
    STATE["format"], STATE["tables"] = fmt, 0
    console.file = sys.stderr if fmt in MACHINE_FORMATS else None  # type: ignore[assignment]
    console.width = None  # type: ignore[assignment]  # detect again
    if not console.is_terminal:
        console.width = WIDE


class _StderrHandler(logging.Handler):
    """The library logs; the CLI prints its warnings as ``candletok: ...`` lines on the
    stderr of the moment (so that test runners that swap stderr see them too)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(f"candletok: {flag_wording(record.getMessage())}", file=sys.stderr)
        except Exception:  # a logging handler never raises
            self.handleError(record)


def setup_logging(debug: bool = False) -> None:
    """Route the ``candletok`` loggers to stderr: warnings, or everything with --debug."""
    logger = logging.getLogger("candletok")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
    logger.setLevel(logging.DEBUG if debug else logging.WARNING)


def _version(value: bool) -> None:
    if value:
        from candletok import __version__

        print(f"candletok {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug",
                               help="Show full tracebacks and debug logs (anywhere on the line)."),
    output: str = typer.Option("table", "--format",
                               help="How summary tables print: table, csv, json (one object "
                                    "per line) or markdown (anywhere on the line)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """candletok — market candles as tokens."""
    # Set on every invocation (not only switched on): a process that runs several commands,
    # as tests do, must not carry one command's --debug into the next.
    STATE["debug"] = debug or bool(os.environ.get("CANDLETOK_DEBUG"))
    setup_logging(STATE["debug"])
    from candletok.core.progress import enable

    enable(True)  # long work shows progress on stderr (the library alone stays quiet)
    fmt = output.strip().lower()
    if fmt not in FORMATS:
        raise fail(f"Unknown --format {output!r}; use {', '.join(FORMATS)}.")
    configure_output(fmt)


@dataclass
class DataTable:
    """A summary table: boxes on a terminal, or csv / json / markdown with ``--format``.

    ``rows`` keep their raw values (numbers stay numbers in csv and json)."""

    title: str
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def __rich__(self) -> Group | Text:
        if STATE["format"] == "markdown":
            return Text(self.markdown())
        t = Table()
        for c in self.columns:
            t.add_column(c)
        for r in self.rows:
            t.add_row(*[fmt(v) for v in r])
        # The title on a line of its own: a table title would wrap at the table's width.
        return Group(Text(self.title, style="italic"), t) if self.title else Group(t)

    def markdown(self) -> str:
        def cell(v: Any) -> str:
            return fmt(v).replace("|", "\\|")

        lines = [f"**{self.title}**", "", "| " + " | ".join(self.columns) + " |",
                 "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in self.rows]
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.columns)
        w.writerows([[_csv_value(v) for v in r] for r in self.rows])
        return buf.getvalue()

    def json(self) -> str:
        rows = [dict(zip(self.columns, (json_value(v) for v in r), strict=False))
                for r in self.rows]
        return json.dumps({"table": self.title, "columns": self.columns, "rows": rows},
                          allow_nan=False)

    def write_machine(self, fmt_name: str) -> None:
        """csv: the title on stderr, a blank line between tables; json: one line each."""
        if fmt_name == "json":
            sys.stdout.write(self.json() + "\n")
        else:
            if self.title:
                err_console.print(self.title, highlight=False, markup=False)
            sys.stdout.write(("\n" if STATE["tables"] else "") + self.csv())
        sys.stdout.flush()
        STATE["tables"] += 1


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> DataTable:
    """A summary table, printed by the caller with ``console.print``."""
    return DataTable(title, list(columns), [tuple(r) for r in rows])


def json_value(v: Any) -> Any:
    """A value as JSON holds it: NaN and infinities as null, times as ISO text."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if isinstance(v, (str, int, bool)) or v is None:
        return v
    if hasattr(v, "item"):  # numpy scalars
        return json_value(v.item())
    return str(v)


def _csv_value(v: Any) -> Any:
    v = json_value(v)
    return "" if v is None else v


def emit_json(obj: Any) -> None:
    """One JSON document on stdout, whatever ``--format`` says (``--json`` options)."""
    sys.stdout.write(json.dumps(obj, indent=2, allow_nan=False, default=json_value) + "\n")
    sys.stdout.flush()


def heading(text: str) -> None:
    """A section heading: a rule on a terminal, a plain line in a pipe or a file."""
    if STATE["format"] == "markdown":
        console.print(f"\n## {text}\n", markup=False, highlight=False)
    elif console.is_terminal and STATE["format"] == "table":
        console.rule(text)
    else:
        console.print(f"\n== {text} ==", markup=False, highlight=False)


def fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != v:  # NaN
            return "-"
        v += 0.0  # -0.0 (an entropy of one token, a zero error) prints as 0, not -0
        return f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def fmt_bits(v: float | None) -> str:
    """Bits per candle as every command prints them: four decimals, "-" when missing."""
    if v is None or not math.isfinite(v):
        return "-"
    text = f"{v:.4f}"
    return "0.0000" if text == "-0.0000" else text  # never "-0": bits are not negative


# API argument -> the flag that sets it, for library errors shown by the CLI.
FLAGS: dict[str, str] = {
    "overwrite": "--overwrite", "source": "--source", "start": "--start", "end": "--end",
    "interval": "--interval", "n_bars": "--bars", "out": "--out", "vocab": "--vocab",
    "val_from": "--val-from", "test_from": "--test-from", "device": "--device",
    "steps": "--steps", "lr": "--lr", "repair": "--repair-bars", "date_format": "--date-format",
    "split": "--split", "seed": "--seed", "scheme": "--scheme", "val_origins": "--val-origins",
    "patience": "--patience", "resume": "--resume",
}
_ARG = re.compile(r"\b(" + "|".join(FLAGS) + r")=(True\b|'[^']*'|\"[^\"]*\"|[^\s,;)]*)")


def flag_wording(message: str) -> str:
    """A library message, which names API arguments (``overwrite=True``,
    ``source='sample'``), as the CLI says it (``--overwrite``, ``--source sample``)."""

    def sub(m: re.Match[str]) -> str:
        flag, value = FLAGS[m.group(1)], m.group(2)
        tail = ""
        while value and value[-1] in ".:":  # the sentence's own punctuation
            value, tail = value[:-1], value[-1] + tail
        value = value.strip("'\"")
        return (flag if value in ("", "True") else f"{flag} {value}") + tail

    return _ARG.sub(sub, message)


INTERRUPTED_EXIT = 130  # 128 + SIGINT, what a shell reports for a job stopped by Ctrl-C
TERMINATED_EXIT = 143  # 128 + SIGTERM (a scheduler, `timeout`, `docker stop`)


def stopped(exc: KeyboardInterrupt) -> typer.Exit:
    """After Ctrl-C or SIGTERM (:class:`Terminated`) unwound a command, every ``finally``
    having removed its temporary files: say so, and return the Exit (130 or 143)."""
    if isinstance(exc, Terminated):
        err_console.print("[bold red]terminated[/] (SIGTERM): no partial files were left "
                          "behind.")
        return typer.Exit(TERMINATED_EXIT)
    err_console.print("[bold red]interrupted[/]: no partial files were left behind.")
    return typer.Exit(INTERRUPTED_EXIT)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one clear sentence on stderr and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code)
