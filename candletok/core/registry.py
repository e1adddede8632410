"""One small registry for the things the code used to pick by string (search modes, data
sources): a name maps to an object, the built-ins register themselves in their own
files, and the CLI's choices and help text are read from here, so adding one touches
one file (the tiktoken ``registry`` / HF ``datasets`` pattern).

The built-ins live one per module in a package; the first lookup imports every module
of that package (nothing is imported at ``import candletok``), the way tiktoken finds its
``tiktoken_ext`` plugins. Anything else registers by calling :meth:`Registry.register`
(or the layer's ``register_mode`` / ``register_source``) before the lookup.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from candletok.core.errors import CandletokError

_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


class Named(Protocol):
    """What a registry holds: a name, and a rank that orders the choices in help texts."""

    name: str
    rank: int


T = TypeVar("T", bound=Named)


def one_of(names: list[str] | tuple[str, ...], last: str = "or") -> str:
    """``a, b or c``: a list of choices as a sentence says it."""
    names = list(names)
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} {last} {names[-1]}"


class Registry(Generic[T]):
    """Names to objects, with the built-ins of ``package`` loaded on first use.

    ``what`` names the kind in messages ("mode", "source"); ``error`` is the
    :class:`CandletokError` subclass a bad name raises; ``beside`` is what else the
    caller accepts besides a name (said after the names in the unknown-name message)."""

    def __init__(self, what: str, package: str, error: type[CandletokError] = CandletokError,
                 beside: str | None = None) -> None:
        self.what = what
        self.package = package
        self.error = error
        self.beside = beside
        self._items: dict[str, T] = {}
        self._loaded = False

    def _load(self) -> None:
        """Import every module of the built-ins' package once (each registers itself)."""
        if self._loaded:
            return
        self._loaded = True  # before importing: a module may look names up while loading
        pkg = importlib.import_module(self.package)
        for m in pkgutil.iter_modules(pkg.__path__):
            if not m.name.startswith("_"):
                importlib.import_module(f"{self.package}.{m.name}")

    def register(self, item: T, *, replace: bool = False) -> T:
        """Add ``item`` under ``item.name``; a name already taken is refused unless
        ``replace=True`` (so two plugins cannot silently shadow each other)."""
        name = getattr(item, "name", None)
        if not isinstance(name, str) or not _NAME.match(name):
            raise self.error(f"A {self.what} name is lower-case letters, digits, '-' or '_' "
                             f"starting with a letter, not {name!r}.")
        self._load()
        if name in self._items and not replace:
            raise self.error(f"A {self.what} named {name!r} is already registered; pick "
                             "another name or pass replace=True.")
        self._items[name] = item
        return item

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a test's toy, say); an unknown name is refused."""
        self.get(name)
        del self._items[name]

    def get(self, name: str) -> T:
        """The object registered as ``name``; an unknown name raises one sentence listing
        every known one."""
        self._load()
        key = str(name).strip().lower()
        if key not in self._items:
            raise self.error(f"Unknown {self.what} {name!r}; use {self.choices()}.")
        return self._items[key]

    def __contains__(self, name: object) -> bool:
        self._load()
        return isinstance(name, str) and name.strip().lower() in self._items

    def items(self) -> tuple[T, ...]:
        """Every registered object, by rank then name (the order of help texts)."""
        self._load()
        return tuple(sorted(self._items.values(), key=lambda i: (i.rank, i.name)))

    def names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.items())

    def choices(self) -> str:
        """``a, b or c`` (with what else is accepted, when there is something)."""
        names = list(self.names())
        return one_of(names + ([self.beside] if self.beside else []))


def decorator(reg: Registry[Any]) -> Callable[..., Any]:
    """``register(obj_or_class, replace=False)`` for ``reg``: a class is instantiated
    (so ``@register_mode`` can sit on a class), an instance is registered as it is; the
    argument comes back, so it works as a decorator."""

    def register(item: Any, *, replace: bool = False) -> Any:
        reg.register(item() if isinstance(item, type) else item, replace=replace)
        return item

    return register


__all__ = ["Named", "Registry", "decorator", "one_of"]
