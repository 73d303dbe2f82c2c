#!/usr/bin/env bash
# Installs the peer servers of the side-by-side benchmark (the KServe Python model server and
# LitServe, from the registry) into their own virtual environment, so their pins never touch
# ours. torch is shared with the project's .venv through a .pth file (same Python).
set -euo pipefail
cd "$(dirname "$0")/../.."
PEERS=${PEERS_VENV:-.venv-peers}
[ -x "$PEERS/bin/python" ] || python3 -m venv "$PEERS"
"$PEERS/bin/pip" install -q "kserve>=0.15,<1" "litserve>=0.2.10,<1"
site=$("$PEERS/bin/python" -c 'import site; print(site.getsitepackages()[0])')
.venv/bin/python -c 'import site; print(site.getsitepackages()[0])' >"$site/zz-torchship-torch.pth"
"$PEERS/bin/python" -c 'import kserve, litserve, torch' && echo "$PEERS"
