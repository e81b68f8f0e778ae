"""`FineTuneStudyStatus`: what the operator reports (output only; see `sweetspot.core.study_status`)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    Field,
)

from sweetspot.api.rules import Model
from sweetspot.api.search import WarmStartStatus

Phase = Literal["Pending", "Searching", "Promoting", "Sweeping", "Succeeded", "Failed"]


class ConditionType(StrEnum):
    """Every condition a study has (`status.conditions[].type`), in the order they are written."""

    READY = "Ready"
    """The study runs as its spec says: False once it failed, while a refused change is ignored, or while the
    storage does not answer."""
    SUCCEEDED = "Succeeded"
    """The study finished with a result."""
    STORAGE_REACHABLE = "StorageReachable"
    """The Optuna storage answers."""
    SUSPENDED = "Suspended"
    """`spec.suspend` is true: no new stage starts."""


class Reason(StrEnum):
    """Every reason a condition (and the phase, `status.reason`) gives for its last transition."""

    TRIALS_RUNNING = "TrialsRunning"
    """Searching: trials are asked and their early stages (or, under `prune`, their finals) run."""
    PROMOTED_TRIALS_RUNNING = "PromotedTrialsRunning"
    """Promoting: the best early trials train to the end."""
    WAITING_FOR_RUNS = "WaitingForRuns"
    """Nothing new can start until running stages finish."""
    SWEEP_RUNNING = "SweepRunning"
    """Sweeping: the learning-curve runs train."""
    SUSPENDED = "Suspended"
    """`spec.suspend` is true: running stages finish, no new one starts."""
    RUNNING = "Running"
    """Not suspended (the reason of a False `Suspended`)."""
    RECORDING = "Recording"
    """A decision that only records (`Decision.replan`): the phase is unchanged, nothing is announced or written."""
    STUDY_COMPLETE = "StudyComplete"
    """Succeeded: every trial judged, the best trained to the end, the learning curve measured."""
    TARGET_REACHED = "TargetReached"
    """Succeeded: a final score reached the objective's target."""
    BUDGET_EXHAUSTED = "BudgetExhausted"
    """Ended because the budget pays for no further stage (Failed when no trial was trained to the end)."""
    BAD_INPUT = "BadInput"
    """Failed: a trial stage rejected its input (the data or the model), which no retry mends."""
    TOO_MANY_FAILED_TRIALS = "TooManyFailedTrials"
    """Failed: more trials failed than `maxFailedTrials` allows."""
    NO_TRIAL_FINISHED = "NoTrialFinished"
    """Failed: no trial finished its final stage."""
    SWEEP_FAILED = "SweepFailed"
    """Failed: a learning-curve run kept failing."""
    WARM_START_FAILED = "WarmStartFailed"
    """Failed: a study named by `warmStart` could not be read."""
    CONNECTED = "Connected"
    """The Optuna storage answers (the reason of a True `StorageReachable`)."""
    STORAGE_UNREACHABLE = "StorageUnreachable"
    """The Optuna storage does not answer."""
    IMMUTABLE_FIELD_CHANGED = "ImmutableFieldChanged"
    """A field fixed once the study started was changed: the study runs on as it started."""
    INVALID_SPEC = "InvalidSpec"
    """The spec does not validate (an object the API server let through, such as under an older CRD)."""


class EventReason(StrEnum):
    """The reasons of the Kubernetes Events a study posts that are not a condition's reason (those post their
    `Reason`: `WarmStartFailed`, `ImmutableFieldChanged`, `StorageUnreachable`)."""

    TRIALS_ASKED = "TrialsAsked"
    """New trials were asked of the sampler."""
    STAGE_STARTED = "StageStarted"
    """A trial stage or learning-curve run started."""
    STAGE_STOPPED = "StageStopped"
    """A running stage was stopped."""
    EARLY_RESULT = "EarlyResult"
    """A trial's early evaluation was recorded."""
    TRIAL_PROMOTED = "TrialPromoted"
    """A promoted trial's final result was recorded (the sampler learnt it from its early score)."""
    TRIAL_COMPLETE = "TrialComplete"
    """A trial's final result was recorded and told to the sampler."""
    CURVE_POINT = "CurvePoint"
    """A learning-curve run's result was recorded."""
    TRIAL_OUT_OF_MEMORY = "TrialOutOfMemory"
    """A configuration ran out of memory: recorded as infeasible (Warning)."""
    STAGE_DISRUPTED = "StageDisrupted"
    """A stage was disrupted (preempted, evicted, interrupted) and runs again."""
    STAGE_RESUMED = "StageResumed"
    """A stage that ran again after a disruption finished, continuing its newest checkpoint: from which step, and the
    compute the disruption cost."""
    STAGE_FAILED = "StageFailed"
    """A stage failed (Warning)."""
    TRIAL_FAILED = "TrialFailed"
    """A trial failed for good (Warning)."""
    PHASE_CHANGED = "PhaseChanged"
    """The study entered a phase that is not an end."""
    STUDY_SUCCEEDED = "StudySucceeded"
    """The study succeeded (the message says why: its `Reason`, and where the best adapter is)."""
    STUDY_FAILED = "StudyFailed"
    """The study failed (Warning; the message says why)."""
    EARLY_EVALUATION_WIDENED = "EarlyEvaluationWidened"
    """The agreement guard widened the early fraction."""
    STATUS_REPAIRED = "StatusRepaired"
    """The status differed from the one the operator wrote and was rewritten (Warning)."""
    BUDGET_LOWERED = "BudgetLowered"
    """`maxTrials` was lowered below the trials already asked."""
    WARM_STARTED = "WarmStarted"
    """What warm start took from earlier studies."""
    NO_OUTPUT_VOLUME = "NoOutputVolume"
    """`spec.trial.output` is unset: on a cluster the study keeps no checkpoint or adapter (Warning)."""
    OPTUNA_STUDY_KEPT = "OptunaStudyKept"
    """`onDelete: delete` could not delete the Optuna study in time: the resource went, the study is kept
    (Warning)."""


class Condition(Model):
    """An observation of the study's state, shaped like metav1.Condition."""

    type: str = Field(max_length=316, pattern=r"^[A-Z][A-Za-z0-9]*$")
    """Kind of condition: Ready, Succeeded, StorageReachable, Suspended."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds."""
    reason: str = Field(min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    """Machine-readable CamelCase reason for the last transition."""
    message: str = Field(default="", max_length=32768)
    """Human-readable details."""
    last_transition_time: str = Field(json_schema_extra={"format": "date-time"})
    """When the status last changed (RFC 3339)."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The spec generation the condition was computed from."""


class TrialCounts(Model):
    """Trials by state, as recorded in the Optuna storage."""

    total: int = Field(default=0, ge=0)
    """All trials asked so far."""
    running: int = Field(default=0, ge=0)
    """Trials with a stage running."""
    waiting: int = Field(default=0, ge=0)
    """Trials waiting for a stage to start (queued or awaiting promotion)."""
    complete: int = Field(default=0, ge=0)
    """Trials that finished their last stage."""
    pruned: int = Field(default=0, ge=0)
    """Trials stopped after their early evaluation."""
    failed: int = Field(default=0, ge=0)
    """Trials that failed (out of memory counts here, as infeasible)."""


Score = Annotated[float, Field(ge=0.0, le=1.0)]
Params = Annotated[
    dict[str, float | int | str],
    Field(strict=False, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True, "type": "object"}),
]


MAX_STATUS_ATTRIBUTES = 64
"""Per-attribute scores in the status are bounded: the most supported attributes are listed, the rest counted."""
AttributeScores = Annotated[dict[str, Score], Field(max_length=MAX_STATUS_ATTRIBUTES)]


class BestTrial(Model):
    """The best trial so far (scores over applicable (row, attribute) pairs)."""

    trial: int = Field(ge=0)
    """Optuna trial number."""
    params: Params = Field(default_factory=dict)
    """Its hyperparameters."""
    early_f1: Score | None = None
    """Micro-F1 at the early evaluation."""
    final_f1: Score | None = None
    """Micro-F1 at the end of training: the headline score."""
    final_precision: Score | None = None
    """Precision at the end of training."""
    final_recall: Score | None = None
    """Recall at the end of training."""
    early_accuracy: Score | None = None
    """Exact match at the early evaluation."""
    final_accuracy: Score | None = None
    """Exact match at the end of training."""
    attribute_f1: AttributeScores = Field(default_factory=dict)
    """Final F1 per attribute, the most supported attributes first (at most 64)."""
    attributes_left_out: int = Field(default=0, ge=0)
    """Attributes not listed in `attributeF1` (the rarest); `sweetspot report` shows them all."""
    adapter: str | None = Field(default=None, max_length=1024)
    """Where its trained adapter lies, `pvc/CLAIM:PATH` on `spec.trial.output` (with `sweetspot.json` beside it: run
    it with `sweetspot predict`); unset when the study keeps no output or the trial's final came from a warm start."""


class CurvePoint(Model):
    """One point of the learning curve."""

    samples: int = Field(ge=1)
    """Training-set size."""
    f1: Score
    """Validation micro-F1 after training on `samples` rows (mean over repeats)."""
    accuracy: Score | None = None
    """Validation exact match (mean over repeats)."""
    spread: float = Field(default=0.0, ge=0.0, le=1.0)
    """Standard deviation of F1 over repeats (0 with one repeat)."""
    repeats: int = Field(default=1, ge=1)
    """Runs measured at this size."""
    attribute_f1: AttributeScores = Field(default_factory=dict)
    """F1 per attribute (mean over repeats), the most supported attributes first (at most 64)."""
    gain_per_thousand: float | None = Field(default=None, ge=-1.0, le=1.0)
    """F1 1,000 more samples would add here, by the fitted curve."""
    leading_attribute: str | None = Field(default=None, max_length=128)
    """The attribute that gains most from this size to the largest: where the late gains come from."""


class SweetSpot(Model):
    """The training-set size past which more data stops paying, from a saturating fit of the learning curve."""

    samples: int | None = Field(default=None, ge=1)
    """The smallest measured size within `tolerance` of the fitted plateau; unset when the curve has not
    saturated (or has too few points to fit)."""
    f1: Score | None = None
    """Measured micro-F1 at that size."""
    saturated: bool = False
    """Whether the curve reached its plateau inside the measured sizes."""
    plateau: float | None = Field(default=None, ge=0.0, le=1.0)
    """Micro-F1 the fitted curve approaches."""
    fit: str | None = Field(default=None, max_length=256)
    """The fitted curve, e.g. `power: 0.88 - 3.7 * n^-0.60 (rmse 0.004)`."""
    recommendation: str = Field(default="", max_length=1024)
    """What to do about the training data, in plain words."""


class ForecastPoint(Model):
    """Micro-F1 forecast at one size past the measured ones."""

    samples: int = Field(ge=1)
    """Training-set size."""
    f1: Score
    """The forecast micro-F1 (the weighted median of the ensemble's draws)."""
    low: Score
    """The 80% band's lower end: a sweep measuring this size lands below it one time in ten."""
    high: Score
    """The 80% band's upper end."""
    cost: float | None = Field(default=None, ge=0.0)
    """With `costPerLabel`: what labelling from the largest measured size up to this size costs."""


class RowsToTarget(Model):
    """Training rows needed to reach a target micro-F1, with an 80% band."""

    rows: int | None = Field(default=None, ge=1)
    """The forecast rows (the median); unset when fewer than half of the forecasts reach the target."""
    rows_low: int | None = Field(default=None, ge=1)
    """The band's lower end; unset when the target lies above the plateau's band."""
    rows_high: int | None = Field(default=None, ge=1)
    """The band's upper end; unset when one forecast in ten or more never reaches the target (within 100 times
    the largest measured size)."""
    reach: float = Field(default=0.0, ge=0.0, le=1.0)
    """Share of the forecasts that reach the target within 100 times the largest measured size."""
    above_plateau: bool = False
    """Whether the target lies above the plateau's band (fewer than one forecast in ten reaches it)."""
    cost: float | None = Field(default=None, ge=0.0)
    """With `costPerLabel`: what labelling from the largest measured size up to `rows` costs."""


class AttributeForecast(Model):
    """The forecast of one attribute's F1, for an attribute that drives the late gains."""

    attribute: str = Field(max_length=128)
    """The attribute."""
    points: list[ForecastPoint] = Field(default_factory=list, max_length=16)
    """Its F1 forecast at `forecast.to`."""
    target: RowsToTarget | None = None
    """Rows for this attribute to reach the target F1."""


class LearningCurveForecast(Model):
    """The learning curve forecast past the measured sizes (`spec.dataEfficiency.forecast`, `target`)."""

    points: list[ForecastPoint] = Field(default_factory=list, max_length=16)
    """Micro-F1 forecast at each size of `forecast.to`."""
    plateau: Score | None = None
    """The F1 the forecasts approach (at 100 times the largest measured size), the median."""
    plateau_low: Score | None = None
    """The plateau's 80% band, lower end."""
    plateau_high: Score | None = None
    """The plateau's 80% band, upper end."""
    forms: dict[str, float] = Field(default_factory=dict, max_length=8)
    """Each curve form's weight in the ensemble (power, exponential, powerlaw, sigmoid)."""
    noise: float | None = Field(default=None, ge=0.0, le=1.0)
    """The noise of one run the band assumes (standard deviation of F1 between repeats, at least 0.01)."""
    target: RowsToTarget | None = None
    """Rows needed to reach `target.f1`."""
    attributes: list[AttributeForecast] = Field(default_factory=list, max_length=3)
    """The attributes forecast to gain most past the measured sizes (the late-gain drivers), at most 3."""
    message: str = Field(default="", max_length=1024)
    """The forecast in plain words, or why there is none yet."""


class GpuSeconds(Model):
    """Accelerator time of the study."""

    used: float = Field(default=0.0, ge=0.0)
    """GPU-seconds spent by all trial stages."""
    saved: float = Field(default=0.0, ge=0.0)
    """GPU-seconds not spent because trials were judged early (estimated from the stages that ran)."""
    lost: float = Field(default=0.0, ge=0.0)
    """GPU-seconds disruptions cost: training after a stage's newest checkpoint done again, and the restarts."""


MAX_FRONT = 64
"""Trials listed on the Pareto front in the status; `sweetspot report` lists them all."""


class FrontTrial(Model):
    """A trial on the Pareto front: no other trial trained to the end is as good in every objective and better in
    one."""

    trial: int = Field(ge=0)
    """Optuna trial number."""
    values: dict[str, float] = Field(default_factory=dict, max_length=4)
    """Its final value of each objective, by metric (computeSeconds: its stages together)."""


class ParetoFront(Model):
    """With `spec.objectives`: the trade-off found, over the trials trained to the end."""

    objectives: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=4)
    """The objectives' metrics, in the spec's order."""
    trials: list[FrontTrial] = Field(default_factory=list, max_length=MAX_FRONT)
    """The trials on the front, the best on `objective` first (at most 64)."""
    size: int = Field(default=0, ge=0)
    """Trials on the front (more than listed when over 64)."""
    best: int | None = Field(default=None, ge=0)
    """The best trial on `objective`: the most quality, whatever it costs."""
    knee: int | None = Field(default=None, ge=0)
    """The front's knee: each objective scaled to the front's range, the trial with the least total shortfall; past
    it, more cost buys less quality (docs/multi-objective.md)."""
    message: str = Field(default="", max_length=1024)
    """The recommendation, in plain words: the best trial and the knee, and what the knee saves."""


class FinalPrediction(Model):
    """`promote: predicted`: how the study predicts final scores, and how well."""

    feature: Literal["last", "curve"] | None = None
    """What the calibration line predicts from: `last`, the early score; `curve`, the early curve extrapolated to
    the end of training (whichever predicted held-out finals better); unset until 3 finals calibrate it."""
    pairs: int = Field(default=0, ge=0)
    """Trials with both an early curve and a final score."""
    coverage: float | None = Field(default=None, ge=0.0, le=1.0)
    """Share of finals inside the 80% interval predicted for them from the other trials alone (leave one out)."""
    checked: int = Field(default=0, ge=0)
    """Finals the coverage was checked on."""


class EarlyJudging(Model):
    """The agreement guard of `proxy` (`spec.search.earlyEvaluation.minAgreement`): where trials are judged now."""

    at_fraction: float = Field(gt=0.0, lt=1.0)
    """The fraction of their planned steps at which new trials are judged."""
    widenings: int = Field(default=0, ge=0)
    """How many times the guard widened it (each also promoted one more trial)."""
    agreement: float | None = Field(default=None, ge=-1.0, le=1.0)
    """Spearman of early signal and final objective over the promoted trials judged at `atFraction` (from 3)."""
    agreement_trials: int = Field(default=0, ge=0)
    """Trials with a final score judged at `atFraction`."""
    message: str = Field(default="", max_length=1024)
    """The last widening, in plain words."""


class OverBudget(Model):
    """Trials asked before `spec.search.maxTrials` was lowered below their number."""

    trials: list[int] = Field(default_factory=list, max_length=64)
    """The trials past the budget (the first 64): each finishes the stages it has; no new trial starts."""
    message: str = Field(default="", max_length=1024)
    """What happens to them, in plain words."""


class BudgetStatus(Model):
    """The compute budget (`spec.search.budget`) and how much of it finished stages spent, in GPU-hours (hours of
    wall time on CPUs)."""

    gpu_hours: float = Field(ge=0.0)
    """The budget."""
    used_gpu_hours: float = Field(default=0.0, ge=0.0)
    """Spent by the stages that finished."""
    remaining_gpu_hours: float = Field(default=0.0, ge=0.0)
    """What is left of the budget (0 once it is spent)."""
    used_ratio: float = Field(default=0.0, ge=0.0)
    """`usedGpuHours / gpuHours` (past 1 when the last stages cost more than estimated)."""
    eta: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    """When the study is expected to end (RFC 3339), by the stages left (bounded by the budget), the mean wall
    time of finished stages of each kind and the parallelism; unset before a stage finished or once it ended."""
    message: str = Field(default="", max_length=1024)
    """How the budget stands, in plain words."""


class FineTuneStudyStatus(Model):
    """The observed state: a bounded summary recomputed every reconcile; the full history is in the Optuna
    storage."""

    phase: Phase = "Pending"
    """Pending, Searching, Promoting, Sweeping, Succeeded or Failed."""
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Latest observations of the study's state."""
    trials: TrialCounts = Field(default_factory=TrialCounts)
    """Trials by state."""
    best: BestTrial | None = None
    """The best trial so far."""
    early_final_correlation: float | None = Field(default=None, ge=-1.0, le=1.0)
    """Spearman rank correlation of the early signal and the final objective over trials that have both (from 3
    trials: below, ranks agree or disagree by chance)."""
    early_evaluation: EarlyJudging | None = None
    """Under `proxy`: the fraction trials are judged at now, and the agreement guard's evidence."""
    prediction: FinalPrediction | None = None
    """With `promote: predicted`: the final-score predictor and its calibration."""
    pareto_front: ParetoFront | None = None
    """With `spec.objectives`: the Pareto front of the trials trained to the end, its knee and the recommendation."""
    learning_curve: list[CurvePoint] = Field(default_factory=list, max_length=32)
    """Micro-F1 by training-set size, from the data-efficiency sweep."""
    sweet_spot: SweetSpot | None = None
    """The size past which more data stops paying."""
    forecast: LearningCurveForecast | None = None
    """The learning curve forecast past the measured sizes, and the rows to reach the target F1."""
    gpu_seconds: GpuSeconds = Field(default_factory=GpuSeconds)
    """Accelerator time used and saved."""
    optuna_study: str | None = Field(default=None, max_length=512)
    """Name of the Optuna study in the storage."""
    over_budget: OverBudget | None = None
    """Set while more trials were asked than `spec.search.maxTrials` now allows (the budget was lowered)."""
    budget: BudgetStatus | None = None
    """The compute budget and what is spent of it; unset without `spec.search.budget`."""
    warm_start: WarmStartStatus | None = None
    """What `spec.search.warmStart` took from earlier studies."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The spec generation this status reflects."""
