"""Small helpers shared by the cluster tests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 60, interval: float = 0.5) -> T:
    """Poll until `predicate` returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {result!r})")
        time.sleep(interval)


def get_json(control_plane, *args: str) -> Any:
    return json.loads(control_plane.kubectl("get", *args, "-o", "json").stdout)


def condition(obj: dict, kind: str) -> dict:
    for cond in obj.get("status", {}).get("conditions", []) or []:
        if cond["type"] == kind:
            return cond
    return {}
