#!/usr/bin/env bash
# Create the virtual environment and install candletok with its dev tools.
#
# torch: install the CPU build first when no torch is present (a plain `torch` requirement
# would pull a several-GB CUDA build on Linux). The PyTorch CPU index is probed first; when
# it cannot be reached the script says so, tries a CPU wheel among the files pip is
# configured to find (find-links), then the package index pip is configured with, and says
# which build it installed. Users who want CUDA install torch
# themselves first; the package itself keeps `torch` unpinned. pip prints its progress
# (no -q): set-up takes a minute or more.
set -euo pipefail
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_CPU_INDEX=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
[ -x "$VENV/bin/python" ] || { echo "creating $VENV ..."; "$PYTHON" -m venv "$VENV"; }
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --progress-bar on)

if ! "$PY" -c "import torch" 2>/dev/null; then
  if "$PY" - "$TORCH_CPU_INDEX" <<'PROBE'
import sys
import urllib.request

try:
    urllib.request.urlopen(sys.argv[1].rstrip("/") + "/torch/", timeout=15).close()
except Exception as exc:  # any failure means: do not wait on this index
    print(f"  ({type(exc).__name__}: {exc})")
    sys.exit(1)
PROBE
  then
    echo "installing the CPU build of torch from $TORCH_CPU_INDEX ..."
    "${PIP[@]}" --index-url "$TORCH_CPU_INDEX" torch
  else
    echo "the PyTorch CPU index ($TORCH_CPU_INDEX) cannot be reached;"
    echo "looking for a CPU wheel of torch among the files pip is configured to find ..."
    if ! "${PIP[@]}" --retries 0 --timeout 5 --index-url "$TORCH_CPU_INDEX" torch; then
      echo "no CPU wheel of torch was found; installing torch from pip's configured index"
      echo "instead (on PyPI for Linux that is the CUDA build, several GB) ..."
      "${PIP[@]}" torch
    fi
  fi
fi
echo "installing candletok (editable) and its dev tools ..."
"${PIP[@]}" -e ".[dev]"
"$PY" - <<'REPORT'
import torch

cuda = torch.version.cuda
build = f"CUDA {cuda} build" if cuda else "CPU-only build"
usable = "a GPU is usable" if torch.cuda.is_available() else "no GPU in use"
print(f"torch {torch.__version__}: {build} ({usable})")
REPORT
echo "candletok installed in $VENV. To run it: source $VENV/bin/activate, then candletok --help"
echo "(or call $VENV/bin/candletok directly)."
