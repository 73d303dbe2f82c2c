"""Reading the runtime pods' own /metrics for canary analysis (analysis.py judges them).

The operator already knows every pod of a ModelService and its address from its watch cache,
so it asks the pods directly, as Prometheus would: no Prometheus to install or configure, and
the figures are those of exactly the revisions being compared, read when the rollout needs
them. Readings live in memory; an operator that restarts takes a fresh first reading, which
costs one interval, not a wrong figure.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .analysis import Counters, Figures, Measurement
from .vocabulary import revision_of

log = logging.getLogger("torchship.scrape")

REQUESTS = "torchship_requests"
LATENCY = "torchship_request_duration_seconds"
TIMEOUT_SECONDS = 2.0


def parse(text: str) -> Counters:
    """The inference counters of one /metrics page, summed over models and protocols."""
    requests = errors = 0.0
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == REQUESTS:
            for sample in family.samples:
                if sample.name != f"{REQUESTS}_total":
                    continue
                requests += sample.value
                if sample.labels.get("code", "").startswith("5"):
                    errors += sample.value
        elif family.name == LATENCY:
            for sample in family.samples:
                if sample.name == f"{LATENCY}_bucket":
                    le = float(sample.labels["le"])
                    buckets[le] = buckets.get(le, 0.0) + sample.value
    ordered = tuple(sorted(buckets.items(), key=lambda item: item[0]))
    if ordered and not math.isinf(ordered[-1][0]):
        ordered += ((math.inf, ordered[-1][1]),)
    return Counters(requests, errors, ordered)


@dataclass
class Reading:
    """Every scraped pod's counters at one time."""

    at: float
    pods: dict[str, tuple[str, Counters]] = field(default_factory=dict)  # name -> (revision, c)


def measure(before: Reading, after: Reading, canary: str, stable: str) -> Measurement:
    """The canary's and the stable's traffic between two readings: each pod's difference,
    counted for pods read both times with counters that did not go back (no restart)."""
    windows: dict[str, list[Counters]] = {canary: [], stable: []}
    for name, (revision, now) in after.pods.items():
        then = before.pods.get(name)
        if then is None or revision not in windows:
            continue
        window = now.minus(then[1])
        if window is not None:
            windows[revision].append(window)
    return Measurement(
        start=before.at,
        end=after.at,
        canary=Figures.of(windows[canary]),
        stable=Figures.of(windows[stable]),
    )


def metrics_url(pod: Mapping[str, Any], port: int, tls: bool) -> str | None:
    ip = pod.get("podIP")
    if not ip:
        return None
    host = f"[{ip}]" if ":" in ip else ip
    return f"{'https' if tls else 'http'}://{host}:{port}/metrics"


class Scraper:
    """Readings per ModelService, one every `interval` while its canary is analysed."""

    def __init__(self) -> None:
        self.readings: dict[tuple[str, str], Reading] = {}
        # The runtime's certificate is the user's (spec.tls); counts are read, nothing is sent.
        self.client = httpx.AsyncClient(timeout=TIMEOUT_SECONDS, verify=False, trust_env=False)

    def due(self, key: tuple[str, str], interval: float, now: float) -> float:
        """Seconds until the next reading is due (0: now)."""
        last = self.readings.get(key)
        return 0.0 if last is None else max(0.0, last.at + interval - now)

    def forget(self, key: tuple[str, str]) -> None:
        self.readings.pop(key, None)

    async def read(
        self,
        pods: Sequence[Mapping[str, Any]],
        revisions: Sequence[str],
        port: int,
        tls: bool,
        now: float,
    ) -> Reading:
        mine = [
            (p, url)
            for p in pods
            if revision_of(p) in revisions
            and not p["metadata"].get("deletionTimestamp")
            and (url := metrics_url(p, port, tls))
        ]
        texts = await asyncio.gather(*(self.fetch(url) for _, url in mine))
        reading = Reading(at=now)
        for (pod, _), text in zip(mine, texts, strict=True):
            if text is not None:
                reading.pods[pod["metadata"]["name"]] = (revision_of(pod), parse(text))
        return reading

    async def fetch(self, url: str) -> str | None:
        try:
            response = await self.client.get(url)
            response.raise_for_status()
        except httpx.HTTPError as error:  # a pod not up yet, or gone: left out of the window
            log.debug("no metrics from %s: %s", url, error)
            return None
        return response.text

    async def measure(
        self,
        key: tuple[str, str],
        pods: Sequence[Mapping[str, Any]],
        canary: str,
        stable: str,
        port: int,
        tls: bool,
        since: float,
        interval: float,
        now: float,
    ) -> Measurement | None:
        """A new measurement when one is due; None while the interval runs. A window that
        began before `since` (the step was reached) is a first reading only."""
        if self.due(key, interval, now) > 0:
            return None
        before = self.readings.get(key)
        after = await self.read(pods, (canary, stable), port, tls, now)
        self.readings[key] = after
        if before is None or before.at < since:
            return None
        return measure(before, after, canary, stable)
