"""What Sweetspot keeps where in an Optuna study: the attribute names, and a trial as the planner reads it.

One Optuna study per FineTuneStudy, named `<namespace>/<name>` (both DNS labels, so two namespaces never
collide), created once and reloaded on restart. The study records the resource's uid: a FineTuneStudy deleted
with `onDelete: keep` and created again under the same name gets a study of its own, `<namespace>/<name>#<uid8>`,
rather than inheriting the old trials. Trials are Optuna trials (ask/tell); what Optuna has no
place for (stage outcomes, failed attempts, the learning curve, the spec) is kept in the study's user
attributes, in the same database, so the full history lives in one place and the optuna-dashboard shows it.

Optuna's own tools see the study as Sweetspot does: the study's metric name says what the sampler learns from
(`Policy.objective_name`: "early validation loss at 20% of steps" under `proxy`, "final F1" under `prune`), and a
trial's scores at each stage are flat numbers in its user attributes (`early:f1`, `final:loss`, ...: `score_attrs`),
which optuna-dashboard's trial table sorts by and its plots offer as targets. Optuna refuses to update a finished
trial, so they are written before the tell that finishes it. A `proxy` trial is finished by its early tell (the
sampler must learn from it during the search) long before it is promoted, so its final scores go on the study
instead (`final:trial:<number>`, among the study user attributes optuna-dashboard lists): keeping the trial RUNNING
until its final would hide its early score from the sampler, and a second trial for the final would feed the sampler
a point it never proposed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import TrialState as OptunaState

from sweetspot.api.resource import FineTuneStudy
from sweetspot.core.records import Outcome, SweepView, TrialView
from sweetspot.core.records import TrialState as State

SPEC_ATTR = "sweetspot:spec"
UID_ATTR = "sweetspot:uid"
PHASE_ATTR = "sweetspot:phase"
TRIAL_ATTR = "sweetspot:trial:{}"
SWEEP_ATTR = "sweetspot:sweep:{}"
INFEASIBLE_ATTR = "sweetspot:infeasible"
FAILURE_ATTR = "sweetspot:failure"
"""A failed trial's reason, in the trial's own user attributes (what optuna-dashboard shows next to it)."""
MEMORY_CONSTRAINT = "outOfMemory"
CONSTRAINT_KEY = f"constraints:{MEMORY_CONSTRAINT}"
"""The system attribute `Trial.set_constraint(MEMORY_CONSTRAINT, ...)` writes, and samplers read."""
WARM_ATTR = "sweetspot:warmStart"
"""What `spec.search.warmStart` took (a study attribute): written last, so its presence means the import is done."""
SOURCE_ATTR = "sweetspot:source"
"""A trial's user attribute: the trial it came from by warm start (`namespace/name trial N`, where it was trained)."""
FINAL_ATTR = "final:trial:{}"
"""A study user attribute: the final scores (`scores`) of a trial already finished when its final stage ended (a
`proxy` trial, told its early score), which Optuna no longer lets the trial itself take."""
REUSED_ATTR = "sweetspot:reused"
"""A trial's user attribute: its results were copied from `SOURCE_ATTR` (it was never trained in this study)."""
COPIED_ATTR = "sweetspot:copied"
"""A reused trial's user attribute: the stages whose results were copied (a stage it runs here later, such as the
final of a trial copied judged early only, is this study's compute)."""

STATES: dict[OptunaState, State] = {
    OptunaState.RUNNING: "running",
    OptunaState.WAITING: "running",
    OptunaState.COMPLETE: "complete",
    OptunaState.PRUNED: "pruned",
    OptunaState.FAIL: "failed",
}


def study_key(namespace: str, name: str) -> str:
    """The Optuna study of the FineTuneStudy `namespace/name` (a re-created one's is `namespace/name#uid8`)."""
    return f"{namespace}/{name}"


def manifest(resource: FineTuneStudy) -> dict[str, Any]:
    """The manifest a study keeps (`SPEC_ATTR`): its name and spec."""
    return resource.model_dump(mode="json", include={"metadata": {"name", "namespace"}, "spec": True})


def digest(resource: FineTuneStudy) -> str:
    """A short fingerprint of the manifest a study runs with (what `SearchStore.ended` compares)."""
    return hashlib.sha256(json.dumps(manifest(resource), sort_keys=True).encode()).hexdigest()[:16]


def sweep_attr(samples: int, repeat: int) -> str:
    """`sweetspot:sweep:200` for the first run at a size, `sweetspot:sweep:200:1` for its second repeat."""
    return SWEEP_ATTR.format(samples) + (f":{repeat}" if repeat else "")


def sweep_point(attr: str) -> tuple[int, int]:
    """The size and repeat a `sweep_attr` names."""
    samples, _, repeat = attr.removeprefix(SWEEP_ATTR.format("")).partition(":")
    return int(samples), int(repeat or 0)


def scores(outcome: Outcome) -> dict[str, float | int]:
    """A stage's scores as Optuna's tools see them (flat numbers); `fraction` is of the trial's planned steps: what
    an early stage was asked to stop at, else where it stopped."""
    fraction = outcome.judged_at
    if fraction is None:
        fraction = outcome.step / outcome.planned_steps if outcome.planned_steps else 1.0
    return {
        "f1": outcome.f1,
        "precision": outcome.precision,
        "recall": outcome.recall,
        "loss": outcome.loss,
        "accuracy": outcome.accuracy,
        "fraction": round(fraction, 4),
        "step": outcome.step,
    }


def score_attrs(stage: str, outcome: Outcome) -> dict[str, float | int]:
    """A stage's scores as trial user attributes: `early:f1`, `final:step`, ..."""
    return {f"{stage}:{name}": value for name, value in scores(outcome).items()}


def outcome_of(data: Mapping[str, Any] | None) -> Outcome | None:
    return Outcome(**data) if data else None


def origin(study: str, trial: optuna.trial.FrozenTrial) -> str:
    """Where a trial was trained: its own source when it was itself reused by warm start, else this study's trial."""
    if trial.user_attrs.get(REUSED_ATTR) and SOURCE_ATTR in trial.user_attrs:
        return str(trial.user_attrs[SOURCE_ATTR])
    return f"{study} trial {trial.number}"


def trial_view(trial: optuna.trial.FrozenTrial, record: Mapping[str, Any], tells_early: bool) -> TrialView:
    """A trial as the planner reads it: its Optuna state and parameters with its Sweetspot record (`TRIAL_ATTR`);
    `tells_early`: the study's policy tells the sampler the early score (`Policy.tells_early`)."""
    state: State = "failed" if record.get("gaveUp") else STATES[trial.state]
    early = outcome_of(record.get("early"))
    # Repairs after a crash between the Optuna write and the record (see `sweetspot.storage.store`). A pruned trial is
    # final in Optuna, so its early record stands even when the crash came before it was marked applied.
    if early is not None and not record.get("earlyApplied", True) and state != "pruned":
        early = None
    if early is not None and tells_early and state == "running":
        early = None
    final = outcome_of(record.get("final"))
    return TrialView(
        number=trial.number,
        state=state,
        params=dict(trial.params),
        early=early,
        final=final,
        infeasible=bool(record.get("infeasible") or trial.user_attrs.get(INFEASIBLE_ATTR)),
        failed_attempts={s: frozenset(a) for s, a in record.get("failed", {}).items()},
        disrupted_attempts={s: frozenset(a) for s, a in record.get("disrupted", {}).items()},
        reason=record.get("reason", ""),
        cancelled=bool(record.get("cancelled")),
        source=str(trial.user_attrs.get(SOURCE_ATTR, "")),
        reused=bool(trial.user_attrs.get(REUSED_ATTR)),
        copied=frozenset(trial.user_attrs.get(COPIED_ATTR, ())),
    )


def sweep_views(attrs: Mapping[str, Any]) -> list[SweepView]:
    """The learning-curve points kept in a study's user attributes (`sweep_attr`), by size then repeat."""
    sweep = [
        SweepView(
            samples=samples,
            outcome=outcome_of(value.get("outcome")),
            failed_attempts=frozenset(value.get("failed", [])),
            disrupted_attempts=frozenset(value.get("disrupted", [])),
            repeat=repeat,
        )
        for key, value in attrs.items()
        if key.startswith(SWEEP_ATTR.format(""))
        for samples, repeat in [sweep_point(key)]
    ]
    return sorted(sweep, key=lambda s: (s.samples, s.repeat))
