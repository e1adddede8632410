"""Test-wide settings: no test may open a network connection.

``CANDLETOK_OFFLINE`` makes the default yfinance fetch fail at once as "unreachable"
(tests that exercise Yahoo inject recorded frames instead), and the cache goes to a
temporary folder so a developer's real cache is never read or written."""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ["CANDLETOK_OFFLINE"] = "1"
os.environ.setdefault("CANDLETOK_CACHE", tempfile.mkdtemp(prefix="candletok-test-cache-"))
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def one_torch_thread():  # type: ignore[no-untyped-def]
    """Tiny models run fastest on one thread, and more threads thrash on a shared 2-core
    box; the caller's setting is restored after the test."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _fresh_cli_state():  # type: ignore[no-untyped-def]
    """Each test starts with the CLI's defaults: a CliRunner call with --debug or --format
    in one test must not change how another test's commands print."""
    from candletok.cli import app

    saved = dict(app.STATE)
    app.STATE.update(debug=False, format="table")
    yield
    app.STATE.clear()
    app.STATE.update(saved)
