"""The dependency floors in pyproject.toml are true: the operator's and the SDK's unit tests
pass with every floor installed exactly (`name==floor`), in a virtual environment of its own.

What it installs: the base dependencies, the `operator` extra, and the test tools the unit tests
use (pytest, pytest-timeout, hypothesis, tritonclient's HTTP part), each at its floor. The
environment is kept in the cache (`~/.cache/torchship/floors-<hash>`, keyed by the pins and the
Python version), so only a changed floor pays the install. The runtime's floors (torch and its
server) are left to the runtime's own tests: installing torch twice costs more than it tells.
The unit tests that need torch or grpcio-tools are left out here.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import localnode
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
TEST_TOOLS = {"pytest", "pytest-timeout", "hypothesis", "tritonclient"}
# A unit test that imports one of these needs the runtime extra (torch, transformers) or
# grpcio-tools, which this environment leaves out.
RUNTIME_IMPORTS = re.compile(
    r"^(?:import|from) (?:torch|torchship_runtime|grpc_tools|llmfiles)\b", re.M
)


# It loads hack/generate_grpc.py, which imports grpcio-tools.
LOADS_GRPC_TOOLS = "test_generate_grpc.py"


def needs_the_runtime() -> list[str]:
    unit = ROOT / "tests/unit"
    found = {f.name for f in unit.glob("test_*.py") if RUNTIME_IMPORTS.search(f.read_text())}
    return sorted(found | {LOADS_GRPC_TOOLS})


def floor(requirement: str, extras: str = "") -> str:
    """`name[extras]==X` for `name>=X,...`."""
    parsed = Requirement(requirement)
    (lowest,) = [s.version for s in parsed.specifier if s.operator == ">="]
    return f"{parsed.name}{extras}=={lowest}"


def floors() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extra = project["optional-dependencies"]
    pins = {Requirement(r).name: floor(r) for r in project["dependencies"] + extra["operator"]}
    for r in extra["dev"]:
        name = Requirement(r).name
        if name in TEST_TOOLS:
            pins[name] = floor(r, "[http]" if name == "tritonclient" else "")
    return sorted(pins.values())


def floor_environment(pins: list[str]) -> Path:
    key = hashlib.sha256("\n".join([sys.version, *pins]).encode()).hexdigest()[:16]
    venv = localnode.cache_root() / f"floors-{key}"
    if (venv / ".complete").exists():
        return venv
    for old in venv.parent.glob("floors-*"):  # environments of floors that changed since
        shutil.rmtree(old, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         *pins],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert install.returncode == 0, f"the floors do not install together: {install.stderr}"
    (venv / ".complete").touch()
    return venv


def test_the_unit_tests_pass_on_every_floor():
    pins = floors()
    assert {"kopf", "pydantic", "kubernetes"} <= {Requirement(p).name for p in pins}
    venv = floor_environment(pins)
    freeze = subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "freeze"], capture_output=True, text=True
    ).stdout.split()
    pairs = (line.partition("==") for line in freeze)
    installed = {canonicalize_name(name): Version(version) for name, _, version in pairs}
    for pin in map(Requirement, pins):
        (wanted,) = pin.specifier
        assert installed[canonicalize_name(pin.name)] == Version(wanted.version), pin
    left_out = needs_the_runtime()
    assert "test_batcher.py" in left_out, left_out
    ignored = [f"--ignore=tests/unit/{name}" for name in left_out]
    run = subprocess.run(
        [str(venv / "bin/python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit",
         *ignored],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
