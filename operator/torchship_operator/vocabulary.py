"""The words the pure modules (render, rollout, status, reconcile) share: label keys, the Event
type, one-line messages, the cause a condition tells, and a revision's Deployment read as a view.

A Deployment read here always has `spec.replicas` once stored (the API server defaults it to 1);
a body without it, as tests or a hand-written object may have, means the same 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

LABEL_MS = "torchship.dev/modelservice"
LABEL_REVISION = "torchship.dev/revision"
LABEL_VERSION = "app.kubernetes.io/version"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "torchship"

EventType = Literal["Normal", "Warning"]
# Condition and event messages quote failures from the cluster; each is one bounded line.
MESSAGE_LIMIT = 300
DEFAULT_REPLICAS = 1  # the API server's default for a Deployment's spec.replicas
# The reason conditions give while old pods give up their GPUs to the new revision's pending
# pods (rollout.whenFull: MakeRoom): it explains those pods' wait.
MAKING_ROOM = "MakingRoom"
# Canary analysis (rollout.analysis): a step whose pause is over waits for a passing
# measurement; a step whose measurements failed aborts the rollout.
AWAITING_ANALYSIS = "AwaitingAnalysis"
ANALYSIS_FAILED = "AnalysisFailed"


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event about the ModelService, for `kubectl describe`."""

    type: EventType
    reason: str
    message: str


CauseKind = Literal["waiting", "failed"]


@dataclass(frozen=True)
class Cause:
    """Why a ModelService is not where its spec says, in a condition's words: `waiting` on time
    or a person (Progressing stays True), or `failed` (Ready False, Degraded True)."""

    kind: CauseKind
    reason: str  # CamelCase, the condition's reason
    message: str = ""

    @classmethod
    def waiting(cls, reason: str, message: str = "") -> Cause:
        return cls("waiting", reason, message)

    @classmethod
    def failed(cls, reason: str, message: str = "") -> Cause:
        return cls("failed", reason, message)


def one_line(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """`text` on one line (whitespace runs become one space), cut to `limit` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


@dataclass(frozen=True)
class DeploymentView:
    """One revision's Deployment as observed, reduced to what rollout and status read."""

    name: str
    revision: str
    version: str | None
    replicas: int  # spec.replicas: what was last decided for it
    ready: int
    available: int
    up_to_date: bool  # the Deployment controller has seen its latest spec
    created: str | None  # metadata.creationTimestamp (RFC 3339)

    @classmethod
    def of(cls, deployment: Mapping[str, Any]) -> DeploymentView:
        meta = deployment["metadata"]
        spec = deployment.get("spec") or {}
        status = deployment.get("status") or {}
        labels = meta.get("labels") or {}
        return cls(
            name=meta.get("name", ""),
            revision=labels.get(LABEL_REVISION, ""),
            version=labels.get(LABEL_VERSION),
            replicas=spec.get("replicas", DEFAULT_REPLICAS),
            ready=status.get("readyReplicas", 0),
            available=status.get("availableReplicas", 0),
            up_to_date=status.get("observedGeneration", 0) >= meta.get("generation", 0),
            created=meta.get("creationTimestamp"),
        )


def revision_of(obj: Mapping[str, Any]) -> str | None:
    """The revision label of a child (Deployment, Pod)."""
    return (obj["metadata"].get("labels") or {}).get(LABEL_REVISION)
