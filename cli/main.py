"""Entry point of the ``candletok`` console script.

``run()`` turns every :class:`candletok.CandletokError` (and a few predictable OS errors)
into one sentence on stderr and a non-zero exit; ``--debug`` shows the traceback instead."""

from __future__ import annotations

import sys

from candletok.cli import commands  # noqa: F401  (registers every command)
from candletok.cli.app import STATE, app, err_console
from candletok.errors import CandletokError


def run() -> None:
    if "--debug" in sys.argv[1:]:
        STATE["debug"] = True
    try:
        app(standalone_mode=False)
    except SystemExit as exc:
        raise
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]: no partial files were left behind.")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the one place that turns errors into sentences
        import click

        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            err_console.print("[bold red]aborted[/]")
            sys.exit(1)
        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if STATE["debug"]:
            raise
        if isinstance(exc, CandletokError):
            msg = str(exc)
        elif isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
            msg = f"{exc.strerror}: {exc.filename}"
        elif isinstance(exc, MemoryError):
            msg = "Out of memory; try fewer symbols or a smaller --shard-rows."
        else:
            msg = f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)"
        err_console.print(f"[bold red]error:[/] {msg}", highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    run()
