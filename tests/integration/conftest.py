"""Fixtures of the integration tests: the CRDs and one operator process for the session
(operatorprocess.py starts it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from operatorprocess import RunningOperator, install_crds, start_operator, stop_operator


@pytest.fixture(scope="session")
def crds(control_plane) -> None:
    install_crds(control_plane)


@pytest.fixture(scope="session")
def operator(control_plane, crds, tmp_path_factory) -> Iterator[RunningOperator]:
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    running = start_operator(control_plane, log)
    try:
        yield running
    finally:
        stop_operator(running)
        assert running.process.returncode in (0, -15), log.read_text()[-3000:]
