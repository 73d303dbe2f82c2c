"""Leader election against the real API server: electors in this process sharing one Lease,
the way operator replicas do."""

from __future__ import annotations

import asyncio
import time

import pytest
from kubernetes import client, config

from torchship_operator.election import LEASE_DURATION, RETRY_PERIOD, Elector
from torchship_operator.kube import Kube


@pytest.fixture
def kube(control_plane) -> Kube:
    configuration = client.Configuration()
    config.load_kube_config(str(control_plane.kubeconfig), client_configuration=configuration)
    return Kube(client.ApiClient(configuration), threads=4)


async def lease_of(elector: Elector) -> dict:
    return (await elector.kube.get(elector.path))["spec"]


async def within(seconds: float, event: asyncio.Event) -> None:
    await asyncio.wait_for(event.wait(), seconds)


def test_one_holds_the_other_waits_then_takes_over_at_release(kube, namespace):
    async def scenario() -> None:
        a, b = (Elector(kube, "lead", namespace, who) for who in ("a", "b"))
        running_a = asyncio.create_task(a.run())
        await within(10, a.leading)
        running_b = asyncio.create_task(b.run())
        await asyncio.sleep(3 * RETRY_PERIOD)
        assert not b.leading.is_set()
        held = await lease_of(a)
        assert (held["holderIdentity"], held["leaseDurationSeconds"]) == ("a", LEASE_DURATION)

        # A clean stop: the standby need not wait out the lease.
        running_a.cancel()
        await a.release()
        released = time.monotonic()
        await within(RETRY_PERIOD + 3, b.leading)
        assert time.monotonic() - released < RETRY_PERIOD + 3
        taken = await lease_of(b)
        assert (taken["holderIdentity"], taken["leaseTransitions"]) == ("b", 1)

        # Someone else takes the Lease from under the holder: it knows within a period.
        lease = await kube.get(b.path)
        lease["spec"]["holderIdentity"] = "c"
        await kube.write("PUT", b.path, lease)
        await within(2 * RETRY_PERIOD + 3, b.lost)
        await running_b  # run() returns once lost

    asyncio.run(scenario())


def test_a_holder_that_dies_is_replaced_after_the_lease_duration(kube, namespace):
    async def scenario() -> None:
        a, b = (Elector(kube, "lead", namespace, who) for who in ("a", "b"))
        running_a = asyncio.create_task(a.run())
        await within(10, a.leading)
        running_a.cancel()  # dies: no release
        started = time.monotonic()
        running_b = asyncio.create_task(b.run())
        await within(LEASE_DURATION + 2 * RETRY_PERIOD + 5, b.leading)
        waited = time.monotonic() - started
        assert waited >= LEASE_DURATION - 1, waited  # never before the lease lapsed
        running_b.cancel()
        await b.release()
        assert "holderIdentity" not in await lease_of(b)

    asyncio.run(scenario())
