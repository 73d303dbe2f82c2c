#!/usr/bin/env bash
# Everything a fresh machine needs, from the project's own files: a virtual environment with the
# operator, the runtime and the test tools; the control plane's binaries (cached by version); and,
# where the machine can run the real node (root, cgroups), Debian's container packages and the
# images built from the Dockerfile (cached by content). Idempotent: a second run only checks.
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

# KServe's model server (its own environment): the inference client's compatibility test.
[ -x .venv-peers/bin/python ] || bench/peers/setup.sh >/dev/null

hack/build-testenv.sh >/dev/null
hack/gateway-api-crds.sh >/dev/null
hack/install-node-packages.sh
if reason=$("$PYTHON" -c 'import sys; sys.path.insert(0, "hack"); import localnode; print(localnode.unavailable_reason() or "")') && [ -z "$reason" ]; then
  hack/build-images.sh >/dev/null
else
  echo "setup: no real node here (${reason:-unknown}); its tests will skip" >&2
fi
