"""Fixtures for the runtime tests (helpers live in served.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from served import Runtime

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A runtime test that hangs fails with a traceback instead of stalling the suite."""
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.timeout(180))


@pytest.fixture
def start_runtime(tmp_path: Path) -> Iterator[Callable[..., Runtime]]:
    """`start_runtime(**env)`: a started runtime (not yet ready); all are stopped afterwards."""
    started: list[Runtime] = []

    def start(**env: str) -> Runtime:
        runtime = Runtime(tmp_path, env)
        started.append(runtime)
        return runtime

    yield start
    for runtime in started:
        runtime.stop()
