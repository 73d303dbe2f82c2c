"""Generate the runtime's gRPC code from its proto with grpcio-tools (`make generate-grpc`).

    python hack/generate_grpc.py           # write runtime/torchship_runtime/oip/*_pb2*.py(i)
    python hack/generate_grpc.py --check   # exit 1 when the committed files differ

The proto is compiled with `runtime/` as its root, so the generated modules import each other as
`torchship_runtime.oip...`.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_ROOT = ROOT / "runtime"
PROTO = Path("torchship_runtime/oip/grpc_predict_v2.proto")
OUTPUTS = ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi", "grpc_predict_v2_pb2_grpc.py")


def generate(out_root: Path) -> dict[str, str]:
    """Compile the proto under `out_root`; the generated files' text by name."""
    from grpc_tools import protoc

    args = [
        "grpc_tools.protoc",
        f"-I{SOURCE_ROOT}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        str(SOURCE_ROOT / PROTO),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    return {name: (out_root / PROTO.parent / name).read_text() for name in OUTPUTS}


def stale() -> list[str]:
    """The committed files that differ from what the proto generates."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
    committed = SOURCE_ROOT / PROTO.parent
    return [
        name
        for name, text in fresh.items()
        if not (committed / name).is_file() or (committed / name).read_text() != text
    ]


def main() -> int:
    if sys.argv[1:] == ["--check"]:
        if names := stale():
            print(f"out of date: {names} (run make generate-grpc)", file=sys.stderr)
            return 1
        return 0
    generate(SOURCE_ROOT)
    print(f"generated {', '.join(OUTPUTS)} from {PROTO}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
