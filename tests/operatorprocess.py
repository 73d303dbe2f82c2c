"""The operator as a real process against the local control plane, with its own identity so
the audit log tells its requests apart: started, stopped and paused by the integration, node
and reliability tests (a module of its own, not a conftest, so that no other directory's
conftest shadows it when the suites run in one session)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import harness

ROOT = Path(__file__).resolve().parents[1]
OPERATOR_USER = "torchship-operator"


@dataclass
class RunningOperator:
    process: subprocess.Popen
    log: Path
    metrics_port: int
    health_port: int
    user: str = OPERATOR_USER

    def leads(self) -> bool:
        """Its log says it took the leader election's Lease."""
        return "leading: holding Lease" in self.log.read_text()

    def writes(self, control_plane, namespace: str, since: str = "") -> list[dict]:
        """The operator's write requests in `namespace` after `since`: Events and the leader
        election's Lease excluded."""
        return [
            e
            for e in control_plane.audit_events()
            if e["user"]["username"] == self.user
            and e.get("objectRef", {}).get("namespace") == namespace
            and e.get("objectRef", {}).get("resource") not in ("events", "leases")
            and e["requestReceivedTimestamp"] > since
        ]


def install_crds(control_plane) -> None:
    control_plane.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    control_plane.wait_established()


def start_operator(
    control_plane,
    log: Path,
    user: str = OPERATOR_USER,
    groups: tuple[str, ...] = ("system:masters",),
    **env: str,
):
    kubeconfig = env.pop("KUBECONFIG", None) or str(control_plane.kubeconfig_for(user, groups))
    started = harness.start_operator({**control_plane.env, "KUBECONFIG": kubeconfig}, log, **env)
    return RunningOperator(
        process=started.proc,
        log=log,
        metrics_port=started.metrics_port,
        health_port=started.health_port,
        user=user,
    )


def stop_operator(running: RunningOperator) -> None:
    harness.stop(running.process, 20)


@contextlib.contextmanager
def paused(running: RunningOperator) -> Iterator[None]:
    """Freeze a running operator (SIGSTOP) so that another one can be observed alone; it
    catches up from its watches when it continues."""
    running.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        running.process.send_signal(signal.SIGCONT)
