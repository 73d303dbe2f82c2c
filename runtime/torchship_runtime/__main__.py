"""`python -m torchship_runtime` (`torchship-runtime`): serve one model until told to stop, or,
as `torchship-runtime fetch`, only download it (a pod's init container).

The fetch imports neither torch nor the servers: an init container that waits for a model
cache, or finds the model there, is done in a fraction of a second rather than after torch's
import. Serving is in serving.py.
"""

from __future__ import annotations

import os

# Before torch loads OpenMP: idle OpenMP threads sleep rather than spin. A pod shares its cores
# (with the event loop, under a CPU quota): spinning threads take the time the event loop needs
# and stall the forward pass at every barrier. Set OMP_WAIT_POLICY=ACTIVE to opt out.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import contextlib
import logging
import sys
from pathlib import Path

from . import prefetch
from .settings import TERMINATION_MESSAGE_PATH, from_args
from .termination import report_failure


def fetch_only(argv: list[str]) -> int:
    """`torchship-runtime fetch`: the model into the cache, its report as the termination
    message (the pod's init container)."""
    settings = from_args(argv)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(message)s")
    try:
        report = prefetch.run(settings)
    except Exception as error:
        report_failure(
            f"the model could not be fetched from {settings.model_uri}: "
            f"{type(error).__name__}: {error}",
            settings.termination_message_path,
        )
        return 1
    with contextlib.suppress(OSError):
        prefetch.write_report(report, settings.termination_message_path)
    return 0


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["fetch"]:
        sys.exit(fetch_only(args[1:]))
    from .shutdown import install_early_handlers

    install_early_handlers()
    try:
        settings = from_args(argv)
    except Exception as error:
        path = os.environ.get("TORCHSHIP_TERMINATION_MESSAGE_PATH", TERMINATION_MESSAGE_PATH)
        print(f"torchship-runtime: invalid settings: {error}", file=sys.stderr)
        with contextlib.suppress(OSError):
            if Path(path).parent.is_dir():
                Path(path).write_text(f"torchship-runtime: invalid settings: {error}"[-4000:])
        sys.exit(2)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    import uvloop

    from .serving import serve

    sys.exit(uvloop.run(serve(settings)))


if __name__ == "__main__":
    main()
