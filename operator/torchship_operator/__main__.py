"""`python -m torchship_operator`: run the operator with settings from the environment."""

from __future__ import annotations

import logging

import kopf

from . import election, handlers  # noqa: F401 (importing registers the kopf handlers)
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
        # Every replica watches; leader election on a Lease decides which one reconciles.
        standalone=True,
        # kopf's default identity asks the password database for the user, which a container
        # running as an arbitrary uid does not list.
        identity=election.IDENTITY,
        liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz",
    )


if __name__ == "__main__":
    main()
