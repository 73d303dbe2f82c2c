"""Leader election on a coordination.k8s.io Lease, the way Kubernetes' own controllers do it.

Every replica watches and keeps its caches warm (kopf runs standalone in each); only the holder
of the Lease reconciles. A standby takes the Lease once its holder has left it unrenewed for
its duration, measured on the standby's own clock from the moment it last saw the record change,
so the clocks of different machines are never compared. The holder gives up when it has failed
to renew for `RENEW_DEADLINE`, shorter than the duration: it has stopped acting before anyone
may take over.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .kube import Kube

log = logging.getLogger("torchship.election")

# Kubernetes' controllers' defaults (client-go's leaderelection).
LEASE_DURATION = 15
RENEW_DEADLINE = 10.0
RETRY_PERIOD = 2.0


def own_identity() -> str:
    """The pod's name (its hostname), the process and a nonce: unique across restarts."""
    return f"{socket.gethostname()}_{os.getpid()}_{random.randbytes(4).hex()}"


IDENTITY = own_identity()


@dataclass(frozen=True)
class Record:
    """What election reads of a Lease."""

    holder: str
    duration: float
    renewed: str
    transitions: int
    resource_version: str

    @classmethod
    def of(cls, lease: Mapping[str, Any]) -> Record:
        spec = lease.get("spec") or {}
        return cls(
            holder=spec.get("holderIdentity") or "",
            duration=float(spec.get("leaseDurationSeconds") or LEASE_DURATION),
            renewed=spec.get("renewTime") or "",
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=lease["metadata"].get("resourceVersion", ""),
        )


@dataclass(frozen=True)
class Sighting:
    """A record and when (this process's monotonic clock) it was first seen as it is."""

    record: Record
    since: float


def sighted(previous: Sighting | None, record: Record | None, now: float) -> Sighting | None:
    """The sighting after reading `record`: unchanged holder and renewal keep their time."""
    if record is None:
        return None
    if previous and (previous.record.holder, previous.record.renewed) == (
        record.holder,
        record.renewed,
    ):
        return Sighting(record, previous.since)
    return Sighting(record, now)


class Step(enum.Enum):
    CREATE = "create"  # no Lease yet
    RENEW = "renew"  # ours
    TAKE = "take"  # released, or left unrenewed for its duration
    WAIT = "wait"  # another's, still live


def step(sighting: Sighting | None, me: str, now: float) -> Step:
    if sighting is None:
        return Step.CREATE
    record = sighting.record
    if record.holder == me:
        return Step.RENEW
    if not record.holder or now >= sighting.since + record.duration:
        return Step.TAKE
    return Step.WAIT


def lease(
    name: str,
    namespace: str,
    me: str | None,
    transitions: int,
    now: datetime,
    duration: int,
    resource_version: str = "",
) -> dict[str, Any]:
    """The Lease as written by `me` (None: released); a replace names the `resource_version`
    it read, so that of two replicas writing at once only one succeeds."""
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    spec: dict[str, Any] = {
        "leaseDurationSeconds": duration,
        "leaseTransitions": transitions,
        "renewTime": stamp,
    }
    if me:
        spec["holderIdentity"] = me
    meta = {"name": name, "namespace": namespace}
    if resource_version:
        meta["resourceVersion"] = resource_version
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": spec}


class Elector:
    """Holds or waits for the Lease; `leading` is set while this replica holds it, `lost` once
    it held it and could not keep it."""

    def __init__(
        self,
        kube: Kube,
        name: str,
        namespace: str,
        identity: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.name, self.namespace, self.identity = name, namespace, identity
        self.clock = clock
        self.leading = asyncio.Event()
        self.lost = asyncio.Event()
        self.sighting: Sighting | None = None

    @property
    def leases(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"

    @property
    def path(self) -> str:
        return f"{self.leases}/{self.name}"

    async def run(self) -> None:
        renewed_at = self.clock()  # when the last successful renewal was sent
        while True:
            left = RENEW_DEADLINE
            if self.leading.is_set():
                left -= self.clock() - renewed_at
                if left <= 0 or self.taken_by_another():
                    log.error("lost Lease %s/%s: stopping", self.namespace, self.name)
                    self.lost.set()
                    return
            sent = self.clock()
            try:  # a request that hangs must not carry the holder past its deadline
                held = await asyncio.wait_for(self.try_once(), timeout=left)
            except TimeoutError:
                held = False
            if held:
                renewed_at = sent
                if not self.leading.is_set():
                    log.info("leading: holding Lease %s/%s", self.namespace, self.name)
                    self.leading.set()
            await asyncio.sleep(0 if self.taken_by_another() else RETRY_PERIOD)

    def taken_by_another(self) -> bool:
        return self.leading.is_set() and bool(
            self.sighting and self.sighting.record.holder not in ("", self.identity)
        )

    async def try_once(self) -> bool:
        """One read and, where the step says so, one write; True when the Lease is ours."""
        try:
            found = await self.kube.get(self.path)
        except Exception as error:  # not found: create it; anything else: not ours for now
            if getattr(error, "status", None) != 404:
                log.warning("Lease %s/%s not read: %s", self.namespace, self.name, error)
                return False
            found = None
        now = self.clock()
        self.sighting = sighted(self.sighting, Record.of(found) if found else None, now)
        action = step(self.sighting, self.identity, now)
        if action is Step.WAIT:
            return False
        seen = self.sighting.record if self.sighting else None
        body = lease(
            self.name,
            self.namespace,
            self.identity,
            (seen.transitions if seen else 0) + (action is Step.TAKE),
            datetime.now(UTC),
            LEASE_DURATION,
            seen.resource_version if seen else "",
        )
        try:
            if seen is None:
                written = await self.kube.write("POST", self.leases, body)
            else:
                written = await self.kube.write("PUT", self.path, body)
        except Exception as error:  # a 409: another replica wrote first; read again next time
            if getattr(error, "status", None) != 409:
                log.warning("Lease %s/%s not written: %s", self.namespace, self.name, error)
            return False
        self.sighting = sighted(self.sighting, Record.of(written or body), now)
        if action is Step.TAKE:
            log.info("took Lease %s/%s (from %r)", self.namespace, self.name, seen.holder)
        return True

    async def release(self) -> None:
        """On a clean stop: give the Lease up so that a standby takes it at once."""
        if not self.leading.is_set() or self.lost.is_set() or not self.sighting:
            return
        for _ in range(3):  # a renewal still in flight may have moved the resourceVersion on
            try:
                current = Record.of(await self.kube.get(self.path))
                if current.holder != self.identity:
                    return
                body = lease(
                    self.name,
                    self.namespace,
                    None,
                    current.transitions,
                    datetime.now(UTC),
                    1,
                    current.resource_version,
                )
                await self.kube.write("PUT", self.path, body)
                log.info("released Lease %s/%s", self.namespace, self.name)
                return
            except Exception as error:  # unreleased, it lapses after its duration
                if getattr(error, "status", None) != 409:
                    log.warning("Lease %s/%s not released: %s", self.namespace, self.name, error)
                    return
