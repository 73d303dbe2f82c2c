"""What the GPU offer's read (reconcilers/gpu_offer.describe) does when the nodes cannot be
read: the expected failures (forbidden, the API server's error, a lost connection) leave the
scheduler's words alone; anything else is a bug, and is raised for the work queue to report
rather than swallowed."""

from __future__ import annotations

import asyncio
import logging

import pytest
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ProtocolError

from torchship_operator import offers
from torchship_operator.kube import Refused
from torchship_operator.reconcilers import gpu_offer

NEED = {"resource": "nvidia.com/gpu", "count": 1, "selector": {}}


class Failing:
    """A reader whose every read fails with `error` (the path it was asked is kept)."""

    def __init__(self, error: BaseException) -> None:
        self.error, self.asked = error, []

    async def get(self, path: str, **query):
        self.asked.append(path)
        raise self.error


def describe(error: BaseException) -> str | None:
    gpu_offer._cache.clear()
    return asyncio.run(gpu_offer.describe(Failing(error), NEED))


def test_forbidden_nodes_leave_the_scheduler_alone_quietly(caplog):
    caplog.set_level(logging.DEBUG, "torchship.offers")
    assert describe(Refused("nodes", "", 403, 'nodes is forbidden: User "x"')) is None
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]


@pytest.mark.parametrize(
    "error", [ApiException(status=500, reason="Internal"), ProtocolError("connection reset")]
)
def test_an_api_server_or_connection_error_is_a_warning(caplog, error):
    caplog.set_level(logging.DEBUG, "torchship.offers")
    assert describe(error) is None
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


@pytest.mark.parametrize("error", [TypeError("a bug"), KeyError("metadata")])
def test_a_bug_is_raised_not_swallowed(error):
    with pytest.raises(type(error)):
        describe(error)


class Nodes:
    """A reader that answers the node list with one GPU node and records every path asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def get(self, path: str, **query):
        self.asked.append(path)
        if path == "/api/v1/nodes":
            node = {
                "metadata": {"name": "gpu-0", "labels": {offers.PRODUCT_LABEL: "NVIDIA-A10"}},
                "status": {"allocatable": {"nvidia.com/gpu": "2"}},
            }
            return {"items": [node]}
        return {"items": []}


@pytest.mark.parametrize(
    ("clusterwide", "said", "asked"),
    [
        (True, "NVIDIA-A10: 1 node, 2 free", ["/api/v1/nodes", "/api/v1/pods"]),
        # A namespaced install may not list pods cluster-wide: it never asks (no 403 in the
        # audit log), and says what the nodes have instead of what is free.
        (False, "NVIDIA-A10: 1 node, 2 nvidia.com/gpu allocatable", ["/api/v1/nodes"]),
    ],
)
def test_a_namespaced_install_counts_no_free_gpus(clusterwide, said, asked):
    gpu_offer._cache.clear()
    reader = Nodes()
    text = asyncio.run(gpu_offer.describe(reader, NEED, clusterwide=clusterwide))
    assert text == f"needs 1 nvidia.com/gpu; {said}"
    assert reader.asked == asked
