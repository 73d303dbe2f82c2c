#!/usr/bin/env python3
"""The main job on the embedded default: a local control plane with fake GPU nodes."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import testenv


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="torchship-demo-") as tmp:
        plane = testenv.ControlPlane(workdir=Path(tmp), bin_dir=testenv.build_binaries())
        plane.start()
        try:
            print(plane.kubectl("get", "nodes", "-L", "nvidia.com/gpu.product").stdout)
        finally:
            plane.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
