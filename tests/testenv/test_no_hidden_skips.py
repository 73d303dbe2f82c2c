"""On a machine of CI's kind (root, apt-get), where `make setup` installs the real node's
packages and g++, a test that lacks one fails with the reason instead of skipping; elsewhere it
skips with that reason (tests/skips.py). Shown by running the real node suite and the
ahead-of-time compile tests in a pytest of their own, on a PATH that holds apt-get and nothing
else."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from skips import installs_everything

ROOT = Path(__file__).resolve().parents[2]
SUITES = ("tests/node", "tests/runtime/test_compile_ahead.py")


def test_a_missing_tool_fails_the_suite_where_setup_would_have_installed_it(tmp_path: Path):
    if not installs_everything():
        pytest.skip("not a machine of CI's kind (root, apt-get): there these tests may skip")
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "apt-get").symlink_to(shutil.which("apt-get"))
    env = {k: v for k, v in os.environ.items() if k != "CXX"} | {"PATH": str(bare)}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfEs", *SUITES],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert " skipped" not in out, out
    assert "the local node needs containerd, runc, ip, iptables" in out, out
    assert "the first start compiles C++: no g++ on PATH" in out, out
    assert "`make setup` installs what this needs" in out, out
