"""Settings declared once: a config dataclass field carries its default, its help text and
its command-line flag, and the CLI builds its options from them
(:func:`candletok.cli.configopts.config_option`), so a default or a sentence is changed in
one place and the command and the Python API cannot drift apart."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

__all__ = ["setting", "setting_default", "setting_flag", "setting_help"]

_HELP = "help"
_FLAG = "flag"


def setting(default: Any = dataclasses.MISSING, help: str = "", *,
            flag: str | None = None,
            default_factory: Callable[[], Any] | Any = dataclasses.MISSING) -> Any:
    """A dataclass field with its help text (``{default}`` in it reads the default) and,
    when it is not ``--`` plus the field's name with dashes, its command-line flag."""
    text = help.replace("{default}", str(default)) if default is not dataclasses.MISSING else help
    meta = {_HELP: text, **({_FLAG: flag} if flag else {})}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _field(cls: type, name: str) -> dataclasses.Field[Any]:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def setting_help(cls: type, name: str) -> str:
    """The help text declared on ``cls``'s field ``name`` ("" when none)."""
    return str(_field(cls, name).metadata.get(_HELP, ""))


def setting_flag(cls: type, name: str) -> str:
    """The command-line flag of ``cls``'s field ``name``: the declared one, else
    ``--`` plus the name with dashes (``val_from`` -> ``--val-from``)."""
    return str(_field(cls, name).metadata.get(_FLAG) or "--" + name.replace("_", "-"))


def setting_default(cls: type, name: str) -> Any:
    """The default of ``cls``'s field ``name`` (a factory's value for a factory field)."""
    f = _field(cls, name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise KeyError(f"{cls.__name__}.{name} has no default")
