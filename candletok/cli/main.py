"""Entry point of the ``candletok`` console script.

``run()`` turns every :class:`candletok.CandletokError` (and a few predictable OS errors)
into one sentence on stderr and a non-zero exit; ``--debug`` shows the traceback instead.
SIGTERM (schedulers, ``timeout``, ``docker stop``) unwinds like Ctrl-C, so temporary files
are removed and ``train`` saves a checkpoint, and exits 143."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from typer._click.exceptions import ClickException

from candletok.cli import commands  # noqa: F401  (registers every command)
from candletok.cli.app import STATE, app, err_console, flag_wording, stopped
from candletok.core.atomic import disk_full_error, is_disk_full
from candletok.core.errors import CandletokError, Terminated


def _message(exc: BaseException) -> str:
    if isinstance(exc, CandletokError):
        return flag_wording(str(exc))
    if is_disk_full(exc):  # a write outside the atomic helpers: name what the OS named
        name = getattr(exc, "filename", None)
        return (flag_wording(str(disk_full_error(Path(name)))) if name else
                "No space left on device; free some space or write to another disk.")
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
        return f"{exc.strerror}: {exc.filename}"
    if isinstance(exc, MemoryError):
        return "Out of memory; try fewer symbols or a smaller --shard-rows."
    return f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)"


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


def run() -> None:
    """Run the app; exit 0 on success, 1 with one sentence on error, 2 on usage errors,
    130 after Ctrl-C and 143 after SIGTERM."""
    # every run starts from the environment and its own arguments (an earlier in-process
    # run's --debug must not leak into this one)
    STATE["debug"] = "--debug" in sys.argv[1:] or bool(os.environ.get("CANDLETOK_DEBUG"))
    old_term = signal.signal(signal.SIGTERM, _terminate)
    try:
        rv = app(standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("[bold red]aborted[/]")
        sys.exit(1)
    except ClickException as exc:  # usage errors: bad option, missing argument
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt as exc:  # outside a command (a command's own: _Group.invoke)
        sys.exit(stopped(exc).exit_code)
    except Exception as exc:  # the one place that turns errors into sentences
        if STATE["debug"]:
            raise
        err_console.print(f"[bold red]error:[/] {escape(_message(exc))}", highlight=False)
        sys.exit(1)
    finally:
        signal.signal(signal.SIGTERM, old_term)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    run()
