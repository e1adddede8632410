#!/usr/bin/env bash
# Create the virtual environment and install candletok with its dev tools.
#
# torch: install the CPU build first when no torch is present (a plain `torch` requirement
# would pull a several-GB CUDA build). The CPU index is tried first; a local wheel that pip
# is configured to find is used the same way; plain PyPI is the last resort. Users who want
# CUDA install torch themselves first; the package itself keeps `torch` unpinned.
set -euo pipefail
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "installing the CPU build of torch ..."
  "$PY" -m pip install -q --retries 1 --timeout 20 \
      --index-url https://download.pytorch.org/whl/cpu torch \
    || "$PY" -m pip install -q "torch"
fi
"$PY" -m pip install -q -e ".[dev]"
echo "candletok installed in $VENV"
