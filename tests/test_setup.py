"""scripts/setup_env.sh: pip shows progress, an unreachable CPU torch index is said out loud
with the torch build installed instead, and the end says how to run ``candletok``.

The venv's python is a stub that fails ``import torch`` and records pip calls instead of
installing; the index probe and the torch report run the real interpreter. The "index"
is a server on 127.0.0.1 (reachable) or a closed loopback port (unreachable)."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STUB = """#!/usr/bin/env bash
if [ "$1" = "-c" ]; then exit 1; fi                      # import torch: not installed
if [ "$1" = "-m" ]; then echo "$*" >> "{log}"; exit 0; fi # pip: record, do not install
exec "{real}" "$@"                                         # the probe and the report
"""


def run_setup(tmp_path: Path, index: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    log = tmp_path / "pip.log"
    log.touch()
    stub = venv / "bin" / "python"
    stub.write_text(STUB.format(log=log, real=sys.executable))
    stub.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(VENV=str(venv), TORCH_CPU_INDEX=index, no_proxy="127.0.0.1,localhost")
    r = subprocess.run(["bash", str(ROOT / "scripts" / "setup_env.sh")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    return r, log.read_text().splitlines()


@pytest.fixture()
def index() -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>torch</html>")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/whl/cpu"
    server.shutdown()


def test_unreachable_cpu_index_is_said_with_the_build_installed(tmp_path: Path) -> None:
    import torch

    r, pip = run_setup(tmp_path, "http://127.0.0.1:9/whl/cpu")  # nothing listens on port 9
    assert r.returncode == 0, r.stderr
    assert "cannot be reached" in r.stdout and "127.0.0.1:9" in r.stdout
    assert f"torch {torch.__version__}" in r.stdout
    assert ("CPU-only build" in r.stdout) == (torch.version.cuda is None)
    # first a CPU wheel among pip's configured files (the stub says it found one)
    assert pip[0].split()[-1] == "torch" and "--retries 0" in pip[0]
    assert "CPU wheel" in r.stdout and pip[1].endswith("-e .[dev]")
    assert all("-q" not in line.split() and "--progress-bar on" in line for line in pip)
    assert "source" in r.stdout and "bin/activate" in r.stdout and "bin/candletok" in r.stdout


def test_reachable_cpu_index_is_used(tmp_path: Path, index: str) -> None:
    r, pip = run_setup(tmp_path, index)
    assert r.returncode == 0, r.stderr
    assert "cannot be reached" not in r.stdout
    assert f"--index-url {index} torch" in pip[0]
    assert pip[1].endswith('-e .[dev]')
