"""The public surface: a small top level (what a user needs), an ``__all__`` in every
package whose names all resolve, and the 0.1 aliases gone (their home is the subpackage)."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

import candletok

PACKAGES = sorted(m.name for m in pkgutil.iter_modules(candletok.__path__, "candletok.")
                  if m.ispkg)


def test_every_package_declares_all() -> None:
    assert PACKAGES  # found the subpackages
    for name in PACKAGES:
        pkg = importlib.import_module(name)
        assert isinstance(getattr(pkg, "__all__", None), list), f"{name} has no __all__"
        assert pkg.__all__ == sorted(set(pkg.__all__), key=pkg.__all__.index), name


@pytest.mark.parametrize("name", [p for p in PACKAGES if p != "candletok.cli"])
def test_every_name_in_a_packages_all_resolves(name: str) -> None:
    """Each listed name is an attribute or a submodule (what ``from pkg import *`` needs);
    run in a fresh interpreter so one package's imports cannot hide another's gap."""
    code = (f"import importlib, {name} as p\n"
            "for n in p.__all__:\n"
            "    getattr(p, n, None) is not None or importlib.import_module(p.__name__ + '.' + n)\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def test_top_level_is_small_and_every_name_resolves() -> None:
    names = [n for n in candletok.__all__ if n != "__version__"]
    assert 15 <= len(names) <= 25
    for n in names:
        assert getattr(candletok, n) is not None
    assert sorted(dir(candletok)) == sorted(candletok.__all__)
    # every lazy name is public (a name kept lazily but unlisted would be a hidden alias)
    assert set(candletok._LAZY) <= set(candletok.__all__)


@pytest.mark.parametrize("alias,home", [
    ("load_sample", "candletok.data.sample"), ("sample_symbols", "candletok.data.sample"),
    ("synthetic_bars", "candletok.data.synthetic"), ("validate_bars", "candletok.data.bars"),
])
def test_the_01_aliases_are_gone_and_live_in_their_subpackage(alias: str, home: str) -> None:
    with pytest.raises(AttributeError, match=f"no attribute '{alias}'"):
        getattr(candletok, alias)
    assert callable(getattr(importlib.import_module(home), alias))
