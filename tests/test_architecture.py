"""The layout's rules: stages import only downward, no torch below the model, and
``import candletok`` stays light. The contracts live in pyproject.toml (import-linter)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest
from importlinter import configuration
from importlinter.application.use_cases import read_user_options
from importlinter.contracts.layers import LayersContract

configuration.configure()  # what the lint-imports command does before reading options

ROOT = Path(__file__).resolve().parents[1]


def _layers_contract() -> LayersContract:
    options = read_user_options(str(ROOT / "pyproject.toml"))
    raw = next(c for c in options.contracts_options if c["id"] == "stages")
    return LayersContract(name=raw["name"], session_options=options.session_options,
                          contract_options=raw)


def test_import_contracts_hold() -> None:
    """Every contract in pyproject.toml is kept by the real code."""
    lint = Path(sys.executable).parent / "lint-imports"
    r = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "broken" in r.stdout and " 0 broken" in r.stdout


def _graph(*edges: tuple[str, str]) -> grimp.ImportGraph:
    """A tiny graph with one module per stage plus the given imports."""
    g = grimp.ImportGraph()
    g.add_module("candletok")
    for stage in ("cli", "demo", "report", "predict", "evaluation", "search", "model", "engines",
                  "dataset", "tokenize", "data", "viz", "core"):
        g.add_module(f"candletok.{stage}")
        g.add_module(f"candletok.{stage}.m")
    for a, b in edges:
        g.add_import(importer=a, imported=b, line_number=1, line_contents=f"import {b}")
    return g


def test_layers_contract_accepts_downward_imports() -> None:
    check = _layers_contract().check(
        _graph(("candletok.model.m", "candletok.dataset.m"),
               ("candletok.dataset.m", "candletok.core.m"),
               ("candletok.cli.m", "candletok.predict.m"),
               ("candletok.predict.m", "candletok.evaluation.m")),
        verbose=False)
    assert check.kept


@pytest.mark.parametrize("low,high", [
    ("candletok.tokenize.m", "candletok.dataset.m"),  # the old load_tokenizer cycle's kind
    ("candletok.core.m", "candletok.data.m"),
    ("candletok.model.m", "candletok.predict.m"),  # the old train -> predict import
    ("candletok.evaluation.m", "candletok.predict.m"),  # the harness never calls the answers
    ("candletok.predict.m", "candletok.report.m"),  # the report composes; nothing reads it
    ("candletok.model.m", "candletok.engines.m"),  # siblings stay independent
    ("candletok.data.m", "candletok.viz.m"),
])
def test_layers_contract_refuses_a_back_arrow(low: str, high: str) -> None:
    check = _layers_contract().check(_graph((low, high)), verbose=False)
    assert not check.kept


def test_import_candletok_loads_no_torch_and_is_quick() -> None:
    code = ("import sys, time; t = time.perf_counter(); import candletok; "
            "dt = time.perf_counter() - t; "
            "print('torch' in sys.modules, 'polars' in sys.modules, dt)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == "False" and out[1] == "False"
    assert float(out[2]) < 1.0


def test_lazy_names_resolve_to_their_homes() -> None:
    import candletok
    from candletok.data.sources import load_bars
    from candletok.tokenize.registry import load_tokenizer

    assert candletok.load_bars is load_bars and candletok.load_tokenizer is load_tokenizer
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        candletok.nope  # noqa: B018


def test_the_command_line_starts_without_torch() -> None:
    """`candletok --help`, `--version` and the data commands never pay for torch; the model
    commands import it when they run."""
    code = "import sys, candletok.cli.main; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"


def test_layers_contract_is_exhaustive() -> None:
    """A new top-level package breaks the contract until it is given a layer, so no stage
    escapes the rules by being new."""
    g = _graph(("candletok.cli.m", "candletok.core.m"))
    g.add_module("candletok.newstage")
    g.add_module("candletok.newstage.m")
    check = _layers_contract().check(g, verbose=False)
    assert not check.kept
    assert _layers_contract().check(_graph(), verbose=False).kept
