"""The planner: what a study should do next, decided from plain data, with no I/O.

Input: the spec, the trials as the Optuna storage records them (`TrialView`), the data-efficiency points
(`SweepView`) and the runs an executor observes (`RunView`: Kubernetes Jobs or local subprocesses). Output:
a `Decision` with the actions to apply and the study's phase. The operator and the local mode both call
`plan()` in a loop, apply its actions through their shells, and call it again; every action is idempotent
and only proposed while the recorded state lacks its effect, so re-planning after a crash repeats nothing.

Policies (`spec.search.earlyEvaluation.policy`):
- `proxy`: every trial runs the `early` stage; its early score is what the sampler learns from; once
  `maxTrials` trials have early scores, the best `promoteTopK` run the `final` stage; the best final wins.
- `prune`: a trial's early score is reported to an Optuna pruner; survivors run `final` at once, and the
  final score is what the sampler learns from.
Then, with `dataEfficiency`, the best configuration is retrained on nested samples of growing size.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sweetspot.api import FineTuneStudySpec, Phase
from sweetspot.contract import Evaluation, Hyperparameters, StageResult

MAX_DISRUPTIONS = 5
"""A stage preempted or lost this many times fails its trial: something is wrong beyond bad luck."""

StageName = Literal["early", "final", "full"]
TrialState = Literal["running", "complete", "pruned", "failed"]
RunPhase = Literal["running", "succeeded", "failed", "disrupted"]


# --- what the planner reads ------------------------------------------------------------------------------


def _untrained(result: StageResult) -> dict[str, float] | None:
    """The scores of the step-0 evaluation (the model before training), if the stage made one."""
    first = next((e for e in result.evaluations if e.step == 0), None)
    if first is None:
        return None
    scores = {"f1": first.f1, "precision": first.precision, "recall": first.recall, "accuracy": first.accuracy}
    return scores | ({"validJsonRate": first.json_valid_rate} if first.json_valid_rate is not None else {})


@dataclass(frozen=True)
class Outcome:
    """A finished stage, as recorded in the storage (scores over applicable pairs; see `contract.Evaluation`)."""

    accuracy: float
    loss: float
    token_f1: float
    attribute_accuracy: Mapping[str, float]
    seconds: float
    gpu_seconds: float
    step: int
    planned_steps: int
    samples: int
    # Records written before F1 existed load with zeros here.
    f1: float = 0.0
    precision: float = 0.0
    recall: float = 0.0
    macro_f1: float = 0.0
    attribute_f1: Mapping[str, float] = field(default_factory=dict)
    """F1 per attribute, most gold values first."""
    attribute_support: Mapping[str, int] = field(default_factory=dict)
    category_f1: Mapping[str, float] = field(default_factory=dict)
    null_baseline: float | None = None
    """Accuracy of always answering null on the same rows (its F1 is 0)."""
    valid_json_rate: float | None = None
    rows: int = 0
    """Validation rows scored."""
    subsampled: bool = False
    """Scored on a fixed subsample of the validation rows (an early evaluation of a generative model)."""
    zero_shot: Mapping[str, float] | None = None
    """The base model's scores before any training (`spec.model.zeroShot`): f1, precision, recall, accuracy and,
    for generative models, validJsonRate."""

    @classmethod
    def from_evaluation(cls, result: StageResult, evaluation: Evaluation) -> Outcome:
        return cls(
            accuracy=evaluation.accuracy,
            loss=evaluation.loss,
            token_f1=evaluation.token_f1,
            attribute_accuracy=dict(evaluation.attribute_accuracy),
            seconds=result.seconds,
            gpu_seconds=result.gpu_seconds,
            step=evaluation.step,
            planned_steps=result.planned_steps,
            samples=result.samples,
            f1=evaluation.f1,
            precision=evaluation.precision,
            recall=evaluation.recall,
            macro_f1=evaluation.macro_f1,
            attribute_f1=dict(evaluation.attribute_f1),
            attribute_support=dict(evaluation.attribute_support),
            category_f1=dict(evaluation.category_f1),
            null_baseline=result.null_baseline,
            valid_json_rate=evaluation.json_valid_rate,
            rows=evaluation.rows,
            subsampled=evaluation.subsampled,
            zero_shot=_untrained(result),
        )

    @property
    def compute_seconds(self) -> float:
        """GPU-seconds on GPUs, wall seconds on CPUs: what the stage cost."""
        return self.gpu_seconds or self.seconds

    def describe(self) -> str:
        """The headline scores in a few words (Events, progress lines)."""
        return f"F1 {self.f1:.4f} (P {self.precision:.3f} R {self.recall:.3f}), accuracy {self.accuracy:.4f}"

    def metric(self, name: str) -> float:
        return {"f1": self.f1, "accuracy": self.accuracy, "tokenF1": self.token_f1, "loss": self.loss}[name]


@dataclass(frozen=True)
class TrialView:
    number: int
    state: TrialState
    params: Mapping[str, Any]
    early: Outcome | None = None
    final: Outcome | None = None
    infeasible: bool = False
    """The configuration ran out of memory: recorded as a constraint violation, not a failure."""
    failed_attempts: Mapping[str, frozenset[int]] = field(default_factory=dict)
    disrupted_attempts: Mapping[str, frozenset[int]] = field(default_factory=dict)
    reason: str = ""
    cancelled: bool = False
    """Failed because its study failed (its stage was stopped), not by itself: not counted against
    `maxFailedTrials` if the study is resumed."""

    def attempts(self, stage: str) -> int:
        return len(self.failed_attempts.get(stage, frozenset())) + len(self.disrupted_attempts.get(stage, frozenset()))


@dataclass(frozen=True)
class SweepView:
    samples: int
    outcome: Outcome | None = None
    repeat: int = 0
    """Which run at this size (each repeat samples its nested rows with another seed)."""
    failed_attempts: frozenset[int] = frozenset()
    disrupted_attempts: frozenset[int] = frozenset()


@dataclass(frozen=True)
class RunKey:
    """`t3-early`, `t3-final-r1` (second attempt), `s200-full`, `s200-rep1-full` (second repeat at 200 samples):
    one stage run of a trial or sweep point."""

    kind: Literal["trial", "sweep"]
    number: int
    """Trial number, or sample size for a sweep point."""
    stage: StageName
    attempt: int = 0
    repeat: int = 0

    def __str__(self) -> str:
        prefix = f"t{self.number}" if self.kind == "trial" else f"s{self.number}"
        prefix += f"-rep{self.repeat}" if self.repeat else ""
        return f"{prefix}-{self.stage}" + (f"-r{self.attempt}" if self.attempt else "")

    @classmethod
    def parse(cls, text: str) -> RunKey:
        match = re.fullmatch(r"([ts])(\d+)(?:-rep(\d+))?-(early|final|full)(?:-r(\d+))?", text)
        if not match or (match[1] == "t" and match[3]):
            raise ValueError(f"not a run key: {text!r}")
        kind: Literal["trial", "sweep"] = "trial" if match[1] == "t" else "sweep"
        return cls(kind, int(match[2]), match[4], int(match[5] or 0), int(match[3] or 0))  # type: ignore[arg-type]


@dataclass(frozen=True)
class RunView:
    key: RunKey
    phase: RunPhase
    result: StageResult | None = None
    reason: str = ""


@dataclass(frozen=True)
class Observed:
    trials: Sequence[TrialView] = ()
    sweep: Sequence[SweepView] = ()
    runs: Sequence[RunView] = ()


# --- what the planner decides ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AskTrials:
    """Ask the sampler for `count` new trials (their early stage starts on the next plan)."""

    count: int


@dataclass(frozen=True)
class StartRun:
    key: RunKey
    params: Mapping[str, Any]
    samples: int | None = None
    max_steps: int | None = None
    seed_offset: int = 0
    """Added to the study's seed: another repeat of a sweep point draws other (still nested) rows."""


@dataclass(frozen=True)
class StopRun:
    key: RunKey
    reason: str


@dataclass(frozen=True)
class RecordEarly:
    """Proxy: store the early outcome and tell the sampler `value`. Prune: store it and report `value` to the
    pruner, which may prune the trial."""

    trial: int
    outcome: Outcome
    value: float
    report_to_pruner: bool


@dataclass(frozen=True)
class RecordFinal:
    """Store the final outcome; with `value`, also tell it (prune policy: the trial completes)."""

    trial: int
    outcome: Outcome
    value: float | None


@dataclass(frozen=True)
class RecordInfeasible:
    trial: int
    stage: StageName
    message: str


@dataclass(frozen=True)
class RecordFailure:
    key: RunKey
    reason: str
    disruption: bool


@dataclass(frozen=True)
class FailTrial:
    trial: int
    reason: str
    cancelled: bool = False
    """The study failed and this trial with it (see `TrialView.cancelled`)."""


@dataclass(frozen=True)
class RecordSweepPoint:
    samples: int
    outcome: Outcome
    repeat: int = 0


Action = (
    AskTrials
    | StartRun
    | StopRun
    | RecordEarly
    | RecordFinal
    | RecordInfeasible
    | RecordFailure
    | FailTrial
    | RecordSweepPoint
)


@dataclass(frozen=True)
class Decision:
    actions: tuple[Action, ...]
    phase: Phase
    reason: str
    """CamelCase reason for the phase (it becomes a condition's reason)."""
    message: str = ""

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


# --- decisions ---------------------------------------------------------------------------------------------


def early_signal(spec: FineTuneStudySpec) -> str:
    """The metric early results are judged by: chosen, or validation loss (`auto`; see `EarlyEvaluation.signal`)."""
    early = spec.search.early_evaluation
    return "loss" if early.signal == "auto" else early.signal


def study_direction(spec: FineTuneStudySpec) -> Literal["maximize", "minimize"]:
    """What the Optuna study optimises: the early signal under `proxy`, the objective under `prune`."""
    if spec.search.early_evaluation.policy == "proxy":
        return "minimize" if early_signal(spec) == "loss" else "maximize"
    return spec.objective.direction


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
    return best


def promoted(spec: FineTuneStudySpec, trials: Sequence[TrialView]) -> list[TrialView]:
    """Proxy policy: the best `promoteTopK` trials by early score (feasible ones only)."""
    signal, direction = early_signal(spec), study_direction(spec)
    scored = [t for t in trials if t.early is not None and not t.infeasible and t.state != "failed"]
    ranked = sorted(
        scored,
        key=lambda t: (t.early.metric(signal) if direction == "minimize" else -t.early.metric(signal), t.number),  # type: ignore[union-attr]
    )
    return ranked[: spec.search.early_evaluation.promote_top_k]


def _result_outcome(result: StageResult, stage: str, fraction: float) -> Outcome | None:
    evaluation = result.evaluation_at(fraction if stage == "early" else 1.0)
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
        self.proxy = spec.search.early_evaluation.policy == "proxy"
        self.retries = spec.trial.retries

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
        fraction = self.spec.search.early_evaluation.at_fraction
        outcome = _result_outcome(result, key.stage, fraction)
        if outcome is None:
            self.actions.append(RecordFailure(key, "the run reported no evaluation", disruption=False))
            return
        if key.kind == "sweep":
            self.actions.append(RecordSweepPoint(key.number, outcome, key.repeat))
        elif key.stage == "early":
            signal = early_signal(self.spec) if self.proxy else self.spec.objective.metric
            self.actions.append(
                RecordEarly(key.number, outcome, outcome.metric(signal), report_to_pruner=not self.proxy)
            )
        else:
            value = None if self.proxy else outcome.metric(self.spec.objective.metric)
            self.actions.append(RecordFinal(key.number, outcome, value))

    def start(self, key: RunKey, params: Mapping[str, Any], **extra: Any) -> bool:
        if self.slots <= 0 or self.spec.suspend:
            return False
        self.actions.append(StartRun(key, params, **extra))
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
        self.start(RunKey("trial", trial.number, stage, trial.attempts(stage)), trial.params)

    def decide(self) -> Decision:
        spec, search = self.spec, self.spec.search
        bad_input = self.ingest()
        if bad_input:
            return self.fail("BadInput", f"a trial stage rejected its input: {bad_input}")
        pending_records = bool(self.actions)
        if pending_records:
            # Record first and re-plan: decisions below must see the recorded state.
            return Decision(tuple(self.actions), self.current_phase(), "Recording")

        failed = [t for t in self.trials.values() if t.state == "failed" and not t.infeasible and not t.cancelled]
        if len(failed) > search.max_failed_trials:
            return self.fail(
                "TooManyFailedTrials",
                f"{len(failed)} trials failed (maxFailedTrials {search.max_failed_trials}); last: {failed[-1].reason}",
            )

        if spec.data_efficiency is not None and spec.data_efficiency.params is not None:
            return self.fixed_sweep()

        trials = sorted(self.trials.values(), key=lambda t: t.number)
        best = best_trial(spec, trials)
        target_reached = best is not None and _meets_target(spec, best.final.metric(spec.objective.metric))  # type: ignore[union-attr]
        live = [t for t in trials if t.state == "running" and not t.infeasible]

        # 1. Trials already under way: finish their stages first (prune: survivors' finals; both: pending earlies).
        for trial in live:
            if trial.early is None:
                self.advance_trial(trial, "early")
            elif not self.proxy and trial.final is None and not target_reached:
                self.advance_trial(trial, "final")
        if self.actions and any(isinstance(a, FailTrial) for a in self.actions):
            return Decision(tuple(self.actions), "Searching", "Recording")

        # 2. New trials, while the budget lasts.
        searching = len(trials) < search.max_trials and not target_reached
        if searching:
            wanted = min(self.slots, search.max_trials - len(trials))
            if wanted > 0 and not spec.suspend:
                self.actions.append(AskTrials(wanted))
            return self.decision("Searching", "TrialsRunning", f"{len(trials)}/{search.max_trials} trials asked")
        if any(t.early is None or (not self.proxy and t.final is None and not target_reached) for t in live):
            return self.decision("Searching", "TrialsRunning", "waiting for the last trials")

        # 3. Proxy: train the best early trials to the end.
        if self.proxy and not target_reached:
            waiting = False
            for trial in promoted(spec, trials):
                if trial.final is None and trial.state != "failed":
                    waiting = True
                    self.advance_trial(trial, "final")
            if waiting:
                return self.decision("Promoting", "PromotedTrialsRunning", "training the best early trials to the end")

        best = best_trial(spec, trials)
        if best is None or best.final is None:
            if self.running:
                return self.decision("Promoting", "WaitingForRuns", "waiting for running stages")
            return self.fail("NoTrialFinished", "no trial finished its final stage")

        # 4. The learning curve of the best configuration.
        if spec.data_efficiency is not None:
            hold = best.final.planned_steps if spec.data_efficiency.hold == "steps" else None
            sweeping = self.sweep_decision(best.params, hold, best.final, f"learning curve of trial {best.number}")
            if sweeping is not None:
                return sweeping
        if self.running:
            return self.decision(self.current_phase(), "WaitingForRuns", "waiting for running stages")
        reason = "TargetReached" if target_reached else "StudyComplete"
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
            return self.decision("Sweeping", "WaitingForRuns", "waiting for running stages")
        return Decision(tuple(self.actions), "Succeeded", "StudyComplete", "learning curve measured")

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
                    return self.fail("SweepFailed", f"the data-efficiency run for {where} kept failing")
                attempt = len(point.failed_attempts) + len(point.disrupted_attempts)
                self.start(
                    RunKey("sweep", samples, "full", attempt, repeat),
                    params,
                    samples=samples,
                    max_steps=hold_steps,
                    seed_offset=repeat,
                )
        if waiting or any(isinstance(a, RecordSweepPoint) for a in self.actions):
            return self.decision("Sweeping", "SweepRunning", message)
        return None

    def current_phase(self) -> Phase:
        if any(r.key.kind == "sweep" for r in self.running) or any(s.outcome for s in self.sweep.values()):
            return "Sweeping"
        if any(r.key.stage == "final" for r in self.running) and self.proxy:
            return "Promoting"
        return "Searching" if self.trials or self.running else "Pending"

    def decision(self, phase: Phase, reason: str, message: str) -> Decision:
        if self.spec.suspend:
            return Decision(tuple(self.actions), phase, "Suspended", "spec.suspend is true: no new stages start")
        return Decision(tuple(self.actions), phase, reason, message)

    def fail(self, reason: str, message: str) -> Decision:
        failing = {a.trial for a in self.actions if isinstance(a, FailTrial)}
        ending = wind_down(self.observed, reason, failing)
        return Decision((*self.actions, *ending), "Failed", reason, message)


def plan(spec: FineTuneStudySpec, observed: Observed) -> Decision:
    """The next actions for a study, and its phase."""
    return _Planner(spec, observed).decide()


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
    trial starts while they exceed the budget."""
    return sorted(t.number for t in trials if t.number >= spec.search.max_trials)
