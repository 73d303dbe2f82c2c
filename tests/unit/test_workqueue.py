"""The work queue: per-key exponential back-off, dedup, one reconcile of a key at a time; and
how an API error becomes a refusal (reported in status) or stays an error (retried)."""

from __future__ import annotations

import asyncio
import json

import pytest
from kubernetes.client.rest import ApiException

from torchship_operator.kube import Refused, refusals, server_message
from torchship_operator.workqueue import WorkQueue


def test_failures_back_off_exponentially_up_to_the_cap_and_success_starts_over():
    async def scenario() -> tuple[list[float], float, int]:
        queue = WorkQueue(base_delay=0.5, max_delay=8.0)
        delays = [queue.retry("k") for _ in range(6)]
        failures = queue.failures("k")
        queue.forget("k")
        return delays, queue.retry("k"), failures

    delays, after_success, failures = asyncio.run(scenario())
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert failures == 6
    assert after_success == 0.5


def test_a_retry_waits_its_back_off_and_an_event_can_bring_it_forward():
    async def scenario() -> tuple[bool, str]:
        queue = WorkQueue(base_delay=30.0)
        queue.retry("k")
        try:
            await asyncio.wait_for(queue.get(), timeout=0.2)
            waited = False
        except TimeoutError:
            waited = True
        queue.add("k")  # a change of the object: run now, the failure count stays
        key = await asyncio.wait_for(queue.get(), timeout=1)
        assert queue.failures("k") == 1
        return waited, key

    waited, key = asyncio.run(scenario())
    assert waited and key == "k"


def test_a_key_is_never_handed_out_twice_at_once():
    async def scenario() -> list[str]:
        queue = WorkQueue()
        queue.add("k")
        first = await queue.get()
        queue.add("k")  # changed while being reconciled
        queue.add("k")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(queue.get(), timeout=0.2)
        queue.done(first)
        second = await asyncio.wait_for(queue.get(), timeout=1)
        queue.done(second)
        assert len(queue) == 0  # the two adds folded into one pass
        return [first, second]

    assert asyncio.run(scenario()) == ["k", "k"]


def status_error(code: int, message: str | None) -> ApiException:
    body = {"kind": "Status", "code": code} | ({"message": message} if message else {})
    return ApiException(status=code, reason="Reason", body=json.dumps(body).encode())


@pytest.mark.parametrize("code", [400, 403, 404, 422])
def test_client_errors_are_refusals_with_the_api_servers_message(code):
    with pytest.raises(Refused) as caught, refusals("Deployment", "m-abc"):
        raise status_error(code, 'deployments.apps "m-abc" is forbidden: exceeded quota: q')
    assert caught.value.code == code
    assert str(caught.value) == (
        'Deployment m-abc: deployments.apps "m-abc" is forbidden: exceeded quota: q'
    )


@pytest.mark.parametrize("code", [408, 409, 429, 500, 503])
def test_what_a_retry_can_cure_stays_an_error(code):
    with pytest.raises(ApiException) as caught, refusals("Service", "m"):
        raise status_error(code, "try again")
    assert not isinstance(caught.value, Refused)


def test_a_status_without_a_message_is_told_by_its_code():
    assert server_message(status_error(422, None)) == "422 Reason"
    assert server_message(ApiException(status=400, reason="Bad Request")) == "400 Bad Request"
