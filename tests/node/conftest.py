"""The real node: a control plane whose CPU node is a real kubelet with containerd, running the
images built from the Dockerfile (hack/localnode.py, hack/build-images.sh).

One such control plane serves the whole session, beside the kwok-only one of the other tests,
with its own operator. On a machine that cannot run a kubelet (no root, no cgroups) every test
here skips with that reason (a failure where `make setup` could have installed what is missing:
tests/skips.py); anything else that stops the node is a failure.
"""

from __future__ import annotations

import re
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import testenv
from operatorprocess import RunningOperator, install_crds, start_operator, stop_operator
from skips import skip_unless_installable
from workload import RUNTIME_IMAGE


@pytest.fixture(scope="session")
def real_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[testenv.ControlPlane]:
    if reason := testenv.real_node_unavailable():
        skip_unless_installable(reason)
    plane = testenv.ControlPlane(
        workdir=tmp_path_factory.mktemp("real-node"),
        bin_dir=testenv.build_binaries(),
        real_node=True,
        images=testenv.build_images(),
    )
    plane.start(timeout=300)
    try:
        install_crds(plane)
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def real_operator(real_plane, tmp_path_factory) -> Iterator[RunningOperator]:
    log = tmp_path_factory.mktemp("real-operator") / "operator.log"
    running = start_operator(real_plane, log, TORCHSHIP_RUNTIME_IMAGE=RUNTIME_IMAGE)
    try:
        yield running
    finally:
        stop_operator(running)


@pytest.fixture
def only_the_operator_pod(real_operator: RunningOperator) -> Iterator[None]:
    """The operator on this machine paused (SIGSTOP), so that what reconciles is a pod's alone."""
    real_operator.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        real_operator.process.send_signal(signal.SIGCONT)


@pytest.fixture
def restricted_namespace(real_plane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace that enforces Pod Security "restricted", deleted afterwards."""
    stem = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{stem}-{uuid.uuid4().hex[:6]}"
    real_plane.kubectl("create", "namespace", name)
    real_plane.kubectl(
        "label", "namespace", name,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    )  # fmt: skip
    try:
        yield name
    finally:
        real_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def mlp_file(tmp_path_factory) -> Path:
    """A TorchScript MLP, 64 -> 10: the model the pods load from their volume."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)
    ).eval()
    path = tmp_path_factory.mktemp("models") / "mlp.pt"
    torch.jit.script(model).save(str(path))
    return path
