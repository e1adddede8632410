"""Typer options built from a config dataclass's fields (:mod:`candletok.core.fields`):
the flag, the default and the help text are the field's, so ``candletok encode`` and
``candletok train`` show exactly what :class:`~candletok.dataset.build.BuildConfig` and
:class:`~candletok.model.config.TrainConfig` do."""

from __future__ import annotations

from typing import Any

import typer

from candletok.core.fields import setting_default, setting_flag, setting_help

__all__ = ["UNSET", "config_option"]


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: ``config_option(..., default=UNSET)``: the field's own default (the usual case).
UNSET: Any = _Unset()


def config_option(cls: type, name: str, *, default: Any = UNSET, help: str | None = None,
                  flags: tuple[str, ...] = ()) -> Any:
    """``typer.Option`` for ``cls``'s field ``name``: its flag (``flags`` replaces it, for a
    ``--on/--off`` pair), its default, and its help text. ``default=None`` is for an option
    whose absence must stay visible (a resumed run keeps its saved value); ``help`` for
    text that another registry owns."""
    value = setting_default(cls, name) if default is UNSET else default
    return typer.Option(value, *(flags or (setting_flag(cls, name),)),
                        help=setting_help(cls, name) if help is None else help)
