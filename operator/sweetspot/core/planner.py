"""The planner: what a study should do next, decided from plain data, with no I/O.

Input: the spec and what was observed (`sweetspot.core.records.Observed`: the trials as the Optuna storage records them,
the data-efficiency points, and the runs a runtime observes). Output: a `Decision` with the actions to apply and
the study's phase. The one plan-and-apply loop (`sweetspot.core.loop`) calls `plan()`, applies its actions through a
runtime and the store, and calls it again; every action is idempotent and only proposed while the recorded state
lacks its effect, so re-planning after a crash repeats nothing.

How early results are judged is the study's policy (`sweetspot.core.policies`): what the sampler learns from, whether a
trial that passed its early stage trains to the end at once, and which trials are promoted once the search has
judged them all. Then, with `dataEfficiency`, the best configuration is retrained on nested samples of growing
size.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.api.status import Phase, Reason
from sweetspot.contract import DEFAULT_GRACE_SECONDS, Hyperparameters, StageResult
from sweetspot.core.budget import Ledger, hours
from sweetspot.core.objectives import final_values, is_multi, minimised
from sweetspot.core.policies.guard import judged_fraction
from sweetspot.core.policies.registry import policy_of
from sweetspot.core.records import (
    Action,
    AskTrials,
    Decision,
    FailTrial,
    Observed,
    Outcome,
    RecordFailure,
    RecordFinal,
    RecordInfeasible,
    RecordSweepPoint,
    RunKey,
    StageName,
    StartRun,
    StopRun,
    SweepView,
    TrialView,
    counted,
)

GRACE_MARGIN_SECONDS = 10
"""On top of twice the slowest step and checkpoint write measured: a slower node, a slower volume."""
MAX_DISRUPTIONS = 5
"""A stage preempted or lost this many times fails its trial: something is wrong beyond bad luck."""

# --- decisions ---------------------------------------------------------------------------------------------


def _better(direction: str, a: float, b: float) -> bool:
    return a < b if direction == "minimize" else a > b


def _meets_target(spec: FineTuneStudySpec, value: float) -> bool:
    target = spec.objective.target
    if target is None:
        return False
    return value <= target if spec.objective.direction == "minimize" else value >= target


def best_trial(spec: FineTuneStudySpec, trials: Sequence[TrialView]) -> TrialView | None:
    """The trial with the best final score on the objective."""
    metric, direction = spec.objective.metric, spec.objective.direction
    finished = [t for t in trials if t.final is not None and not t.infeasible]
    best: TrialView | None = None
    for trial in finished:
        assert trial.final is not None
        if best is None or _better(direction, trial.final.metric(metric), best.final.metric(metric)):  # type: ignore[union-attr]
            best = trial
    if best is not None and is_multi(spec):
        # A tie on quality goes to the cheaper trial (costs in the spec's order): the best stays on the Pareto front.
        tied = [t for t in finished if t.final.metric(metric) == best.final.metric(metric)]  # type: ignore[union-attr]
        best = min(tied, key=lambda t: (minimised(spec, final_values(spec, t) or []), t.number))
    return best


def _result_outcome(result: StageResult) -> Outcome | None:
    """A stage's outcome: its last evaluation (an early stage's judged point, a final or full stage's end)."""
    evaluation = max(result.evaluations, key=lambda e: e.step, default=None)
    return Outcome.from_evaluation(result, evaluation) if evaluation else None


class _Planner:
    def __init__(self, spec: FineTuneStudySpec, observed: Observed) -> None:
        self.spec = spec
        self.observed = observed
        self.actions: list[Action] = []
        self.trials = {t.number: t for t in observed.trials}
        self.sweep = {(s.samples, s.repeat): s for s in observed.sweep}
        self.running = [r for r in observed.runs if r.phase == "running"]
        self.slots = spec.search.parallelism - len(self.running)
        self.policy = policy_of(spec)
        self.retries = spec.trial.retries
        self.judging = self.policy.judging(spec, observed.trials)
        self.budget = Ledger(spec, observed)
        self.budget_bound = False
        """The budget kept something from starting (a stage, a trial, the rest of the search)."""
        self.grace = grace_seconds(
            [o for t in observed.trials for o in (t.early, t.final)] + [s.outcome for s in observed.sweep]
        )

    def running_key(self, kind: str, number: int, stage: str, repeat: int = 0) -> bool:
        return any(
            r.key.kind == kind and r.key.number == number and r.key.stage == stage and r.key.repeat == repeat
            for r in self.running
        )

    # Results of finished runs become records, once.
    def ingest(self) -> str | None:
        """Turn finished runs into records; returns a message when the input itself is bad (the study fails; each
        rejecting stage is recorded as failed, and its trial fails with it)."""
        bad_input = None
        for run in self.observed.runs:
            if run.phase == "running":
                continue
            key = run.key
            if key.kind == "trial":
                trial = self.trials.get(key.number)
                if trial is None or key.attempt in trial.failed_attempts.get(
                    key.stage, frozenset()
                ) | trial.disrupted_attempts.get(key.stage, frozenset()):
                    continue
                done = trial.early if key.stage == "early" else trial.final
                if done is not None or trial.infeasible or trial.state in ("failed", "pruned"):
                    continue
            else:
                point = self.sweep.get((key.number, key.repeat))
                if point is not None and (
                    point.outcome is not None or key.attempt in point.failed_attempts | point.disrupted_attempts
                ):
                    continue
            result = run.result
            if run.phase == "succeeded" and result is not None and result.status == "ok":
                self.record_success(key, result)
            elif result is not None and result.status == "oom" and key.kind == "trial":
                self.actions.append(RecordInfeasible(key.number, key.stage, result.message))
            elif result is not None and result.status == "bad_input":
                bad_input = bad_input or f"{key}: {result.message}"
                self.actions.append(RecordFailure(key, f"bad input: {result.message}", disruption=False))
                if key.kind == "trial":
                    self.actions.append(
                        FailTrial(key.number, f"stage {key.stage} rejected its input: {result.message}")
                    )
            else:
                reason = run.reason or (result.message if result else "") or "the run failed without a result"
                self.actions.append(RecordFailure(key, reason, disruption=run.phase == "disrupted"))
        return bad_input

    def record_success(self, key: RunKey, result: StageResult) -> None:
        outcome = _result_outcome(result)
        if outcome is None:
            self.actions.append(RecordFailure(key, "the run reported no evaluation", disruption=False))
            return
        if key.kind == "sweep":
            self.actions.append(RecordSweepPoint(key.number, outcome, key.repeat))
        elif key.stage == "early":
            self.actions.append(self.policy.record_early(self.spec, key.number, outcome, self.observed.trials))
        else:
            value = self.policy.final_value(self.spec, outcome, self.trials.get(key.number))
            self.actions.append(RecordFinal(key.number, outcome, value))

    def start(self, key: RunKey, params: Mapping[str, Any], **extra: Any) -> bool:
        if self.slots <= 0 or self.spec.suspend:
            return False
        if not self.budget.affords(key):
            self.budget_bound = self.budget_bound or self.budget.priced(key)
            return False
        self.budget.charge(key)
        self.actions.append(StartRun(key, params, grace_seconds=self.grace, **extra))
        self.slots -= 1
        return True

    def advance_trial(self, trial: TrialView, stage: StageName) -> None:
        """Start (or retry) `stage` of a trial unless it runs, or fail the trial when retries are spent."""
        if self.running_key("trial", trial.number, stage):
            return
        failures = len(trial.failed_attempts.get(stage, frozenset()))
        disruptions = len(trial.disrupted_attempts.get(stage, frozenset()))
        if failures > self.retries:
            self.actions.append(FailTrial(trial.number, f"stage {stage} failed {failures} times: {trial.reason}"))
            return
        if disruptions >= MAX_DISRUPTIONS:
            self.actions.append(FailTrial(trial.number, f"stage {stage} was disrupted {disruptions} times"))
            return
        key = RunKey("trial", trial.number, stage, trial.attempts(stage))
        if trial.state == "running" and self.budget_refuses(key):
            self.actions.append(
                FailTrial(trial.number, f"not started: the budget cannot pay for its {stage} stage", cancelled=True)
            )
            return
        self.start(key, trial.params, early_fraction=self.early_fraction(trial))

    def early_fraction(self, trial: TrialView) -> float | None:
        """Where a trial's early stage stops: where its early result was judged (its final resumes there), else
        where the agreement guard judges new trials; None while that is `atFraction`."""
        fraction = judged_fraction(self.spec, trial.early) if trial.early is not None else self.judging.fraction
        return None if fraction == self.spec.search.early_evaluation.at_fraction else fraction

    def budget_refuses(self, key: RunKey) -> bool:
        """Nothing runs, a slot is free, and the budget still cannot pay for `key`: the stage never starts (a
        running stage may yet cost less than estimated, so only an idle study gives up on one)."""
        refused = not self.running and self.slots > 0 and not self.spec.suspend and self.budget.refuses(key)
        self.budget_bound = self.budget_bound or refused
        return refused

    def decide(self) -> Decision:
        spec = self.spec
        stop = self.stop_or_record()
        if stop is not None:
            return stop
        if spec.data_efficiency is not None and spec.data_efficiency.params is not None:
            return self.fixed_sweep()

        trials = sorted(self.trials.values(), key=lambda t: t.number)
        best = best_trial(spec, trials)
        target_reached = best is not None and _meets_target(spec, best.final.metric(spec.objective.metric))  # type: ignore[union-attr]
        searching = self.search_decision(trials, target_reached)
        if searching is not None:
            return searching
        if not target_reached:
            promoting = self.promotion_decision(trials)
            if promoting is not None:
                return promoting
        return self.last_decision(trials, target_reached)

    def stop_or_record(self) -> Decision | None:
        """The study fails on bad input or too many failed trials; recorded results are applied (and the study
        re-planned) before anything is decided on them."""
        search = self.spec.search
        bad_input = self.ingest()
        if bad_input:
            return self.fail(Reason.BAD_INPUT, f"a trial stage rejected its input: {bad_input}")
        if self.actions:
            # Record first and re-plan: decisions below must see the recorded state.
            return Decision(tuple(self.actions), self.current_phase(), Reason.RECORDING, replan=True)
        failed = [t for t in self.trials.values() if t.state == "failed" and not t.infeasible and not t.cancelled]
        if len(failed) > search.max_failed_trials:
            return self.fail(
                Reason.TOO_MANY_FAILED_TRIALS,
                f"{len(failed)} trials failed (maxFailedTrials {search.max_failed_trials}); last: {failed[-1].reason}",
            )
        return None

    def search_decision(self, trials: list[TrialView], target_reached: bool) -> Decision | None:
        """Stages of trials under way, then new trials while the budget lasts; None once the search is over."""
        spec, search = self.spec, self.spec.search
        live = [t for t in trials if t.state == "running" and not t.infeasible]
        # Trials already under way: finish their stages first (prune: survivors' finals; both: pending earlies).
        for trial in live:
            if trial.early is None:
                self.advance_trial(trial, "early")
            elif self.policy.final_during_search and trial.final is None and not target_reached:
                self.advance_trial(trial, "final")
        if self.actions and any(isinstance(a, FailTrial) for a in self.actions):
            return Decision(tuple(self.actions), "Searching", Reason.RECORDING, replan=True)

        # New trials, while the budget lasts.
        asked = len(counted(trials))
        searching = asked < search.max_trials and not target_reached
        if searching and self.budget.closed():
            searching, self.budget_bound = False, True
        if searching:
            wanted = self.budget.new_trials(min(self.slots, search.max_trials - asked))
            if wanted > 0 and not spec.suspend:
                self.actions.append(AskTrials(wanted))
            return self.decision("Searching", Reason.TRIALS_RUNNING, f"{asked}/{search.max_trials} trials asked")
        finals_now = self.policy.final_during_search and not target_reached
        if any(t.early is None or (finals_now and t.final is None) for t in live):
            return self.decision("Searching", Reason.TRIALS_RUNNING, "waiting for the last trials")
        return None

    def promotion_decision(self, trials: list[TrialView]) -> Decision | None:
        """Train the trials the policy promotes to the end; None once they all have a final."""
        waiting = False
        for trial in self.policy.promoted(self.spec, trials):
            if trial.final is None and trial.state != "failed":
                waiting = True
                self.advance_trial(trial, "final")
        if waiting:
            return self.decision(
                "Promoting", Reason.PROMOTED_TRIALS_RUNNING, "training the best early trials to the end"
            )
        return None

    def last_decision(self, trials: list[TrialView], target_reached: bool) -> Decision:
        """The search is over: the learning curve of the best configuration, then the end of the study."""
        spec = self.spec
        best = best_trial(spec, trials)
        if best is None or best.final is None:
            if self.running:
                return self.decision("Promoting", Reason.WAITING_FOR_RUNS, "waiting for running stages")
            return self.fail(Reason.NO_TRIAL_FINISHED, "no trial finished its final stage")
        if spec.data_efficiency is not None:
            hold = best.final.planned_steps if spec.data_efficiency.hold == "steps" else None
            sweeping = self.sweep_decision(best.params, hold, best.final, f"learning curve of trial {best.number}")
            if sweeping is not None:
                return sweeping
        if self.running:
            return self.decision(self.current_phase(), Reason.WAITING_FOR_RUNS, "waiting for running stages")
        reason = Reason.TARGET_REACHED if target_reached else Reason.STUDY_COMPLETE
        return Decision(tuple(self.actions), "Succeeded", reason, f"best trial {best.number}")

    def fixed_sweep(self) -> Decision:
        """`hyperparameters: fixed`: the learning curve alone, no search."""
        efficiency = self.spec.data_efficiency
        assert efficiency is not None and efficiency.params is not None
        params = dict(efficiency.params)
        hold = None
        if efficiency.hold == "steps":  # every size gets the steps the largest one takes at these epochs
            values = Hyperparameters.model_validate(params)
            per_epoch = math.ceil(max(efficiency.sizes()) / (values.batch_size * values.gradient_accumulation_steps))
            hold = values.max_steps or per_epoch * values.epochs
        sweeping = self.sweep_decision(params, hold, None, "learning curve of the fixed configuration")
        if sweeping is not None:
            return sweeping
        if self.running:
            return self.decision("Sweeping", Reason.WAITING_FOR_RUNS, "waiting for running stages")
        return Decision(tuple(self.actions), "Succeeded", Reason.STUDY_COMPLETE, "learning curve measured")

    def sweep_decision(
        self, params: Mapping[str, Any], hold_steps: int | None, reuse: Outcome | None, message: str
    ) -> Decision | None:
        """Measure every size x repeat once (a finished final run of the same size and seed is reused); None
        once every point is in."""
        efficiency = self.spec.data_efficiency
        assert efficiency is not None
        waiting = False
        for samples in efficiency.sizes():
            for repeat in range(efficiency.repeats):
                point = self.sweep.get((samples, repeat), SweepView(samples, repeat=repeat))
                if point.outcome is not None:
                    continue
                if repeat == 0 and reuse is not None and reuse.samples == samples:
                    # The best trial's final run is this very point (same rows, same steps): reuse it.
                    self.actions.append(RecordSweepPoint(samples, reuse))
                    continue
                waiting = True
                if self.running_key("sweep", samples, "full", repeat):
                    continue
                if len(point.failed_attempts) > self.retries or len(point.disrupted_attempts) >= MAX_DISRUPTIONS:
                    where = f"{samples} samples" + (f" (repeat {repeat})" if repeat else "")
                    return self.fail(Reason.SWEEP_FAILED, f"the data-efficiency run for {where} kept failing")
                attempt = len(point.failed_attempts) + len(point.disrupted_attempts)
                self.start(
                    RunKey("sweep", samples, "full", attempt, repeat),
                    params,
                    samples=samples,
                    max_steps=hold_steps,
                    seed_offset=repeat,
                )
        if waiting or any(isinstance(a, RecordSweepPoint) for a in self.actions):
            return self.decision("Sweeping", Reason.SWEEP_RUNNING, message)
        return None

    def current_phase(self) -> Phase:
        if any(r.key.kind == "sweep" for r in self.running) or any(s.outcome for s in self.sweep.values()):
            return "Sweeping"
        if any(r.key.stage == "final" for r in self.running) and not self.policy.final_during_search:
            return "Promoting"
        return "Searching" if self.trials or self.running else "Pending"

    def decision(self, phase: Phase, reason: str, message: str) -> Decision:
        if self.spec.suspend:
            return Decision(tuple(self.actions), phase, Reason.SUSPENDED, "spec.suspend is true: no new stages start")
        return Decision(tuple(self.actions), phase, reason, message)

    def fail(self, reason: str, message: str) -> Decision:
        failing = {a.trial for a in self.actions if isinstance(a, FailTrial)}
        ending = wind_down(self.observed, reason, failing)
        return Decision((*self.actions, *ending), "Failed", reason, message)

    def within_budget(self, decision: Decision) -> Decision:
        """A study the budget stopped ends `BudgetExhausted`: once nothing runs and nothing more can start, with its
        best trial (`Succeeded`), or `Failed` when no trial was trained to the end."""
        if not self.budget_bound or decision.replan or decision.reason == Reason.TARGET_REACHED:
            return decision
        if decision.phase == "Failed":
            if decision.reason != Reason.NO_TRIAL_FINISHED:
                return decision
            return self.fail(Reason.BUDGET_EXHAUSTED, "the budget ran out before a trial was trained to the end")
        busy = any(isinstance(a, StartRun | AskTrials | FailTrial) for a in decision.actions)
        if not decision.finished and (self.running or busy or self.spec.suspend):
            return decision
        assert self.budget.limit is not None
        spent = f"{hours(self.budget.committed)} of {hours(self.budget.limit)} gpuHours"
        best = best_trial(self.spec, list(self.trials.values()))
        if best is not None:
            message = f"the budget pays for no further stage ({spent} used); best trial {best.number}"
        elif any(s.outcome is not None for s in self.sweep.values()):
            message = f"the budget pays for no further stage ({spent} used); learning curve measured in part"
        else:
            return self.fail(
                Reason.BUDGET_EXHAUSTED, f"the budget ran out before a trial was trained to the end ({spent} used)"
            )
        return replace(decision, phase="Succeeded", reason=Reason.BUDGET_EXHAUSTED, message=message)


def plan(spec: FineTuneStudySpec, observed: Observed) -> Decision:
    """The next actions for a study, and its phase."""
    planner = _Planner(spec, observed)
    return planner.within_budget(planner.decide())


def wind_down(observed: Observed, reason: str, failing: frozenset[int] | set[int] = frozenset()) -> tuple[Action, ...]:
    """What a failed study still owes: every running stage stopped, and every unfinished trial failed with the
    study's reason (`failing`: trials already being failed for a reason of their own). Empty once done, so it is
    proposed again on every pass over a failed study: a crash halfway through repeats only what is missing."""
    stopped = {r.key.number for r in observed.runs if r.phase == "running" and r.key.kind == "trial"}
    cancel = tuple(
        FailTrial(t.number, f"stopped: the study failed ({reason})", cancelled=True)
        for t in sorted(observed.trials, key=lambda t: t.number)
        if t.number not in failing
        and not t.infeasible
        and (t.state == "running" or (t.number in stopped and t.state != "failed"))
    )
    stops = tuple(StopRun(r.key, reason) for r in observed.runs if r.phase == "running")
    return (*cancel, *stops)


def past_budget(spec: FineTuneStudySpec, trials: Sequence[TrialView]) -> list[int]:
    """Trials asked before `maxTrials` was lowered below their number: they finish what they run, and no new
    trial starts while they exceed the budget (only the trials `counted` toward it)."""
    asked = sorted(t.number for t in counted(trials))
    return asked[spec.search.max_trials :]


def grace_seconds(outcomes: Iterable[Outcome | None]) -> int:
    """How long a stage's stop may take before SIGKILL: twice the slowest step plus checkpoint write the study's
    finished stages measured, plus a margin; Kubernetes' default 30 s until something is measured, and never less."""
    slowest = max((o.step_seconds + o.checkpoint_seconds for o in outcomes if o is not None), default=0.0)
    return max(DEFAULT_GRACE_SECONDS, math.ceil(2 * slowest) + GRACE_MARGIN_SECONDS)
