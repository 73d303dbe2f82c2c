"""What offers.describe does when the nodes cannot be read: the expected failures (forbidden,
the API server's error, a lost connection) leave the scheduler's words alone; anything else is
a bug, and is raised for the work queue to report rather than swallowed."""

from __future__ import annotations

import asyncio
import logging

import pytest
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ProtocolError

from torchship_operator import offers
from torchship_operator.kube import Refused

NEED = {"resource": "nvidia.com/gpu", "count": 1, "selector": {}}


class Failing:
    """A reader whose every read fails with `error` (the path it was asked is kept)."""

    def __init__(self, error: BaseException) -> None:
        self.error, self.asked = error, []

    async def get(self, path: str, **query):
        self.asked.append(path)
        raise self.error


def describe(error: BaseException) -> str | None:
    offers._cache.clear()
    return asyncio.run(offers.describe(Failing(error), NEED))


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
