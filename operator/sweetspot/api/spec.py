"""`FineTuneStudySpec`: the whole spec, and which of its fields are fixed once a study started (`IMMUTABLE`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
)
from pydantic.alias_generators import to_camel

from sweetspot.api.inputs import DatasetSpec, ModelSpec
from sweetspot.api.rules import Model, Rule
from sweetspot.api.search import QUALITY_METRICS, SINGLE_OBJECTIVE_SAMPLERS, Goal, Objective, Search
from sweetspot.api.sweep import DataEfficiency
from sweetspot.api.trial import Storage, TrialTemplate

IMMUTABLE: tuple[tuple[str, ...], ...] = (
    ("model",),
    ("dataset",),
    ("objective",),
    ("objectives",),
    ("search", "sampler"),
    ("search", "space"),
    ("search", "early_evaluation"),
    ("search", "seed"),
    ("trial", "runtime"),
)
"""Spec fields (attribute paths) fixed once a study started: the API server refuses a change (CEL transition
rules generated from this list), and the operator runs on as the study started if one slips through (an older CRD).
Every other field may change (budget, parallelism and suspend among them): `changeable()` names them, in the words
of the messages that refuse a change, so the list cannot drift from this one."""


def api_path(path: tuple[str, ...]) -> str:
    return ".".join(to_camel(part) for part in path)


def changeable() -> str:
    """The spec fields that may change once a study started, in words: every field of `FineTuneStudySpec` that
    `IMMUTABLE` does not fix whole ("the rest of" one it fixes in part)."""
    whole = [to_camel(name) for name in FineTuneStudySpec.model_fields if (name,) not in IMMUTABLE]
    free = [name for name in whole if not any(to_camel(p[0]) == name for p in IMMUTABLE)]
    part = [name for name in whole if name not in free]
    rest = [f"the rest of {' and '.join(part)}"] if part else []
    named = [*free, *rest]
    return ", ".join(named[:-1]) + " and " + named[-1] if len(named) > 1 else "".join(named)


def _cel_list(values: tuple[str, ...]) -> str:
    """A CEL list literal of strings."""
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def _immutable(path: tuple[str, ...], optional: bool) -> Rule:
    field = api_path(path)
    cel = f"self.{field} == oldSelf.{field}"
    if optional:  # no default: absent on one side and present on the other is a change too
        cel = f"has(self.{field}) == has(oldSelf.{field}) && (!has(self.{field}) || {cel})"
    return Rule(
        cel=cel,
        message=f"{field} cannot change once the study exists (only {changeable()} can)",
        field=field,
        holds=lambda _: True,
        transition=True,
    )


def _field_of(path: tuple[str, ...], value: Any) -> Any:
    for part in path:
        value = getattr(value, part)
    return value


def _replaced(model: Any, path: tuple[str, ...], value: Any) -> Any:
    head, *rest = path
    return model.model_copy(update={head: _replaced(getattr(model, head), tuple(rest), value) if rest else value})


def immutable_changes(before: FineTuneStudySpec, spec: FineTuneStudySpec) -> list[str]:
    """The immutable fields (`spec.…`) that differ between the spec a study started with and `spec`."""
    return [f"spec.{api_path(p)}" for p in IMMUTABLE if _field_of(p, before) != _field_of(p, spec)]


def as_started(before: FineTuneStudySpec, spec: FineTuneStudySpec) -> FineTuneStudySpec:
    """`spec` with its immutable fields as the study started: a refused change leaves the study running as it
    was, while the fields that may change (`changeable()`: budget, parallelism, suspend, ...) take effect."""
    for path in IMMUTABLE:
        spec = _replaced(spec, path, _field_of(path, before))
    return spec


def cluster_warnings(spec: FineTuneStudySpec) -> list[str]:
    """What is valid but loses work on a cluster (`sweetspot run` keeps everything under its workdir): said by
    `sweetspot validate` and, once per study, by the operator's `NoOutputVolume` Warning Event. A CEL rule cannot
    warn, and refusing would refuse the same manifest in local mode, where it is right."""
    if spec.trial.output is None:
        return [
            "spec.trial.output: not set: on a cluster this study keeps nothing (no early checkpoint, so promoted "
            "trials retrain from scratch, and no adapter, so the best model is lost); set it to a PVC "
            "({pvc: NAME, path: DIR}). Local runs (sweetspot run) keep both under their workdir."
        ]
    return []


class FineTuneStudySpec(Model):
    """A fine-tuning study: search LoRA hyperparameters (judged early), train the best to the end, and sweep
    training-set sizes."""

    model: ModelSpec
    """The base model."""
    dataset: DatasetSpec
    """Training and validation data."""
    objective: Objective = Field(default_factory=Objective)
    """What is optimised (with `objectives`, the quality metric among them)."""
    objectives: list[Goal] | None = Field(default=None, min_length=2, max_length=4)
    """Several objectives: a multi-objective study searches the trade-off (the Pareto front) between `objective`'s
    quality metric and costs, e.g. `[{metric: f1, direction: maximize}, {metric: computeSeconds, direction:
    minimize}]`. Exactly one entry is a quality metric, and it is `objective.metric`; the others are costs. Trials
    are judged early by non-dominated sorting (docs/multi-objective.md); the best trial is still the best on
    `objective`, and the status and report add the front and its knee. Unset: one objective, `objective`."""
    search: Search = Field(default_factory=Search)
    """The hyperparameter search."""
    data_efficiency: DataEfficiency | None = None
    """The learning-curve sweep after the search; none when unset."""
    trial: TrialTemplate = Field(default_factory=TrialTemplate)
    """The pod of every trial Job."""
    storage: Storage = Field(default_factory=Storage)
    """Where trials are kept."""
    suspend: bool = False
    """Stop launching trial stages; running ones finish and nothing is deleted."""
    on_delete: Literal["keep", "delete"] = "keep"
    """What happens to the Optuna study when this resource is deleted: `keep` it (a study created again under this
    name starts afresh beside it), or `delete` it. With `delete`, a storage that does not answer holds the deletion
    for up to 5 minutes (the operator's `SWEETSPOT_STORAGE_DELETE_WAIT_SECONDS`); after that the resource goes, its
    Optuna study kept, and an `OptunaStudyKept` Warning Event says so."""

    rules = (
        Rule(
            cel="!has(self.objectives) "
            f"|| self.objectives.filter(o, o.metric in {_cel_list(QUALITY_METRICS)}).size() == 1",
            message="objectives must hold exactly one quality metric (f1, accuracy, tokenF1 or loss); the others "
            "are costs",
            field="objectives",
            holds=lambda o: o.objectives is None or sum(g.metric in QUALITY_METRICS for g in o.objectives) == 1,
        ),
        Rule(
            cel="!has(self.objectives) || self.objectives.exists(o, o.metric == self.objective.metric)",
            message="the quality metric of objectives must be objective.metric (f1 unless set)",
            field="objectives",
            holds=lambda o: o.objectives is None or any(g.metric == o.objective.metric for g in o.objectives),
        ),
        Rule(
            cel="!has(self.objectives) || self.objectives.all(o, self.objectives.exists_one(p, p.metric == o.metric))",
            message="objectives must name each metric once",
            field="objectives",
            holds=lambda o: o.objectives is None or len({g.metric for g in o.objectives}) == len(o.objectives),
        ),
        Rule(
            cel=f"!has(self.objectives) || !(self.search.sampler in {_cel_list(SINGLE_OBJECTIVE_SAMPLERS)})",
            message="this sampler optimises one objective only: with objectives use tpe, nsga2, gp, random, qmc or "
            "grid",
            field="search.sampler",
            holds=lambda o: o.objectives is None or o.search.sampler not in SINGLE_OBJECTIVE_SAMPLERS,
        ),
        Rule(
            cel="!has(self.objectives) || self.search.earlyEvaluation.promote != 'predicted'",
            message="promote: predicted predicts one score: it cannot be combined with objectives",
            field="search.earlyEvaluation.promote",
            holds=lambda o: o.objectives is None or o.search.early_evaluation.promote != "predicted",
        ),
        Rule(
            cel="!has(self.dataEfficiency) || !has(self.dataset.train.rows) "
            "|| ((!has(self.dataEfficiency.sampleSizes) "
            "|| self.dataEfficiency.sampleSizes.all(n, n <= self.dataset.train.rows)) "
            "&& (!has(self.dataEfficiency.ladder) || self.dataEfficiency.ladder.to <= self.dataset.train.rows))",
            message="sample sizes must not exceed dataset.train.rows",
            field="dataEfficiency.sampleSizes",
            holds=lambda o: (
                o.data_efficiency is None
                or o.dataset.train.rows is None
                or max(o.data_efficiency.sizes()) <= o.dataset.train.rows
            ),
        ),
        Rule(
            cel="!has(self.dataset.samples) || !has(self.dataset.train.rows) "
            "|| self.dataset.samples <= self.dataset.train.rows",
            message="samples must not exceed train.rows",
            field="dataset.samples",
            holds=lambda o: (
                o.dataset.samples is None or o.dataset.train.rows is None or o.dataset.samples <= o.dataset.train.rows
            ),
        ),
    )


def _optional(path: tuple[str, ...]) -> bool:
    owner: Any = FineTuneStudySpec
    for part in path[:-1]:
        owner = owner.model_fields[part].annotation
    return owner.model_fields[path[-1]].default is None


FineTuneStudySpec.rules = (*(_immutable(p, _optional(p)) for p in IMMUTABLE), *FineTuneStudySpec.rules)  # type: ignore[assignment]
