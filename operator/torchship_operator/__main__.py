"""`python -m torchship_operator`: run the operator with settings from the environment."""

from __future__ import annotations

import logging
import os
import random
import socket

import kopf

from . import handlers  # noqa: F401 (importing registers the kopf handlers)
from .settings import Settings


def main() -> None:
    settings = Settings.from_env()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    kopf.run(
        clusterwide=settings.clusterwide,
        namespaces=settings.namespaces,
        standalone=not settings.leader_election,
        peering_name=settings.peering_name,
        # The highest priority acts, the others wait: leader election through kopf peering.
        priority=random.randint(1, 1_000_000),
        # kopf's default identity asks the password database for the user, which a container
        # running as an arbitrary uid does not list.
        identity=f"{socket.gethostname()}/{os.getpid()}/{random.randbytes(4).hex()}",
        liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz",
    )


if __name__ == "__main__":
    main()
