#!/usr/bin/env bash
# Everything a fresh machine needs, from the project's own files: a virtual environment with the
# operator, the runtime and the test tools, and the control plane's binaries (cached by version).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"

if [ ! -f "$stamp" ]; then
  "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required"'
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # torch: pip takes a CPU wheel where this machine's pip configuration offers one
  # (find-links or an extra index), otherwise the registry's build.
  "$VENV/bin/python" -m pip install -q -e ".[operator,runtime,s3,dev]"
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi

hack/build-testenv.sh >/dev/null
