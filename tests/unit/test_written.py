"""What a write returned stands in for a watch cache that lags behind it, briefly, and only
while it is newer: so a pass that runs early writes nothing twice, and a later change by
anyone else (a newer resourceVersion) is never hidden."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from torchship_operator import kube as kube_module
from torchship_operator.kube import Kube
from torchship_operator.reconcilers.report import FIRST_STATUS_GRACE, first_status_hold

KEY = ("Deployment", "ml", "mlp-1")


def obj(rv: str | None, **spec) -> dict:
    meta = {"name": "mlp-1", "namespace": "ml", "managedFields": [{"manager": "x"}]}
    if rv is not None:
        meta["resourceVersion"] = rv
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}


@pytest.fixture
def kube() -> Kube:
    return Kube(api_client=None, threads=1)


def test_nothing_written_leaves_the_cache_in_charge(kube):
    cached = obj("5")
    assert kube.latest(KEY, cached) is cached
    assert kube.latest(KEY, None) is None


def test_a_write_stands_in_until_the_cache_has_it(kube):
    kube.remember(obj("10", replicas=2))
    assert kube.latest(KEY, None)["spec"] == {"replicas": 2}  # not in the cache yet
    assert kube.latest(KEY, obj("9"))["metadata"]["resourceVersion"] == "10"  # cache older
    assert "managedFields" not in kube.latest(KEY, None)["metadata"]
    caught_up = obj("10", replicas=2)
    assert kube.latest(KEY, caught_up) is caught_up
    assert KEY not in kube.written


def test_a_newer_change_by_anyone_wins(kube):
    kube.remember(obj("10", replicas=2))
    theirs = obj("11", replicas=5)
    assert kube.latest(KEY, theirs) is theirs


def test_an_unparsable_version_trusts_the_cache(kube):
    kube.remember(obj("abc"))
    cached = obj("1")
    assert kube.latest(KEY, cached) is cached


def test_it_is_forgotten_when_gone_or_old(kube, monkeypatch):
    kube.remember(obj("10"))
    kube.forget(KEY)
    assert kube.latest(KEY, None) is None
    kube.remember(obj("10"))
    later = kube_module.time.monotonic() + kube_module.WRITTEN_SECONDS + 1
    monkeypatch.setattr(kube_module.time, "monotonic", lambda: later)
    assert kube.latest(KEY, None) is None


def status(reason: str) -> dict:
    return {"conditions": [{"type": "Ready", "status": "False", "reason": reason}]}


def body(created: float) -> dict:
    stamp = datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"metadata": {"creationTimestamp": stamp}}


def test_a_new_modelservice_coming_up_waits_for_its_first_status():
    now = 1_800_000_000.0
    assert first_status_hold(body(now), {}, status("RolloutInProgress"), now) == pytest.approx(
        FIRST_STATUS_GRACE
    )
    later = now + FIRST_STATUS_GRACE + 1
    assert first_status_hold(body(now), {}, status("RolloutInProgress"), later) is None


@pytest.mark.parametrize("reason", ["Ready", "Unschedulable", "InvalidSpec", "ScaledToZero"])
def test_anything_but_pods_coming_up_is_written_at_once(reason):
    now = 1_800_000_000.0
    assert first_status_hold(body(now), {}, status(reason), now) is None


def test_only_the_first_status_is_held():
    now = 1_800_000_000.0
    previous = status("Ready")
    assert first_status_hold(body(now), previous, status("RolloutInProgress"), now) is None


def test_an_autoscaled_modelservice_gets_its_status_at_once():
    now = 1_800_000_000.0
    autoscaled = body(now) | {"spec": {"autoscaling": {"maxReplicas": 3}}}
    assert first_status_hold(autoscaled, {}, status("RolloutInProgress"), now) is None
