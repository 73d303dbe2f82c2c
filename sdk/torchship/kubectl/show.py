"""What the plugin prints: text for a person (kubectl's column style) and JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ..client import InferResult
from ..kube import ModelService, Revision

GAP = "   "


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns, three spaces apart; the last column is never padded."""
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        lines.append(GAP.join(padded).rstrip())
    return "\n".join(lines)


def age(timestamp: str | None, now: datetime | None = None) -> str:
    """kubectl's short ages: 45s, 3m, 2h, 4d."""
    if not timestamp:
        return "<unknown>"
    then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def rollout_line(ms: ModelService, revisions: Sequence[Revision]) -> str:
    rollout, policy = ms.rollout, ms.spec.rollout
    names = {r.revision: r.label for r in revisions}
    parts = [policy.strategy, rollout.get("phase", "Unknown")]
    steps = policy.steps or []
    if policy.strategy == "Canary" and rollout.get("phase") in ("Progressing", "Paused"):
        step = int(rollout.get("step", 0))
        where = f"{steps[step].weight}%" if step < len(steps) else "100%"
        parts.append(f"step {step} of {len(steps)} ({where})")
    if stable := rollout.get("stableRevision"):
        parts.append(f"stable {names.get(stable, stable)}")
    target = rollout.get("targetRevision")
    if target and target != stable:
        parts.append(f"target {names.get(target, target)}")
    return GAP.join(parts)


def status_text(
    ms: ModelService, revisions: Sequence[Revision], events: Sequence[Mapping[str, Any]]
) -> str:
    status = ms.status
    ready = ms.condition("Ready")
    ready_line = (
        f"{ready.status}   {ready.reason}" + (f": {ready.message}" if ready.message else "")
        if ready
        else "Unknown   the operator has not reported yet"
    )
    ready_pods = (status.ready_replicas if status else None) or 0
    lines = [
        f"Name:        {ms.name}",
        f"Namespace:   {ms.metadata.namespace}",
        f"Version:     {ms.spec.model.version or '<none>'}",
        f"Ready:       {ready_line}",
        f"Replicas:    {ready_pods} ready of {ms.spec.total_replicas} desired",
        f"Rollout:     {rollout_line(ms, revisions)}",
    ]
    if status and status.url:
        lines.append(f"URL:         {status.url}")
    lines += ["", "Revisions:"]
    rows = [
        [
            r.revision,
            r.version or "<none>",
            r.role or "-",
            f"{r.weight}%",
            f"{r.ready}/{r.replicas}",
            r.phase or "-",
            age(r.created),
        ]
        for r in revisions
    ]
    headers = ["REVISION", "VERSION", "ROLE", "WEIGHT", "READY/DESIRED", "PHASE", "AGE"]
    lines.append(indent(table(headers, rows)) if rows else "  <none>")
    lines += ["", "Conditions:"]
    conditions = (status.conditions if status else None) or []
    rows = [[c.type, c.status, c.reason, c.message] for c in conditions]
    headers = ["TYPE", "STATUS", "REASON", "MESSAGE"]
    lines.append(indent(table(headers, rows)) if rows else "  <none>")
    lines += ["", "Events:"]
    rows = [
        [
            age(e.get("lastTimestamp") or e.get("eventTime")),
            e.get("type"),
            e.get("reason"),
            e.get("message", ""),
        ]
        for e in events
    ]
    lines.append(indent(table(["AGE", "TYPE", "REASON", "MESSAGE"], rows)) if rows else "  <none>")
    return "\n".join(lines)


def indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


def status_json(
    ms: ModelService, revisions: Sequence[Revision], events: Sequence[Mapping[str, Any]]
) -> str:
    doc = {
        "name": ms.name,
        "namespace": ms.metadata.namespace,
        "generation": ms.metadata.generation,
        "spec": ms.spec.model_dump(mode="json", by_alias=True, exclude_none=True),
        "status": ms.status.model_dump(mode="json", by_alias=True, exclude_none=True)
        if ms.status
        else None,
        "revisions": [asdict(r) for r in revisions],
        "events": [
            {k: e.get(k) for k in ("type", "reason", "message", "lastTimestamp", "count")}
            for e in events
        ],
    }
    return json.dumps(doc, indent=2)


def history_text(revisions: Sequence[Revision]) -> str:
    rows = [
        [
            r.revision,
            r.version or "<none>",
            r.role or "-",
            "yes" if r.current else "",
            f"{r.weight}%",
            f"{r.ready}/{r.replicas}",
            age(r.created),
        ]
        for r in revisions
    ]
    headers = ["REVISION", "VERSION", "ROLE", "SPEC", "WEIGHT", "READY/DESIRED", "AGE"]
    return table(headers, rows) if rows else "no revisions"


def result_text(result: InferResult) -> str:
    lines = [
        f"model {result.model_name}"
        + (f" version {result.model_version}" if result.model_version else "")
    ]
    for name, array in result.outputs.items():
        lines.append(f"{name}   {array.dtype}   shape {list(array.shape)}")
        lines.append(np.array2string(array, threshold=200, precision=6))
    return "\n".join(lines)


def result_json(result: InferResult) -> str:
    outputs = {
        name: {
            "shape": list(array.shape),
            "dtype": str(array.dtype),
            "data": [v.decode(errors="replace") for v in array.reshape(-1)]
            if array.dtype == object
            else array.tolist(),
        }
        for name, array in result.outputs.items()
    }
    doc = {
        "model_name": result.model_name,
        "model_version": result.model_version,
        "outputs": outputs,
    }
    return json.dumps(doc)
