"""The base distribution, as `pip install torchship` gets it: the SDK and the kubectl plugin,
their dependencies, and no torch."""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_carries_the_sdk_and_the_plugin(tmp_path: Path):
    # Built from a copy: setuptools leaves build/ and *.egg-info where it builds.
    source = tmp_path / "src"
    for part in ("operator", "runtime", "sdk"):
        shutil.copytree(ROOT / part, source / part, ignore=shutil.ignore_patterns("__pycache__"))
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, source / part)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(source)],
        check=True, capture_output=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    [wheel] = tmp_path.glob("torchship-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = email.message_from_bytes(archive.read(info))
        entry_points = archive.read(info.replace("METADATA", "entry_points.txt")).decode()
    for module in ("client/rest.py", "kube/client.py", "kubectl/cli.py", "kubectl/__main__.py"):
        assert f"torchship/{module}" in names
    assert "torchship_operator/api.py" in names  # the spec types the SDK builds with
    assert "kubectl-torchship = torchship.kubectl.__main__:main" in entry_points
    base = [r for r in metadata.get_all("Requires-Dist") if "extra ==" not in r]
    names_only = {r.split(">")[0].split("<")[0].split("=")[0].strip() for r in base}
    assert {"numpy", "httpx", "kubernetes", "pydantic"} <= names_only
    assert "torch" not in names_only and "kopf" not in names_only
