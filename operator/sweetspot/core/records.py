"""What the planner reads and what it decides: plain, immutable data shared by the planner, the policies, the
plan-and-apply loop and every shell (no I/O, no logic beyond parsing a run key).

Read: the trials as the Optuna storage records them (`TrialView`), the data-efficiency points (`SweepView`) and
the runs a runtime observes (`RunView`: Kubernetes Jobs or TrainJobs, local subprocesses, a replayed table).
Decided: a `Decision` with the actions to apply (`Action`) and the study's phase.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sweetspot.api.status import Phase
from sweetspot.contract import DEFAULT_GRACE_SECONDS, Evaluation, StageResult

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


def _early_curve(result: StageResult, last: Evaluation) -> list[dict[str, float]]:
    """The evaluations of an early stage up to `last` (the model before training left out), if more than one."""
    points = [e for e in result.evaluations if 0 < e.step <= last.step]
    if result.stage != "early" or len(points) < 2:
        return []
    return [
        {"fraction": e.fraction, "loss": e.loss, "f1": e.f1, "accuracy": e.accuracy, "tokenF1": e.token_f1}
        for e in sorted(points, key=lambda e: e.step)
    ]


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
    judged_at: float | None = None
    """The fraction of the planned steps an early stage was asked to stop at (None in records kept before it was,
    and for other stages)."""
    curve: Sequence[Mapping[str, float]] = field(default_factory=list)
    """An early stage's own curve when it evaluated more than once (`earlyEvaluation.curvePoints`): per evaluation
    its `fraction` of the planned steps, `loss`, `f1`, `accuracy` and `tokenF1`, in order."""
    resumed_from_step: int | None = None
    """The stage ran again after a disruption and continued its checkpoint of this step (0: it had none)."""
    lost_seconds: float = 0.0
    """Compute the disruptions of this stage cost (training done twice, restarts): see `StageResult`."""
    step_seconds: float = 0.0
    checkpoint_seconds: float = 0.0
    """The stage's slowest step and checkpoint write: what a stop's grace period must cover."""
    trainable_parameters: int = 0
    """The adapter's weights (LoRA and head); 0 in records kept before stages reported it."""
    peak_memory_bytes: int = 0
    """The stage's peak memory (GPU memory allocated, or resident memory on CPUs); 0: not reported."""
    ms_per_row: float | None = None
    """Inference milliseconds per validation row of the evaluation this outcome is (None: not reported)."""
    tokens_per_second: float | None = None
    """Training tokens per second of the stage (padding excluded; None: not reported)."""
    mfu: float | None = None
    """The stage's model FLOPs utilisation on CUDA (None on CPUs)."""

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
            judged_at=result.early_fraction,
            curve=_early_curve(result, evaluation),
            resumed_from_step=result.resumed_from_step,
            lost_seconds=result.lost_seconds,
            step_seconds=result.step_seconds,
            checkpoint_seconds=result.checkpoint_seconds,
            trainable_parameters=result.trainable_parameters,
            peak_memory_bytes=result.peak_memory_bytes,
            ms_per_row=evaluation.ms_per_row,
            tokens_per_second=result.tokens_per_second,
            mfu=result.mfu,
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
    source: str = ""
    """Where the trial came from by warm start (`namespace/name trial N`); empty for a trial this study proposed."""
    reused: bool = False
    """Its recorded results were copied from `source` (warm start `results`): it runs no stage it has a result for
    and does not count toward `maxTrials`."""
    copied: frozenset[str] = frozenset()
    """The stages of a reused trial whose results were copied; one it runs here later (the final of a trial copied
    judged early only, when promoted) is this study's compute."""

    def attempts(self, stage: str) -> int:
        return len(self.failed_attempts.get(stage, frozenset())) + len(self.disrupted_attempts.get(stage, frozenset()))


def counts_toward_max_trials(trial: TrialView) -> bool:
    """Whether a trial is one of the `maxTrials` this study asks: every trial but those reused by warm start (their
    results were copied from an earlier study; none was asked or trained here)."""
    return not trial.reused


def counted(trials: Iterable[TrialView]) -> list[TrialView]:
    """The trials that count toward `maxTrials` (`counts_toward_max_trials`), in the order given."""
    return [t for t in trials if counts_toward_max_trials(t)]


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
    early_fraction: float | None = None
    """Where the trial's early stage stops (its final resumes from there): set once the agreement guard widened;
    None is `earlyEvaluation.atFraction`."""
    grace_seconds: int = DEFAULT_GRACE_SECONDS
    """How long a stop may take before SIGKILL (the pod's `terminationGracePeriodSeconds`; local mode's wait): the
    stage finishes its step and writes a checkpoint (`stages.grace_seconds`)."""


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
    value: float | Sequence[float]
    """One value per objective of the Optuna study (a float with one objective)."""
    report_to_pruner: bool
    pruned: bool | None = None
    """Judged by the planner, not told and not reported: with several objectives Optuna's pruners cannot judge, so
    the policy did (True: the trial stops, False: it trains on)."""


@dataclass(frozen=True)
class RecordFinal:
    """Store the final outcome; with `value`, also tell it (prune policy: the trial completes)."""

    trial: int
    outcome: Outcome
    value: float | Sequence[float] | None


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
    replan: bool = False
    """The actions are records (or asks) that the next plan must see before it decides anything else: apply them
    and plan again at once, without waiting for the world to change."""

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")
