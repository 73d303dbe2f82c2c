"""Why the process could not go on, where Kubernetes shows it: the log and the pod's termination
message (`kubectl describe pod`)."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

log = logging.getLogger("torchship.runtime")


def report_failure(message: str, path: str) -> None:
    """The reason in the log and in the pod's termination message (Kubernetes keeps 4 KiB: the
    head, which says what failed, before the library's own words)."""
    log.error("%s", message)
    target = Path(path)
    if target.parent.is_dir():
        with contextlib.suppress(OSError):
            target.write_text(message[:4000])
