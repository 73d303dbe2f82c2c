"""kopf wiring: watch caches (indexes), thin event handlers that enqueue the owning
ModelService, one startup handler with every setting, and the workers that reconcile.

Only event-watching handlers and indexes are used, so kopf keeps no bookkeeping on our objects:
no finalizer, no last-handled-configuration annotation, nothing written to spec. Deletion is
the garbage collector's job through owner references.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Hashable, Mapping
from typing import Any

import kopf
from prometheus_client import start_http_server

from . import api, election, phases, render, scrape, selection, starts
from .kube import Kube, make_api_client
from .metrics import CACHED, MODELSERVICES, QUEUE_DEPTH, RECONCILE_SECONDS, RECONCILES
from .reconcile import Observed, reconcile
from .reconcilers.report import now_iso
from .settings import Settings
from .vocabulary import Event, one_line
from .wakeups import FailingPods
from .workqueue import WorkQueue

log = logging.getLogger("torchship")

MANAGED = {"app.kubernetes.io/managed-by": render.MANAGED_BY}
CHILD = {render.LABEL_MS: kopf.PRESENT}


class Controller:
    """Process-wide state: settings, client, queue and kopf's indexes (live views)."""

    def __init__(self, settings: Settings, indexes: Mapping[str, kopf.Index]) -> None:
        self.settings = settings
        self.queue = WorkQueue()
        self.kube: Kube | None = None
        self.indexes = dict(indexes)
        self.readiness: dict[Hashable, bool] = {}
        self.failing_pods = FailingPods()
        self.workers: list[asyncio.Task] = []
        self.elector: election.Elector | None = None
        self.election: asyncio.Task | None = None
        self.serving: asyncio.Task | None = None
        self.starts = starts.StartEvents()
        self.scraper = scrape.Scraper()  # canary analysis: the pods' /metrics

    def observe(self, key: tuple[str, str]) -> Observed | None:
        bodies = list(self.indexes["modelservice_index"].get(key, []))
        if not bodies:
            return None

        def children(index: str) -> list[Mapping[str, Any]]:
            return list(self.indexes[index].get(key, []))

        return Observed(
            body=bodies[0],
            deployments=children("deployment_index"),
            services=children("service_index"),
            hpas=children("hpa_index"),
            pods=children("pod_index"),
        )


# Built at start-up (configure), when the settings are read and kopf hands over its indexes;
# kopf starts its watches, and so every other handler, only after that.
controller: Controller


# -- watch caches ---------------------------------------------------------------------------


def slim(body: kopf.Body) -> dict[str, Any]:
    """The object without managedFields, the largest part of it and never read here."""
    meta = {k: v for k, v in body["metadata"].items() if k != "managedFields"}
    return {**body, "metadata": meta}


@kopf.index(api.GROUP, api.VERSION, api.PLURAL)
async def modelservice_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict:
    return {(namespace, name): slim(body)}


# The child indexes take every event their watch delivers (no client-side `labels=`), so that
# `selection.seen` counts whatever the API server sends; the selector makes that ours alone.


@kopf.index("apps", "v1", "deployments")
async def deployment_index(namespace: str, labels: Mapping, body: kopf.Body, **_: Any) -> dict:
    if not selection.seen("deployments", labels):
        return {}
    return {(namespace, labels[render.LABEL_MS]): slim(body)}


@kopf.index("v1", "services")
async def service_index(namespace: str, labels: Mapping, body: kopf.Body, **_: Any) -> dict:
    if not selection.seen("services", labels):
        return {}
    return {(namespace, labels[render.LABEL_MS]): slim(body)}


@kopf.index("autoscaling", "v2", "horizontalpodautoscalers")
async def hpa_index(namespace: str, labels: Mapping, body: kopf.Body, **_: Any) -> dict:
    if not selection.seen("horizontalpodautoscalers", labels):
        return {}
    return {(namespace, labels[render.LABEL_MS]): slim(body)}


def last_words(container_status: Mapping[str, Any]) -> str:
    terminated = (container_status.get("lastState") or {}).get("terminated") or {}
    return terminated.get("message", "")


@kopf.index("v1", "pods")
async def pod_index(
    namespace: str,
    name: str,
    labels: Mapping,
    spec: Mapping,
    status: Mapping,
    meta: Mapping,
    **_: Any,
) -> dict:
    if not selection.seen("pods", labels):
        return {}
    pod = slim_pod(name, labels, spec, status, meta.get("deletionTimestamp"))
    return {(namespace, labels[render.LABEL_MS]): pod}


def slim_pod(
    name: str, labels: Mapping, spec: Mapping, status: Mapping, deleting: str | None = None
) -> dict[str, Any]:
    # Only what status reasons need: a pod cache stays small at a thousand ModelServices.
    slim_status = {
        "conditions": [c for c in status.get("conditions", []) if c.get("type") == "PodScheduled"],
        "containerStatuses": [
            {
                "name": c.get("name"),
                "state": {"waiting": c["state"]["waiting"]},
                # A crash's own words: the termination message of its last run.
                "lastState": {"terminated": {"message": last_words(c)}},
            }
            for c in status.get("containerStatuses", [])
            if (c.get("state") or {}).get("waiting")
        ],
    }
    # A pod being deleted is no pod to give up to make room (room.py).
    deleted = {"deletionTimestamp": deleting} if deleting else {}
    # Where canary analysis reads the pod's /metrics (scrape.py).
    address = {"podIP": status["podIP"]} if status.get("podIP") else {}
    return {
        "metadata": {"name": name, "labels": dict(labels), **deleted},
        "status": slim_status,
        **address,
        # The start phase's signals (container states and times), for phases.py.
        "start": phases.facts(spec, status),
    }


# -- events -> queue -----------------------------------------------------------------------


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL)
async def modelservice_changed(namespace: str, name: str, event: Mapping, **_: Any) -> None:
    if event.get("type") == "DELETED" and controller.kube is not None:
        controller.kube.forget((api.KIND, namespace, name))
    controller.queue.add((namespace, name))


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("v1", "services", labels=MANAGED)
@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers", labels=MANAGED)
async def child_changed(
    namespace: str, name: str, labels: Mapping, body: kopf.Body, event: Mapping, **_: Any
) -> None:
    if event.get("type") == "DELETED" and controller.kube is not None:
        controller.kube.forget((body["kind"], namespace, name))
    # A short delay folds the burst of events one rollout step causes into one pass.
    controller.queue.add((namespace, labels[render.LABEL_MS]), delay=0.2)


@kopf.on.event("v1", "pods", labels=CHILD)
async def pod_changed(
    namespace: str,
    name: str,
    labels: Mapping,
    spec: Mapping,
    status: Mapping,
    event: Mapping,
    **_: Any,
) -> None:
    pod = slim_pod(name, labels, spec, status)
    if controller.failing_pods.wakes(namespace, name, pod, event.get("type") == "DELETED"):
        controller.queue.add((namespace, labels[render.LABEL_MS]), delay=0.2)


# -- lifecycle -----------------------------------------------------------------------------


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
    global controller
    # kopf passes its indexes to every handler by name, start-up handlers included.
    indexes = {name: index for name, index in kwargs.items() if name.endswith("_index")}
    controller = Controller(Settings.from_env(), indexes)
    for name, index in indexes.items():
        CACHED.labels(name.removesuffix("_index")).set_function(
            lambda index=index: sum(len(store) for store in index.values())
        )
    config = controller.settings
    logging.getLogger().setLevel(config.log_level.upper())
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # one line per event otherwise
    settings.posting.level = logging.WARNING  # kopf's own events: only problems
    settings.persistence.finalizer = f"{api.GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=api.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=api.GROUP)
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    selection.select_children(settings)  # the API server sends only our children
    settings.networking.request_timeout = 60
    # kopf runs one worker per object with events; each lingers `idle_timeout` for more. A
    # worker limit would make thousands of children wait in line behind lingering workers,
    # so there is none, and idle workers leave soon (their handlers only enqueue a key).
    settings.queueing.worker_limit = None
    settings.queueing.idle_timeout = 1.0
    start_http_server(config.metrics_port)
    # One connection and one thread for each call in flight: two per worker (a pass applies
    # its Service and Deployment at once), and one for the Lease.
    calls = 2 * config.workers + 1
    controller.kube = Kube(make_api_client(pool_size=calls), threads=calls)
    if config.namespaces:
        await warn_without_discovery(controller.kube)
    if config.leader_election:
        controller.elector = election.Elector(
            controller.kube, config.lease_name, config.lease_namespace, election.IDENTITY
        )
    controller.serving = asyncio.create_task(serve(), name="serve")
    log.info(
        "operator started: namespaces=%s, runtime image %s%s",
        config.namespaces or "all",
        config.runtime_image,
        f", leader election on Lease {config.lease_namespace}/{config.lease_name}"
        if config.leader_election
        else "",
    )


async def serve() -> None:
    """Reconcile: at once, or, with leader election, while this replica holds the Lease. Every
    replica watches all along, so a new leader starts from warm caches and a full queue."""
    elector = controller.elector
    if elector:
        controller.election = asyncio.create_task(elector.run(), name="election")
        await elector.leading.wait()
    controller.workers = [
        asyncio.create_task(worker(), name=f"reconcile-{i}")
        for i in range(controller.settings.workers)
    ]
    if elector:
        await elector.lost.wait()
        # No reconcile may go on past the Lease, not even one in flight: leave at once; the
        # kubelet restarts the container as a standby.
        log.critical("leadership lost: exiting")
        logging.shutdown()
        os._exit(1)


# The cluster-scoped reads a namespaced install may go without (the chart's rbac.discovery).
DISCOVERY = (("apiextensions.k8s.io", "customresourcedefinitions"), ("", "namespaces"))


async def warn_without_discovery(kube: Kube) -> None:
    """Say at start when the cluster-scoped reads are missing: the operator then serves the
    namespaces as listed, and a CRD installed or upgraded later is seen only after a restart."""
    missing = [r for g, r in DISCOVERY if not await kube.allowed("watch", g, r)]
    if missing:
        log.warning(
            "no cluster-wide watch of %s (rbac.discovery off): serving namespaces %s as "
            "listed; a CRD installed or changed later is seen only after a restart",
            " and ".join(missing),
            ",".join(controller.settings.namespaces),
        )


@kopf.on.cleanup()
async def stop(**_: Any) -> None:
    tasks = [controller.serving, controller.election, *controller.workers]
    for task in tasks:
        if task:
            task.cancel()
    await asyncio.gather(*filter(None, tasks), return_exceptions=True)
    if controller.elector:  # after the workers stopped: the standby may take over at once
        await controller.elector.release()


@kopf.on.probe(id="workqueue")
def workqueue_depth(**_: Any) -> int:
    # kopf's liveness endpoint may be asked before start-up has built the controller.
    return len(controller.queue) if "controller" in globals() else 0


# -- workers ---------------------------------------------------------------------------------


async def worker() -> None:
    queue = controller.queue
    while True:
        key = await queue.get()
        QUEUE_DEPTH.set(len(queue))
        try:
            await reconcile_key(key)
        finally:
            queue.done(key)


async def reconcile_key(key: tuple[str, str]) -> None:
    queue = controller.queue
    observed = controller.observe(key)
    if observed is None:  # deleted: its children go with it (owner references)
        queue.forget(key)
        controller.starts.forget(key)
        controller.scraper.forget(key)
        controller.readiness.pop(key, None)
        update_readiness_gauge()
        return
    started = time.perf_counter()
    try:
        outcome = await reconcile(
            observed,
            controller.kube,
            controller.settings,
            now=time.time(),
            scraper=controller.scraper,
        )
    except Exception as error:  # any failure: back off, never a hot loop
        delay = queue.retry(key)
        RECONCILES.labels("error").inc()
        log.warning("reconcile of %s/%s failed, retrying in %.1fs: %s", *key, delay, error)
        if queue.failures(key) == 1:  # one Event per streak of failures; the log has each
            await post_events(observed.body, [Event("Warning", "ReconcileError", short(error))])
        return
    finally:
        RECONCILE_SECONDS.observe(time.perf_counter() - started)
    finished = controller.starts.observe(key, observed.pods, time.time())
    outcome.events += [Event("Normal", e.reason, e.message) for e in finished]
    await post_events(observed.body, outcome.events)
    controller.readiness[key] = outcome.ready
    update_readiness_gauge()
    if outcome.failed:  # a write refused: its condition is in status; try again, slower each time
        delay = queue.retry(key)
        RECONCILES.labels("error").inc()
        log.warning("reconcile of %s/%s: a write was refused, retrying in %.1fs", *key, delay)
        return
    queue.forget(key)
    RECONCILES.labels("success").inc()
    if outcome.writes:
        log.info("reconciled %s/%s: wrote %s", *key, ", ".join(outcome.writes))
    if outcome.requeue_after is not None:
        queue.add(key, delay=outcome.requeue_after)


def short(error: Exception) -> str:
    return one_line(str(error))


async def post_events(body: Mapping[str, Any], events: list[Event]) -> None:
    for event in events:
        try:
            await controller.kube.post_event(
                body, event.type, event.reason, event.message, now_iso()
            )
        except Exception as error:  # an event lost is no reason to fail the reconcile
            log.warning(
                "event %s for %s not posted: %s", event.reason, body["metadata"]["name"], error
            )


def update_readiness_gauge() -> None:
    ready = sum(controller.readiness.values())
    MODELSERVICES.labels("true").set(ready)
    MODELSERVICES.labels("false").set(len(controller.readiness) - ready)
