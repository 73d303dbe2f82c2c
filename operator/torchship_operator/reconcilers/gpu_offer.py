"""The GPU offer: what the nodes offer a pod of the desired revision that waits for its GPU,
read (offers.py) only while one waits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .. import offers, phases
from ..kube import Kube
from ..vocabulary import revision_of


async def gpu_offer(pods: Sequence[Mapping[str, Any]], revision: str, kube: Kube) -> str | None:
    """What the nodes offer, read only while a pod of `revision` waits for a GPU."""
    for pod in pods:
        start = pod.get("start")
        if revision_of(pod) != revision or start is None:
            continue
        if phases.pod_start(start).phase == "WaitingForGPU":
            return await offers.describe(kube, start["gpu"])
