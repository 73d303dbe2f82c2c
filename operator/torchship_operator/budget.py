"""The replica budget of a rollout, as pure arithmetic on counts: how far one pass may move the
replicas toward their targets (at most total + maxSurge pods, at least total - maxUnavailable of
them ready), how a canary step splits the pods, and how traffic weights follow ready pods.
rollout/ decides the targets; this module only counts."""

from __future__ import annotations

from collections.abc import Mapping


def transition(
    targets: Mapping[str, int],
    *,
    decided: Mapping[str, int],
    ready: Mapping[str, int],
    created: Mapping[str, float],
    stable: str,
    desired: str,
    total: int,
    surge: int,
    unavailable: int,
) -> dict[str, int]:
    """One move from the replicas last `decided` toward `targets`, within the budget. With
    surge 0 the old revision gives way first ("make room first"). `ready` counts the ready pods
    that stay; `created` orders the revisions going down, oldest first."""
    new = {r: decided.get(r, 0) for r in targets}
    ready = {r: ready.get(r, 0) for r in targets}
    # Pods that are not ready serve nothing: revisions going down drop those first.
    for r, target in targets.items():
        if new[r] > target:
            new[r] = max(target, ready[r])
    # Then ready pods, while enough stay ready. The stable revision gives way last.
    spare = sum(min(ready[r], new[r]) for r in new) - (total - unavailable)
    order = sorted((r for r in targets if r != stable), key=lambda r: (created.get(r, 0.0), r))
    for r in [*order, stable] if stable in targets else order:
        take = min(max(0, spare), new[r] - targets[r])
        if take > 0:
            new[r] -= take
            spare -= take
    # Revisions going up take the room left under total + surge, the desired first.
    room = total + surge - sum(new.values())
    for r in sorted(targets, key=lambda r: (r != desired, r != stable)):
        grow = min(max(0, room), targets[r] - new[r])
        if grow > 0:
            new[r] += grow
            room -= grow
    return new


def weights_by_ready(
    replicas: Mapping[str, int], ready: Mapping[str, int], stable: str, desired: str
) -> dict[str, int]:
    """Weights as the Service spreads requests: in proportion to the ready pods that stay.
    With nothing ready yet, the revision that holds the pods, so weights never go empty."""
    counts = {
        r: min(ready.get(r, 0), n)
        for r, n in sorted(replicas.items(), key=lambda kv: (kv[0] != stable, kv[0]))
        if n > 0
    }
    weights = apportion(counts)
    if weights:
        return weights
    fallback = max(sorted(replicas), key=lambda r: (replicas[r], r == stable, r == desired))
    return {fallback: 100}


def canary_split(total: int, weight: int, surge: int) -> tuple[int, int]:
    """(canary pods, stable pods) for a step below 100%: weight% of total, rounded half up,
    at least one canary pod, and at least one stable pod (beside a lone canary pod when
    total is 1, if maxSurge leaves room for it)."""
    if total <= 0:
        return 0, 0
    canary = max(1, (total * weight + 50) // 100)
    if total >= 2:
        canary = min(canary, total - 1)
        return canary, total - canary
    return 1, 1 if surge >= 1 else 0


def apportion(counts: Mapping[str, int]) -> dict[str, int]:
    """Whole percentages in proportion to the positive counts, summing to 100 (largest
    remainder, ties in the given order); every positive count gets at least 1."""
    positive = {k: v for k, v in counts.items() if v > 0}
    if not positive:
        return {}
    whole = sum(positive.values())
    shares = {k: 100 * v // whole for k, v in positive.items()}
    order = list(positive)
    by_remainder = sorted(order, key=lambda k: (-(100 * positive[k] % whole), order.index(k)))
    for k in by_remainder[: 100 - sum(shares.values())]:
        shares[k] += 1
    if len(shares) <= 100:
        for k in order:
            if shares[k] == 0:
                donor = max(order, key=lambda d: (shares[d], -order.index(d)))
                shares[donor] -= 1
                shares[k] = 1
    return shares


# The rollout phases during which a rollout moves pods (status.rollout.phase).
UNDER_WAY = frozenset({"Progressing", "Paused"})


def allowed_unavailable(
    max_unavailable: int, make_room: bool, rollout: Mapping[str, object] | None
) -> int:
    """The ready pods the total may lack before Available turns False: maxUnavailable; with
    whenFull MakeRoom, one at least while a rollout is under way (an old pod gives its GPU up
    before the new pod on it is ready). A steady service counts by maxUnavailable alone."""
    under_way = (rollout or {}).get("phase") in UNDER_WAY
    if make_room and under_way:
        return max(max_unavailable, 1)
    return max_unavailable
