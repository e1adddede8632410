"""Search modes, one file per mode (see :mod:`candletok.search.modes.base`)."""

from candletok.search.modes.base import (
    MODES,
    Found,
    SearchMode,
    get_mode,
    mode_help,
    modes,
    register_mode,
)

__all__ = ["MODES", "Found", "SearchMode", "get_mode", "mode_help", "modes", "register_mode"]
