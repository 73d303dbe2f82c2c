"""Skips that cannot hide a missing install step.

On a machine of CI's kind (root, with apt-get) `make setup` installs everything the suite needs
(hack/install-node-packages.sh: the real node's packages and g++), so there a test that would
skip for want of one fails instead, with the reason; elsewhere it skips with that reason, which
pytest's summary (`-ra`) prints. Only the CUDA tests skip everywhere a GPU is missing.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def installs_everything() -> bool:
    """Root and apt-get: `make setup` can install whatever the suite needs here."""
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def skip_unless_installable(reason: str) -> NoReturn:
    """Skip with `reason`, or fail with it where `make setup` should have prevented it."""
    if installs_everything():
        pytest.fail(
            f"{reason}: on this machine (root, apt-get) `make setup` installs what this needs, "
            "so a skip would hide a missing install step",
            pytrace=False,
        )
    pytest.skip(reason)
