"""The plan-and-apply loop, once for every shell: the operator's reconcile, the local mode and the HPO replay.

`settle` asks the planner what to do, applies each action (records and asks through the store, starts and stops
through the runtime), and plans again while the actions it applied enable more (a record changes what the next plan
sees; an asked trial gets its first stage on the next pass), until nothing more can happen now. Each applied action
is described once (`describe`): the operator posts the note as an Event, the local mode prints it as a progress line;
so is each step of the agreement guard that a recorded final caused (`widened_note`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import assert_never

from sweetspot.api.resource import FineTuneStudy
from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.api.status import EventReason
from sweetspot.core.planner import plan
from sweetspot.core.policies.base import Judging
from sweetspot.core.policies.registry import judging, policy_of
from sweetspot.core.records import (
    Action,
    AskTrials,
    Decision,
    FailTrial,
    Observed,
    RecordEarly,
    RecordFailure,
    RecordFinal,
    RecordInfeasible,
    RecordSweepPoint,
    RunView,
    StartRun,
    StopRun,
)
from sweetspot.core.runtime import Runtime
from sweetspot.core.store import Store

MAX_PASSES = 8
"""Plan-apply passes per `settle`: records first, then the starts they enable, without waiting for the world."""


@dataclass(frozen=True)
class Note:
    """One applied action or phase change, in words: an Event on a cluster, a progress line on a laptop."""

    reason: str
    """CamelCase (the Event's reason)."""
    message: str
    warning: bool = False
    action: Action | None = None
    """The action described (None for a phase change)."""


Hear = Callable[[Note], None]


def describe(action: Action, asked: list[int] | None = None, where: str = "") -> Note:
    """What an applied action did; `asked`: the trials an `AskTrials` got, `where`: where a `StartRun` runs."""
    match action:
        case AskTrials():
            return Note(EventReason.TRIALS_ASKED, f"trial(s) {', '.join(map(str, asked or []))} asked", action=action)
        case StartRun(key=key, params=params):
            values = json.dumps(dict(params), default=str, separators=(", ", ": "))
            return Note(EventReason.STAGE_STARTED, f"{key} started ({where}) {values}", action=action)
        case StopRun(key=key, reason=reason):
            return Note(EventReason.STAGE_STOPPED, f"{key} stopped: {reason}", action=action)
        case RecordEarly(trial=trial, outcome=outcome):
            return Note(
                EventReason.EARLY_RESULT,
                f"trial {trial}: early {outcome.describe()}, loss {outcome.loss:.4f}",
                False,
                action,
            )
        case RecordFinal(trial=trial, outcome=outcome, value=value):
            reason = EventReason.TRIAL_PROMOTED if value is None else EventReason.TRIAL_COMPLETE
            return Note(reason, f"trial {trial}: final {outcome.describe()}, loss {outcome.loss:.4f}", False, action)
        case RecordSweepPoint(samples=samples, outcome=outcome, repeat=repeat):
            which = f"{samples} samples" + (f" (repeat {repeat})" if repeat else "")
            return Note(EventReason.CURVE_POINT, f"{which}: {outcome.describe()}", action=action)
        case RecordInfeasible(trial=trial, message=message):
            return Note(EventReason.TRIAL_OUT_OF_MEMORY, f"trial {trial}: {message[:200]}", True, action)
        case RecordFailure(key=key, reason=reason, disruption=disruption):
            return Note(
                EventReason.STAGE_DISRUPTED if disruption else EventReason.STAGE_FAILED,
                f"{key}: {reason}",
                not disruption,
                action,
            )
        case FailTrial(trial=trial, reason=reason):
            return Note(EventReason.TRIAL_FAILED, f"trial {trial}: {reason[:300]}", True, action)
        case _:
            assert_never(action)


def resumed_note(action: Action) -> Note | None:
    """A recorded stage that ran again after a disruption (`StageResumed`): where it resumed, what that cost."""
    match action:
        case RecordEarly(trial=trial, outcome=outcome):
            which = f"trial {trial} early"
        case RecordFinal(trial=trial, outcome=outcome):
            which = f"trial {trial} final"
        case RecordSweepPoint(samples=samples, outcome=outcome, repeat=repeat):
            which = f"{samples} samples" + (f" (repeat {repeat})" if repeat else "")
        case _:
            return None
    if outcome.resumed_from_step is None:
        return None
    return Note(
        EventReason.STAGE_RESUMED,
        f"{which}: resumed from step {outcome.resumed_from_step} after a disruption, "
        f"{outcome.lost_seconds:.1f} compute-seconds lost",
        action=action,
    )


def phase_note(decision: Decision) -> Note:
    """A phase the study entered (a finished study's note is `StudySucceeded` or `StudyFailed`, with its reason)."""
    if not decision.finished:
        return Note(EventReason.PHASE_CHANGED, f"{decision.phase}: {decision.message or decision.reason}")
    # A finished study says why (StudyComplete, TargetReached, BudgetExhausted, ...), the reason of its conditions.
    said = f"{decision.phase} ({decision.reason})" + (f": {decision.message}" if decision.message else "")
    return Note(
        EventReason.STUDY_SUCCEEDED if decision.phase == "Succeeded" else EventReason.STUDY_FAILED,
        said,
        decision.phase == "Failed",
    )


def widened_note(spec: FineTuneStudySpec, judged: Judging) -> Note:
    """The agreement guard widened the early fraction (see `sweetspot.core.policies.guard`)."""
    minimum = policy_of(spec).min_agreement(spec)
    return Note(EventReason.EARLY_EVALUATION_WIDENED, judged.widenings[-1].describe(minimum or 0.0))


def apply(study: FineTuneStudy, store: Store, runtime: Runtime, action: Action) -> Note:
    """Apply one action where it belongs and describe it."""
    match action:
        case StartRun():
            return describe(action, where=runtime.start(study, action))
        case StopRun():
            runtime.stop(study, action.key)
            return describe(action)
        case (
            AskTrials()
            | RecordEarly()
            | RecordFinal()
            | RecordInfeasible()
            | RecordFailure()
            | FailTrial()
            | RecordSweepPoint()
        ):  # the study's records: the store's
            return describe(action, asked=store.apply(action))
        case _:
            assert_never(action)


def settle(study: FineTuneStudy, store: Store, runtime: Runtime, hear: Hear, max_passes: int = MAX_PASSES) -> Decision:
    """Plan and apply until nothing more can happen now; returns the last decision.

    The storage records the phase that the last pass leaves (a pass that leads to another would write a phase the
    next overwrites a moment later), except a failure, which is recorded before what it takes: a crash halfway
    through failing finds the study Failed, and the next pass winds it down the rest of the way. The runs are
    observed again only after a pass started or stopped one: a run that finishes meanwhile is seen by the next
    `settle` (the operator is woken by its Job's event)."""
    runs: list[RunView] | None = None
    decision = Decision((), "Pending", "")
    level: int | None = None
    for attempt in range(max_passes):
        trials, sweep = store.snapshot()
        judged = judging(study.spec, trials)
        if level is not None and judged.level > level:  # a final recorded by the pass before moved the guard
            hear(widened_note(study.spec, judged))
        level = judged.level
        runs = runtime.observe(study) if runs is None else runs
        decision = plan(study.spec, Observed(trials, sweep, runs))
        changed = store.set_phase(decision, study) if decision.phase == "Failed" else False
        for action in decision.actions:
            hear(apply(study, store, runtime, action))
            if (resumed := resumed_note(action)) is not None:
                hear(resumed)
            if isinstance(action, StartRun | StopRun):
                runs = None
        more = decision.replan or any(isinstance(a, AskTrials) for a in decision.actions)
        if decision.phase != "Failed" and (not more or attempt == max_passes - 1):
            changed = store.set_phase(decision, study)
        if changed and not decision.replan:
            hear(phase_note(decision))
        if not more:
            break
    return decision
