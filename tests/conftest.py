"""Session fixtures: one real local control plane for the whole run, a namespace per test.

Tests that use `control_plane` (directly or through `api_client` / `namespace`) are marked
`cluster`; `pytest -m "not cluster"` runs the unit tests alone, with no cluster started.
To reuse a control plane started by `python hack/testenv.py up`, set TORCHSHIP_TESTENV_DIR
to its directory.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import testenv  # hack/testenv.py, on pytest's pythonpath

CLUSTER_FIXTURES = {"control_plane", "api_client", "namespace", "real_plane", "bare_plane"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if CLUSTER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[testenv.ControlPlane]:
    bin_dir = testenv.build_binaries()
    if reuse := os.environ.get("TORCHSHIP_TESTENV_DIR"):
        yield testenv.ControlPlane.attach(Path(reuse).resolve(), bin_dir)
        return
    plane = testenv.ControlPlane(workdir=tmp_path_factory.mktemp("testenv"), bin_dir=bin_dir)
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def api_client(control_plane: testenv.ControlPlane):
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    yield client
    client.close()


@pytest.fixture
def namespace(control_plane: testenv.ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test, deleted (without waiting) afterwards."""
    stem = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{stem}-{uuid.uuid4().hex[:6]}"
    control_plane.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)
