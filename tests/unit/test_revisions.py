"""The observed revisions as the state machine reads them, alone."""

from __future__ import annotations

from torchship_operator.revisions import ObservedRevision, Revisions, parse_time
from torchship_operator.vocabulary import LABEL_REVISION, LABEL_VERSION


def revisions(*observed: ObservedRevision) -> Revisions:
    return Revisions.of(observed)


def test_counts_stop_at_what_was_decided():
    seen = revisions(ObservedRevision("a", replicas=2, ready=3, available=3))
    assert (seen.spec("a"), seen.ready("a"), seen.available("a")) == (2, 2, 2)


def test_a_revision_not_created_yet_reads_as_nothing():
    seen = revisions()
    assert "a" not in seen
    assert (seen.spec("a"), seen.ready("a"), seen.available("a")) == (0, 0, 0)
    assert seen.failure("a") is None and seen.drained("a")
    assert seen.name("a") == "a" and seen.created(["a"]) == {}


def test_names_carry_the_declared_version():
    seen = revisions(ObservedRevision("a", version="v2"), ObservedRevision("b"))
    assert seen.name("a") == "a (v2)" and seen.name("b") == "b" and seen.name(None) == "None"


def test_most_available_prefers_more_pods_then_the_newest():
    seen = revisions(
        ObservedRevision("a", 2, 2, 2, created_at=1.0),
        ObservedRevision("b", 2, 2, 2, created_at=2.0),
        ObservedRevision("c", 3, 1, 1, created_at=3.0),
    )
    assert seen.most_available() == "b"
    assert revisions(ObservedRevision("a", 2, 0, 0)).most_available() is None


def test_history_is_newest_first_without_the_kept_ones():
    seen = revisions(
        *(ObservedRevision(r, created_at=t) for r, t in [("a", 1), ("c", 3), ("b", 2)])
    )
    assert seen.history() == ["c", "b", "a"]
    assert seen.history("c", None) == ["b", "a"]
    assert list(seen) == ["a", "c", "b"] and seen.others("a") == ["c", "b"]


def test_drained_means_decided_to_zero_with_no_pod_left_ready():
    seen = revisions(ObservedRevision("a", 0, 1, 0), ObservedRevision("b", 0, 0, 0))
    assert not seen.drained("a") and seen.drained("b")


def test_from_a_deployment():
    deployment = {
        "metadata": {
            "name": "mlp-a",
            "labels": {LABEL_REVISION: "a", LABEL_VERSION: "v1"},
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {"replicas": 3},
        "status": {"readyReplicas": 2, "availableReplicas": 1},
    }
    r = ObservedRevision.from_deployment(deployment, failure="Unschedulable: no GPU")
    assert r == ObservedRevision(
        "a", 3, 2, 1, "v1", parse_time("2026-01-01T00:00:00Z"), "Unschedulable: no GPU"
    )
    assert parse_time(12) == 12.0
