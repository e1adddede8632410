"""The README's "In Python:" block runs as written: extracted from README.md and executed
in an empty folder (it builds its own dataset from the bundled sample, so no network and no
files from elsewhere), whatever lines the block holds."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import candletok

README = Path(__file__).resolve().parents[1] / "README.md"


def python_block(text: str) -> str:
    """The first ```python block after the line "In Python:"."""
    m = re.search(r"^In Python:\s*\n+```python\n(.*?)^```", text, flags=re.M | re.S)
    assert m, 'README.md has no ```python block under "In Python:"'
    return m.group(1)


def test_the_block_is_found_and_uses_only_public_names() -> None:
    code = python_block(README.read_text(encoding="utf-8"))
    tree = ast.parse(code)  # valid Python
    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Name) and n.value.id == "ct"}
    assert used, "the block shows no candletok call"
    assert used <= set(candletok.__all__), f"not public: {sorted(used - set(candletok.__all__))}"
    assert "yahoo" not in code  # runs offline


def test_python_block_finds_the_right_block() -> None:
    text = "x\nIn Python:\n\n```python\nprint(1)\n```\n\n```python\nno\n```\n"
    assert python_block(text) == "print(1)\n"


def test_the_readme_python_block_runs_as_written(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    code = python_block(README.read_text(encoding="utf-8"))
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md (In Python)", "exec"), {"__name__": "__readme__"})
