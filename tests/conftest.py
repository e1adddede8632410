"""Test-wide settings: no test may open a network connection.

``CANDLETOK_OFFLINE`` makes the default yfinance fetch fail at once as "unreachable"
(tests that exercise Yahoo inject recorded frames instead), and the cache goes to a
temporary folder so a developer's real cache is never read or written."""

from __future__ import annotations

import os
import tempfile

os.environ["CANDLETOK_OFFLINE"] = "1"
os.environ.setdefault("CANDLETOK_CACHE", tempfile.mkdtemp(prefix="candletok-test-cache-"))
os.environ.setdefault("MPLBACKEND", "Agg")
