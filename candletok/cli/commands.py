"""Imports every command module so that each registers itself on the Typer app."""

from candletok.cli import (
    cmd_data,  # noqa: F401
    cmd_demo,  # noqa: F401
    cmd_download,  # noqa: F401
    cmd_eval,  # noqa: F401
    cmd_fan,  # noqa: F401
    cmd_model,  # noqa: F401
    cmd_report,  # noqa: F401
    cmd_search,  # noqa: F401
    cmd_vocab,  # noqa: F401
    cmd_watch,  # noqa: F401
)
