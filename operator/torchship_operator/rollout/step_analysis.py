"""Step analysis (Canary with spec.rollout.analysis): each paused step's record, the
measurements counted into it and judged, when it fails the rollout, and its summary."""

from __future__ import annotations

from dataclasses import replace

from ..analysis import StepAnalysis, judge
from ..vocabulary import ANALYSIS_FAILED, one_line
from .context import Pass
from .policy import Step


def opened(run: Pass, index: int, step: Step) -> None:
    """The step was just reached: its record begins, empty, when the rollout is analysed."""
    if run.policy.analysis is not None:
        record = StepAnalysis(step=index, weight=step.weight)
        run.state = replace(run.state, analysis=(*run.state.analysis, record))


def record(run: Pass, index: int) -> StepAnalysis | None:
    """The current step's record, when the step is analysed."""
    if run.policy.analysis is None:
        return None
    records = run.state.analysis
    if records and records[-1].step == index:
        return records[-1]
    return None


def failed(run: Pass, index: int) -> bool:
    """Count the new measurement, if any, into the step's record: True once the step's
    failures exceed failureLimit. A window that began before the step was reached, or ended
    before the last one counted, is not this step's; one that is empty or not over yet is no
    measurement (so the pass that reaches a step never counts one, and a second pass on the
    same inputs counts nothing new)."""
    current, m, policy = record(run, index), run.measurement, run.policy.analysis
    if current is None or m is None or policy is None or not m.start < m.end <= run.now:
        return False
    paused_at = run.state.paused_at if run.state.paused_at is not None else run.now
    if m.start < paused_at or (current.measured_at is not None and m.end <= current.measured_at):
        return False
    verdict = judge(policy, m)
    current = current.counted(m, verdict)
    run.state = replace(run.state, analysis=(*run.state.analysis[:-1], current))
    run.verdict = verdict.message
    if verdict.result != "Failed":
        return False
    run.emit("Warning", "AnalysisMeasurementFailed", f"step {index}: {verdict.message}")
    return current.failed > policy.failure_limit


def passed(run: Pass, index: int) -> bool:
    """No analysis, or one of the step's measurements passed."""
    if run.policy.analysis is None:
        return True
    current = record(run, index)
    return current is not None and current.passed > 0


def failure(run: Pass) -> tuple[str, str]:
    """The reason and message of a rollout that failed its analysis."""
    last = run.state.analysis[-1]
    measured = last.passed + last.failed + last.inconclusive
    return ANALYSIS_FAILED, one_line(
        f"revision {run.seen.name(run.desired)} failed analysis at step {last.step} "
        f"({last.weight}%): {last.failed} of {measured} measurements failed; "
        f"last: {run.verdict}"
    )


def summary(current: StepAnalysis) -> str:
    """A step's measurements so far, for a person: how many passed and failed, and the last."""
    if current.last is None:
        return "no measurement yet"
    figures = f"canary {current.canary.describe()}" if current.canary else ""
    if current.stable is not None:
        figures += f", stable {current.stable.describe()}"
    return (
        f"{current.passed} passed, {current.failed} failed, {current.inconclusive} inconclusive; "
        f"last {current.last} ({figures})"
    )
