"""Leader election's decisions: which step a replica takes on what it read of the Lease."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torchship_operator.election import (
    LEASE_DURATION,
    Record,
    Sighting,
    Step,
    lease,
    sighted,
    step,
)

ME, OTHER = "operator-a_1_ab12cd34", "operator-b_7_ff00ee11"


def record(holder: str = OTHER, renewed: str = "t1", duration: float = 15) -> Record:
    return Record(holder, duration, renewed, transitions=2, resource_version="41")


@pytest.mark.parametrize(
    ("sighting", "now", "expected"),
    [
        (None, 0.0, Step.CREATE),  # no Lease yet
        (Sighting(record(holder=ME), 100.0), 200.0, Step.RENEW),  # ours, however old
        (Sighting(record(), 100.0), 100.0, Step.WAIT),  # another's, just seen
        (Sighting(record(), 100.0), 114.9, Step.WAIT),  # ... within its duration
        (Sighting(record(), 100.0), 115.0, Step.TAKE),  # ... left unrenewed for it
        (Sighting(record(holder=""), 100.0), 100.0, Step.TAKE),  # released
        (Sighting(record(duration=1), 100.0), 101.0, Step.TAKE),  # a short lease lapses soon
    ],
)
def test_the_step_on_what_was_read(sighting, now, expected):
    assert step(sighting, ME, now) is expected


def test_a_renewal_seen_restarts_the_wait_and_an_unchanged_record_does_not():
    first = sighted(None, record(renewed="t1"), now=100.0)
    again = sighted(first, record(renewed="t1"), now=110.0)
    assert again.since == 100.0  # the holder has not renewed since it was first seen
    renewed = sighted(again, record(renewed="t2"), now=112.0)
    assert renewed.since == 112.0
    assert step(renewed, ME, 120.0) is Step.WAIT  # 115.0 would have lapsed without it
    assert sighted(renewed, None, now=113.0) is None  # deleted: create it again


def test_a_new_holder_is_a_change_even_with_the_same_renewal_time():
    first = sighted(None, record(holder=OTHER, renewed="t1"), now=100.0)
    assert sighted(first, record(holder="c", renewed="t1"), now=105.0).since == 105.0


@given(
    since=st.floats(0, 1e6),
    elapsed=st.floats(0, 1e3),
    duration=st.integers(1, 3600),
    holder=st.sampled_from([ME, OTHER, ""]),
)
def test_another_live_holder_is_never_displaced(since, elapsed, duration, holder):
    decided = step(Sighting(record(holder=holder, duration=duration), since), ME, since + elapsed)
    if holder == OTHER and elapsed < duration:
        assert decided is Step.WAIT
    else:
        assert decided in (Step.RENEW, Step.TAKE)


def test_clocks_are_never_compared_only_the_local_time_since_a_change():
    # A renewTime from a clock far ahead or behind makes no difference: it is only compared
    # with the previous one.
    ahead = sighted(None, record(renewed="2099-01-01T00:00:00.000000Z"), now=100.0)
    assert step(ahead, ME, 100.0 + LEASE_DURATION) is Step.TAKE


def test_the_lease_written_and_read_back():
    now = datetime(2026, 12, 2, 15, 4, 5, 123456, tzinfo=UTC)
    body = lease("torchship", "ops", ME, 3, now, LEASE_DURATION)
    assert body["metadata"] == {"name": "torchship", "namespace": "ops"}
    assert body["spec"] == {
        "holderIdentity": ME,
        "leaseDurationSeconds": 15,
        "leaseTransitions": 3,
        "renewTime": "2026-12-02T15:04:05.123456Z",  # MicroTime
    }
    body["metadata"]["resourceVersion"] = "9"
    assert Record.of(body) == Record(ME, 15.0, "2026-12-02T15:04:05.123456Z", 3, "9")
    released = Record.of(lease("torchship", "ops", None, 3, now, 1) | {"metadata": {}})
    assert released.holder == "" and released.duration == 1.0
