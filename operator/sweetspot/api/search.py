"""`spec.objective` and `spec.search`: what is optimised, over which space, and how trials are judged early."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    Field,
)
from pydantic.alias_generators import to_camel

from sweetspot.api.fields import DnsLabel
from sweetspot.api.rules import Model, Rule

Metric = Literal["f1", "accuracy", "tokenF1", "loss"]


class Objective(Model):
    """What the study optimises, measured on the validation rows over applicable (row, attribute) pairs."""

    metric: Metric = "f1"
    """`f1`: micro-F1 of the extracted values, as the attribute-extraction field scores (always answering null
    scores 0); `accuracy`: exact match over applicable pairs; `tokenF1`: token overlap of the values (a finer
    signal); `loss`: validation loss."""
    direction: Literal["maximize", "minimize"] = "maximize"
    """`maximize` for f1, accuracy and tokenF1, `minimize` for loss."""
    target: float | None = Field(default=None, ge=0.0)
    """Stop searching once a trial reaches this value (for f1, accuracy and tokenF1, a number in [0, 1])."""

    rules = (
        Rule(
            cel="(self.metric == 'loss') == (self.direction == 'minimize')",
            message="direction must be minimize for loss and maximize for f1, accuracy and tokenF1",
            field="direction",
            holds=lambda o: (o.metric == "loss") == (o.direction == "minimize"),
        ),
        Rule(
            cel="!has(self.target) || self.metric == 'loss' || self.target <= 1.0",
            message="target must be in [0, 1] for f1, accuracy and tokenF1",
            field="target",
            holds=lambda o: o.target is None or o.metric == "loss" or o.target <= 1.0,
        ),
    )


CostMetric = Literal["computeSeconds", "trainableParameters", "peakMemoryBytes", "latencyMsPerRow"]
GoalMetric = Literal[
    "f1", "accuracy", "tokenF1", "loss", "computeSeconds", "trainableParameters", "peakMemoryBytes", "latencyMsPerRow"
]
"""`Metric` or `CostMetric`, as one enum (a CRD schema cannot hold a union of two)."""
QUALITY_METRICS: tuple[str, ...] = get_args(Metric)
COST_METRICS: tuple[str, ...] = get_args(CostMetric)
assert set(get_args(GoalMetric)) == {*QUALITY_METRICS, *COST_METRICS}


class Goal(Model):
    """One objective of a multi-objective study (`spec.objectives`): a quality metric to maximize (or `loss` to
    minimize), or a cost to minimize."""

    metric: GoalMetric
    """A quality metric (`f1`, `accuracy`, `tokenF1`, `loss`: as `objective.metric`), or a cost of training and
    serving the configuration: `computeSeconds` (what its stages spent: GPU-seconds on GPUs, wall seconds on CPUs;
    judged early as the early stage's compute over the fraction it trained), `trainableParameters` (the adapter's
    weights: LoRA and head), `peakMemoryBytes` (the stage's peak GPU memory allocated by torch, or peak resident
    memory on CPUs), `latencyMsPerRow` (milliseconds of inference per validation row at the evaluation batch size)."""
    direction: Literal["maximize", "minimize"]
    """`maximize` for f1, accuracy and tokenF1; `minimize` for loss and every cost."""

    rules = (
        Rule(
            cel="(self.metric in ['f1', 'accuracy', 'tokenF1']) == (self.direction == 'maximize')",
            message="direction must be maximize for f1, accuracy and tokenF1, and minimize for loss and costs",
            field="direction",
            holds=lambda o: (o.metric in ("f1", "accuracy", "tokenF1")) == (o.direction == "maximize"),
        ),
    )

    @property
    def is_cost(self) -> bool:
        return self.metric in COST_METRICS


def _range_rules(zero: str) -> tuple[Rule, ...]:
    return (
        Rule(
            cel="!has(self.values) || (!has(self.min) && !has(self.max) && !has(self.step) && !self.log)",
            message="values cannot be combined with min, max, step or log",
            field="values",
            holds=lambda o: o.values is None or (o.min is None and o.max is None and o.step is None and not o.log),
        ),
        Rule(
            cel="has(self.values) || has(self.min)",
            message="min is required (or give a list of values)",
            field="min",
            holds=lambda o: o.values is not None or o.min is not None,
        ),
        Rule(
            cel="has(self.values) || has(self.max)",
            message="max is required (or give a list of values)",
            field="max",
            holds=lambda o: o.values is not None or o.max is not None,
        ),
        Rule(
            cel="!has(self.min) || !has(self.max) || self.min < self.max",
            message="min must be less than max",
            field="min",
            holds=lambda o: o.min is None or o.max is None or o.min < o.max,
        ),
        Rule(
            cel=f"!self.log || !has(self.min) || self.min > {zero}",
            message="log scale needs min > 0",
            field="min",
            holds=lambda o: not o.log or o.min is None or o.min > 0,
        ),
        Rule(
            cel="!self.log || !has(self.step)",
            message="step cannot be combined with log scale",
            field="step",
            holds=lambda o: not o.log or o.step is None,
        ),
    )


def _unique(values: list[Any] | None) -> list[Any] | None:
    if values is not None and len(set(values)) != len(values):
        raise ValueError("values must be unique")
    return values


class FloatParameter(Model):
    """A real-valued hyperparameter: a range `min`..`max` (optionally log-scaled or stepped), or `values`."""

    min: float | None = None
    """Lower bound (inclusive)."""
    max: float | None = None
    """Upper bound (inclusive)."""
    log: bool = False
    """Sample on a log scale: every factor of ten between min and max is equally likely (needs min > 0)."""
    step: float | None = Field(default=None, gt=0.0)
    """Discretisation step; needed by the grid sampler."""
    values: Annotated[list[float], AfterValidator(_unique)] | None = Field(
        default=None, min_length=1, max_length=64, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """The allowed values (categorical); instead of a range."""

    rules = _range_rules("0.0")


class IntParameter(Model):
    """An integer hyperparameter: a range `min`..`max` (optionally log-scaled or stepped), or `values`."""

    min: int | None = None
    """Lower bound (inclusive)."""
    max: int | None = None
    """Upper bound (inclusive)."""
    log: bool = False
    """Sample on a log scale: every factor of ten between min and max is equally likely (needs min > 0)."""
    step: int | None = Field(default=None, ge=1)
    """Step between candidate values (default 1)."""
    values: Annotated[list[int], AfterValidator(_unique)] | None = Field(
        default=None, min_length=1, max_length=64, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """The allowed values (categorical); instead of a range."""

    rules = _range_rules("0")


Scheduler = Literal["linear", "cosine", "constant", "constant_with_warmup"]


class SchedulerParameter(Model):
    """The learning-rate schedule, chosen among `values`."""

    values: list[Scheduler] = Field(min_length=1, max_length=4, json_schema_extra={"x-kubernetes-list-type": "set"})
    """Candidate schedules."""


class SearchSpace(Model):
    """The hyperparameters to search. Parameters left out keep the trainer's defaults."""

    learning_rate: FloatParameter | None = None
    """Peak learning rate of the LoRA weights (the new task head keeps a fixed rate)."""
    lora_rank: IntParameter | None = None
    """LoRA rank r."""
    lora_alpha: IntParameter | None = None
    """LoRA scaling alpha."""
    lora_dropout: FloatParameter | None = None
    """Dropout on the LoRA path."""
    batch_size: IntParameter | None = None
    """Rows per optimizer step on one device."""
    gradient_accumulation_steps: IntParameter | None = None
    """Micro-batches accumulated per optimizer step."""
    epochs: IntParameter | None = None
    """Passes over the training sample."""
    warmup_ratio: FloatParameter | None = None
    """Share of steps spent warming the learning rate up."""
    weight_decay: FloatParameter | None = None
    """AdamW weight decay."""
    lr_scheduler: SchedulerParameter | None = None
    """Learning-rate schedule."""

    def parameters(self) -> dict[str, FloatParameter | IntParameter | SchedulerParameter]:
        """The parameters that are searched, by their API (camelCase) name."""
        return {to_camel(name): value for name in _SPACE_FIELDS if (value := getattr(self, name)) is not None}


_SPACE_FIELDS = tuple(SearchSpace.model_fields)
"""Every searchable hyperparameter: a field of `SearchSpace` (the trainer's side is `contract.Hyperparameters`)."""
SearchSpace.rules = (
    Rule(
        cel=" || ".join(f"has(self.{to_camel(n)})" for n in _SPACE_FIELDS),
        message="the search space is empty: give at least one parameter",
        field="",
        holds=lambda o: any(getattr(o, n) is not None for n in _SPACE_FIELDS),
    ),
)


DEFAULT_SEARCH_SPACE = SearchSpace(
    learning_rate=FloatParameter(min=1.0e-5, max=5.0e-4, log=True),
    lora_rank=IntParameter(values=[8, 16, 32, 64]),
    lora_alpha=IntParameter(values=[16, 32, 64]),
    lora_dropout=FloatParameter(min=0.0, max=0.2),
    batch_size=IntParameter(values=[8, 16]),
    epochs=IntParameter(min=1, max=3),
)

Sampler = Literal["tpe", "gp", "random", "cmaes", "qmc", "grid", "nsga2"]
SINGLE_OBJECTIVE_SAMPLERS: tuple[str, ...] = ("cmaes",)
"""Samplers Optuna runs on one objective only: refused with `spec.objectives`."""
Policy = Literal["proxy", "prune"]


DEFAULT_WIDEN_TO = (0.35, 0.5)


class EarlyEvaluation(Model):
    """How trials are judged before they finish: a score taken early in training stands in for the final one."""

    at_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    """Share of a trial's planned steps after which it is evaluated early."""
    policy: Policy = "proxy"
    """`proxy`: search on the early score, then train the best `promoteTopK` to the end; `prune`: every trial
    reports its early score and a pruner stops the poor ones, the rest finish at once."""
    promote_top_k: int = Field(default=3, ge=1, le=1000)
    """With `proxy`, how many of the best early trials are trained to the end (the early winner is often not
    the final one: promote 3 to 5)."""
    signal: Literal["auto", "f1", "accuracy", "tokenF1", "loss"] = "auto"
    """The score trials are judged on early. `auto` is validation loss: early in training many trials still answer
    the label prior and tie on F1 or accuracy, while their losses already differ. Or `f1`, `accuracy`, `tokenF1`,
    `loss`."""
    pruner: Literal["successiveHalving", "median", "percentile"] = "successiveHalving"
    """With `prune`, the Optuna pruner that decides which trials continue."""
    min_agreement: float | None = Field(default=None, ge=-1.0, le=1.0)
    """With `proxy`, widen the early fraction when early and final scores disagree (off when unset; e.g. 0.6).
    Once at least 3 promoted trials
    judged at the current fraction have final scores, the Spearman correlation of their early signal and final
    objective is checked; below this value, one more trial is promoted and trials asked from then on are judged at
    the next fraction of `widenTo` (each widening an Event, a status field and a metric). `proxy` trains finals once
    the search is done, so the wider fraction serves only trials asked after that (a raised `maxTrials` or budget):
    in a study run straight through, the guard's effect is the extra promotion. Off by default: where the early
    signal ranks trials well it only costs compute (docs/performance.md)."""
    promote: Literal["topK", "predicted"] = "topK"
    """With `proxy`, which trials train to the end. `topK`: the best `promoteTopK` by early score. `predicted`: each
    trial's final score is predicted with an 80% interval by a line fitted to the study's own (early, final) pairs,
    on the early score or on the early curve extrapolated to the end (saturating curve families fitted with scipy;
    with `curvePoints` of 3 or more), whichever predicts held-out finals better; the trials whose upper bound reaches
    the best final so far (or the best lower bound) are promoted, and until 3 finals calibrate the line, the best
    `promoteTopK`. `topK` by default: `predicted` did not pay on the benchmark tables (docs/performance.md)."""
    curve_points: int = Field(default=1, ge=1, le=8)
    """Evaluations inside the early stage, evenly spaced up to `atFraction` (the last is the early score): the
    trial's own early curve, for `promote: predicted`."""
    widen_to: list[Annotated[float, Field(gt=0.0, lt=1.0)]] | None = Field(default=None, max_length=8)
    """The wider fractions the guard moves to, in order; each above `atFraction` and the one before. Unset: 0.35
    and 0.5, those above `atFraction`."""

    rules = (
        Rule(
            cel="!has(self.widenTo) || (self.widenTo.all(f, f > self.atFraction) && self.widenTo.isSorted() "
            "&& self.widenTo.all(f, self.widenTo.exists_one(g, g == f)))",
            message="widenTo must be increasing fractions above atFraction",
            field="widenTo",
            holds=lambda o: (
                o.widen_to is None
                or (
                    all(f > o.at_fraction for f in o.widen_to)
                    and all(a < b for a, b in zip(o.widen_to, o.widen_to[1:], strict=False))
                )
            ),
        ),
        Rule(
            cel="self.promote != 'predicted' || self.policy == 'proxy'",
            message="promote: predicted needs policy proxy",
            field="promote",
            holds=lambda o: o.promote != "predicted" or o.policy == "proxy",
        ),
    )

    def curve_at(self, fraction: float) -> list[float]:
        """Where an early stage that stops at `fraction` also evaluates (`curvePoints`, the last being `fraction`)."""
        return [round(fraction * k / self.curve_points, 4) for k in range(1, self.curve_points)]

    def fractions(self) -> list[float]:
        """The fractions trials are judged at: `atFraction`, then each step the guard may widen to."""
        wider = self.widen_to if self.widen_to is not None else [f for f in DEFAULT_WIDEN_TO if f > self.at_fraction]
        return [self.at_fraction, *wider]


def _float_parameters() -> list[str]:
    """The search space's float parameters, by their API names (the grid sampler needs each stepped or listed)."""
    return [
        to_camel(name) for name, info in SearchSpace.model_fields.items() if FloatParameter in get_args(info.annotation)
    ]


class Budget(Model):
    """A cap on the compute a study spends: no stage starts that the rest of the budget cannot pay for, by the
    stage costs observed so far."""

    gpu_hours: float = Field(gt=0.0, le=1_000_000.0)
    """The compute the study may spend, in hours. The unit is what every stage reports: GPU-seconds on GPUs (a stage on
    4 GPUs for one hour spends 4), wall seconds on CPUs (local mode without a GPU: hours of stage run time, stages
    running side by side adding up). What finished stages recorded counts, and a running stage counts as the mean
    of finished stages of its kind; before any stage finished, one stage runs alone to price the rest. Under
    `proxy` the search stops asking trials when what is left only pays for training the best `promoteTopK` to
    the end; the learning curve gets what the search leaves. The study then ends `Succeeded` with reason
    `BudgetExhausted` and its best trial (`Failed`, same reason, when not even one trial could be trained to the
    end). May change at any time: raising it resumes a study that ended on it."""


class WarmStart(Model):
    """Start from what earlier studies of the same task learned. Read once, when this study's Optuna study is
    created (changing it later has no effect)."""

    studies: Annotated[list[DnsLabel], AfterValidator(_unique)] = Field(
        min_length=1, max_length=16, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Names of earlier FineTuneStudies in this namespace whose trials are in the same Optuna storage (the newest
    study of each name, which may have been deleted with `onDelete: keep`). A name missing from the storage fails
    this study."""
    reuse: Literal["results", "configs"] = "results"
    """`results`: the earlier studies' finished trials are copied into this one with their recorded early and final
    results, so the sampler learns from them and none is trained again; they do not count toward `maxTrials`.
    Only from a study with the same model, dataset, objective, search space and early evaluation (policy,
    atFraction, signal, pruner); any other falls back to `configs`. `configs`: the best configurations of the
    earlier studies by final score (`promoteTopK` of them, at most `maxTrials`) are this study's first trials,
    trained afresh."""


class WarmStartStatus(Model):
    """What this study took from earlier studies (`spec.search.warmStart`)."""

    studies: list[Annotated[str, Field(max_length=512)]] = Field(default_factory=list, max_length=16)
    """The Optuna studies read."""
    reused: int = Field(default=0, ge=0)
    """Trials copied with their results: never trained here, not counted in `maxTrials`."""
    enqueued: int = Field(default=0, ge=0)
    """Configurations of earlier studies queued as this study's first trials (trained here)."""
    message: str = Field(default="", max_length=1024)
    """What was taken from where, and why a study's results could not be reused."""


class Search(Model):
    """The hyperparameter search."""

    sampler: Sampler = "tpe"
    """Optuna sampler: `tpe` (Bayesian, multivariate; with `objectives`, MOTPE), `gp` (Gaussian process), `random`,
    `cmaes` (one objective only), `qmc` (quasi-random), `grid` (every combination; needs stepped or listed float
    parameters), `nsga2` (the NSGA-II genetic algorithm, for `objectives`)."""
    max_trials: int = Field(default=20, ge=1, le=10_000)
    """How many hyperparameter configurations to try."""
    parallelism: int = Field(default=1, ge=1, le=1000)
    """How many trial stages run at the same time."""
    max_failed_trials: int = Field(default=3, ge=0, le=10_000)
    """The study fails when more than this many trials have failed (0: the first failure fails it).
    Disruptions such as preemption or eviction do not count."""
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    """Seed of the sampler and of data sampling, for repeatable studies."""
    early_evaluation: EarlyEvaluation = Field(default_factory=EarlyEvaluation)
    """How trials are judged early."""
    space: SearchSpace = Field(default_factory=lambda: DEFAULT_SEARCH_SPACE)
    """The hyperparameters searched; by default learning rate, LoRA rank/alpha/dropout, batch size, epochs."""
    budget: Budget | None = None
    """A compute budget (`gpuHours`): the study stops starting stages the rest cannot pay for; none when unset."""
    warm_start: WarmStart | None = None
    """Start from earlier studies' trials (results) or best configurations; none when unset."""

    rules = (
        Rule(
            cel="self.parallelism <= self.maxTrials",
            message="parallelism must not exceed maxTrials",
            field="parallelism",
            holds=lambda o: o.parallelism <= o.max_trials,
        ),
        Rule(
            cel="self.earlyEvaluation.policy != 'proxy' || self.earlyEvaluation.promoteTopK <= self.maxTrials",
            message="promoteTopK must not exceed maxTrials",
            field="earlyEvaluation.promoteTopK",
            holds=lambda o: o.early_evaluation.policy != "proxy" or o.early_evaluation.promote_top_k <= o.max_trials,
        ),
        Rule(
            cel="self.sampler != 'grid' || ("
            + " && ".join(
                f"(!has(self.space.{p}) || has(self.space.{p}.values) || has(self.space.{p}.step))"
                for p in _float_parameters()
            )
            + ")",
            message="the grid sampler needs every float parameter to have step or values",
            field="space",
            holds=lambda o: (
                o.sampler != "grid"
                or all(
                    p.values is not None or p.step is not None
                    for p in o.space.parameters().values()
                    if isinstance(p, FloatParameter)
                )
            ),
        ),
    )
