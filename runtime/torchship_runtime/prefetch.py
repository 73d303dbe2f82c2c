"""`torchship-runtime fetch`: download the model into the cache directory and exit.

The operator runs it as the pod's init container, so the download is a phase Kubernetes shows
on its own (the container's start and end), and the runtime then finds the model in the cache.
Its report, one JSON object (bytes, seconds, whether the cache had it already), is the
container's termination message: the operator's "model fetched" Event reads it from there.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from .settings import RuntimeSettings
from .sources import cache_path, fetch

log = logging.getLogger("torchship.runtime")
POLL_SECONDS = 0.5


def size_of(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def wait_for(path: Path, seconds: float) -> None:
    """Until `path` exists: a shared cache's fill Job moves the finished file into place."""
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the model cache has no {path.name} after {seconds:g} s: is its fill Job done?"
            )
        time.sleep(POLL_SECONDS)


def run(settings: RuntimeSettings) -> dict[str, Any]:
    """Fetch the settings' model; the report of what it took."""
    uri = settings.model_uri
    started = time.perf_counter()
    remote = uri.startswith(("http://", "https://", "s3://"))
    cached = remote and cache_path(settings.model_cache_dir, uri).exists()
    if remote and settings.fetch_wait_seconds and not cached:
        log.info("waiting for the model cache to hold %s", uri)
        wait_for(cache_path(settings.model_cache_dir, uri), settings.fetch_wait_seconds)
        cached = True  # filled by another: nothing downloaded here
    path = fetch(uri, cache_dir=settings.model_cache_dir, pvc_root=settings.pvc_root)
    report = {
        "bytes": size_of(path),
        "seconds": round(time.perf_counter() - started, 3),
        "cached": cached,
    }
    log.info("fetched %s: %s", uri, report)
    return report


def write_report(report: dict[str, Any], path: str) -> None:
    target = Path(path)
    if target.parent.is_dir():
        target.write_text(json.dumps(report, separators=(",", ":")))
