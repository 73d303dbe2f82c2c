"""The replica budget alone: one transition within maxSurge and maxUnavailable, a canary
step's split, and traffic weights from ready pods (rollout.plan calls these)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torchship_operator.budget import apportion, canary_split, transition, weights_by_ready


def move(targets, decided, ready, *, total, surge=1, unavailable=0, stable="a", desired="b"):
    created = {r: float(i) for i, r in enumerate(sorted(targets))}
    return transition(
        targets,
        decided=decided,
        ready=ready,
        created=created,
        stable=stable,
        desired=desired,
        total=total,
        surge=surge,
        unavailable=unavailable,
    )


def test_surge_one_adds_one_new_pod_and_keeps_every_old_one():
    assert move({"a": 0, "b": 3}, {"a": 3}, {"a": 3}, total=3) == {"a": 3, "b": 1}


def test_an_old_pod_goes_once_a_new_one_is_ready():
    got = move({"a": 0, "b": 3}, {"a": 3, "b": 1}, {"a": 3, "b": 1}, total=3)
    assert got == {"a": 2, "b": 2}


def test_make_room_first_with_no_surge():
    got = move({"a": 0, "b": 3}, {"a": 3}, {"a": 3}, total=3, surge=0, unavailable=1)
    assert got == {"a": 2, "b": 1}


# Two revisions' pods in any state within small bounds, and any budget.
TWO_REVISIONS = {
    "total": st.integers(0, 8),
    "surge": st.integers(0, 3),
    "unavailable": st.integers(0, 3),
    "old": st.integers(0, 8),
    "new": st.integers(0, 8),
    "ready_old": st.integers(0, 8),
    "ready_new": st.integers(0, 8),
}


def test_pods_that_are_not_ready_go_first():
    got = move({"a": 0, "b": 2}, {"a": 2, "b": 2}, {"a": 1, "b": 2}, total=2)
    assert got == {"a": 0, "b": 2}


@given(**TWO_REVISIONS)
def test_a_transition_never_breaks_the_budget_it_starts_within(
    total, surge, unavailable, old, new, ready_old, ready_new
):
    if surge == 0 and unavailable == 0:
        unavailable = 1
    decided = {"a": old, "b": new}
    ready = {"a": min(ready_old, old), "b": min(ready_new, new)}
    got = move({"a": 0, "b": total}, decided, ready, total=total, surge=surge,
               unavailable=unavailable)  # fmt: skip
    assert all(n >= 0 for n in got.values())
    assert sum(got.values()) <= max(total + surge, sum(decided.values()))
    kept_ready = sum(min(ready[r], got[r]) for r in got)
    assert kept_ready >= min(sum(ready.values()), total - unavailable)
    assert got["b"] <= total and got["a"] <= old


def test_weights_follow_ready_pods_and_never_go_empty():
    assert weights_by_ready({"a": 2, "b": 2}, {"a": 2, "b": 1}, "a", "b") == {"a": 67, "b": 33}
    assert weights_by_ready({"a": 0, "b": 2}, {}, "a", "b") == {"b": 100}


@pytest.mark.parametrize(
    ("total", "weight", "surge", "expected"),
    [
        (10, 10, 1, (1, 9)),
        (10, 25, 1, (3, 7)),  # 2.5 rounds half up
        (4, 50, 1, (2, 2)),
        (2, 10, 1, (1, 1)),  # at least one canary pod
        (2, 99, 1, (1, 1)),  # at least one stable pod below 100%
        (3, 90, 0, (2, 1)),
        (1, 10, 1, (1, 1)),  # a lone canary beside the lone stable pod, in the surge
        (1, 10, 0, (1, 0)),  # no surge: the canary replaces it
        (0, 50, 1, (0, 0)),
    ],
)
def test_canary_split(total, weight, surge, expected):
    assert canary_split(total, weight, surge) == expected


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({"a": 1, "b": 1}, {"a": 50, "b": 50}),
        ({"a": 2, "b": 1}, {"a": 67, "b": 33}),
        ({"a": 1, "b": 1, "c": 1}, {"a": 34, "b": 33, "c": 33}),
        ({"a": 999, "b": 1}, {"a": 99, "b": 1}),  # a serving revision never shows 0
        ({"a": 3, "b": 0}, {"a": 100}),
        ({}, {}),
    ],
)
def test_apportion(counts, expected):
    assert apportion(counts) == expected


@given(**TWO_REVISIONS)
def test_the_making_room_budget_adds_no_pod_and_keeps_all_but_one_ready(
    total, surge, unavailable, old, new, ready_old, ready_new
):
    """Making room (rollout.whenFull: MakeRoom) moves with no surge and at least one pod that
    may go, from wherever the policy's own budget left the pods: no pod above what there is or
    the total, and never fewer than total - max(maxUnavailable, 1) of them ready."""
    decided = {"a": old, "b": new}
    ready = {"a": min(ready_old, old), "b": min(ready_new, new)}
    room = max(unavailable, 1)
    got = move({"a": 0, "b": total}, decided, ready, total=total, surge=0, unavailable=room)
    assert sum(got.values()) <= max(total, sum(decided.values()))
    kept_ready = sum(min(ready[r], got[r]) for r in got)
    assert kept_ready >= min(sum(ready.values()), total - room)
    assert got["a"] <= old
