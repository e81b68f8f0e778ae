"""Warm start (`spec.search.warmStart`): a study begins from earlier studies in its storage, as a step of its own.

`results`: each finished trial of a compatible study (`reuse_differences`) becomes a trial of this study, told to its
sampler as it was told to the earlier one, with its early and final records, so the planner never runs a stage for
it. `configs` (and `results` from an incompatible study): the best configurations are queued as this study's first
trials. Restart-safe: a copied or queued trial names its source (`SOURCE_ATTR`), so a crash halfway copies only what
is missing, and `WARM_ATTR` is written last. Only a study that has proposed no trial of its own is warm-started.

A shell runs `take_warm_start` once it opened the study's store, and acts on the `WarmStart` it returns (an Event,
a line on the console); a study the storage does not have fails the study, recorded as its end with this spec.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState as OptunaState

from sweetspot.api.resource import FineTuneStudy
from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.api.status import Reason
from sweetspot.core.planner import best_trial
from sweetspot.core.policies.base import rank_early
from sweetspot.core.records import Decision, Outcome, TrialView
from sweetspot.failpoints import failpoint
from sweetspot.storage.connect import safe_url
from sweetspot.storage.layout import (
    COPIED_ATTR,
    REUSED_ATTR,
    SOURCE_ATTR,
    SPEC_ATTR,
    TRIAL_ATTR,
    WARM_ATTR,
    manifest,
    origin,
    score_attrs,
    study_key,
    trial_view,
)
from sweetspot.storage.space import distributions
from sweetspot.storage.store import SearchStore
from sweetspot.storage.studies import named

REUSE_REQUIRES: tuple[tuple[str, ...], ...] = (
    ("model",),
    ("dataset",),
    ("objective", "metric"),
    ("objective", "direction"),
    ("objectives",),
    ("search", "space"),
    ("search", "earlyEvaluation", "policy"),
    ("search", "earlyEvaluation", "atFraction"),
    ("search", "earlyEvaluation", "signal"),
    ("search", "earlyEvaluation", "pruner"),
)
"""Spec fields (API names) an earlier study must share for its results to be reused: they decide what a trial's
scores and the value its sampler was told mean."""


class WarmStartError(Exception):
    """`spec.search.warmStart` names a study that the storage does not have."""


@dataclass(frozen=True)
class WarmStart:
    """What one `take_warm_start` step did. All empty: nothing now (the spec names no earlier study, the study took its
    warm start before, or it had started: `SearchStore.warm_summary` keeps what the study took, once)."""

    studies: tuple[str, ...] = ()
    """The Optuna studies it took from."""
    reused: int = 0
    """Trials copied with their results (`reuse: results`)."""
    enqueued: int = 0
    """Configurations queued as the first trials."""
    message: str = ""
    """What it took, in words (the `WarmStarted` Event, `sweetspot run`'s line)."""
    failed: str = ""
    """Why it failed the study (a study the storage does not have); the study's end records it too."""


def take_warm_start(store: SearchStore, resource: FineTuneStudy) -> WarmStart:
    """Take what `spec.search.warmStart` names from earlier studies into `store`'s study, once; what it did.

    A study the storage does not have fails the study: recorded as its end with this spec
    (`Reason.WARM_START_FAILED`), so every shell reports it and a corrected spec retries."""
    if store.spec.search.warm_start is None or store.warm_summary() is not None:
        return WarmStart()
    try:
        with store.holding():  # every copied record updates the study's attributes: read them once
            return store.retry(lambda: _take(store, resource), "warm start")
    except WarmStartError as exc:
        store.set_phase(Decision((), "Failed", Reason.WARM_START_FAILED, str(exc)), resource)
        return WarmStart(failed=str(exc))


def _take(store: SearchStore, resource: FineTuneStudy) -> WarmStart:
    warm = store.spec.search.warm_start
    assert warm is not None
    own = store.study.get_trials(deepcopy=False)
    if any(SOURCE_ATTR not in t.user_attrs for t in own):
        summary = {"studies": [], "reused": 0, "enqueued": 0, "message": "not applied: the study had started"}
        store.set_user_attr(WARM_ATTR, summary)
        return WarmStart()
    sources = _sources(store, resource, warm.studies)
    copied = {str(t.user_attrs[SOURCE_ATTR]): t.number for t in own if t.user_attrs.get(REUSED_ATTR)}
    queued = {str(t.user_attrs[SOURCE_ATTR]) for t in own if not t.user_attrs.get(REUSED_ATTR)}
    mine = manifest(resource)
    notes, candidates = [], []
    reused = 0
    for name, study_id in sources:
        attrs = store.storage.get_study_user_attrs(study_id)
        trials = store.storage.get_all_trials(study_id, deepcopy=False)
        differences = reuse_differences(attrs.get(SPEC_ATTR, {}), mine)
        tells_early = store.policy.tells_early
        views = [(t, trial_view(t, attrs.get(TRIAL_ATTR.format(t.number), {}), tells_early)) for t in trials]
        if warm.reuse == "results" and not differences:
            count = _copy(store, name, views, attrs, copied)
            reused += count
            notes.append(f"reused {count} trials of {name}")
            continue
        if warm.reuse == "results":
            notes.append(f"{name}: {', '.join(differences)} differ, so its configurations are reused")
        candidates += [(origin(name, t), view) for t, view in views]
    enqueued = _enqueue(store, candidates, queued) if candidates else 0
    if candidates:
        notes.append(f"queued {enqueued} configurations as the first trials")
    message = "; ".join(notes)[:1024]
    studies = [name for name, _ in sources]
    summary = {"studies": studies, "reused": reused, "enqueued": enqueued, "message": message}
    store.set_user_attr(WARM_ATTR, summary)  # last: its presence means done
    return WarmStart(tuple(studies), reused, enqueued, message)


def _sources(store: SearchStore, resource: FineTuneStudy, names: Sequence[str]) -> list[tuple[str, int]]:
    """The newest study of each name other than this one, with its id; raises `WarmStartError` for a name with
    none."""
    studies = [s for s in store.storage.get_all_studies() if s.study_name != store.name]
    found = []
    for name in names:
        key = study_key(resource.metadata.namespace, name)
        matching = named(studies, key)
        if not matching:
            raise WarmStartError(
                f"spec.search.warmStart.studies: no earlier study {name!r} (Optuna study {key!r}) in the storage "
                f"{safe_url(store.url)}"
            )
        ids = {s.study_name: store.storage.get_study_id_from_name(s.study_name) for s in matching}
        found.append(max(ids.items(), key=lambda item: item[1]))  # the newest: ids grow
    return found


def _copy(
    store: SearchStore,
    source: str,
    views: Sequence[tuple[optuna.trial.FrozenTrial, TrialView]],
    attrs: Mapping[str, Any],
    copied: dict[str, int],
) -> int:
    """Copy the finished trials of `source` with their records (those already copied: only a missing record)."""
    count = 0
    study_id = store.study_id()
    for trial, view in views:
        if not _reusable(trial, view, store.policy.tells_early):
            continue
        where = origin(source, trial)
        number = copied.get(where)
        record = attrs.get(TRIAL_ATTR.format(trial.number), {})
        if number is None:
            stages = [stage for stage in ("early", "final") if record.get(stage)]
            # A new trial takes every stage's scores, the final of a source told early (`FINAL_ATTR`) included.
            scored = {k: v for stage in stages for k, v in score_attrs(stage, Outcome(**record[stage])).items()}
            template = optuna.trial.create_trial(
                state=trial.state,
                values=trial.values if trial.state == OptunaState.COMPLETE else None,
                params=dict(trial.params),
                distributions=dict(trial.distributions),
                user_attrs={
                    **scored,
                    **trial.user_attrs,
                    SOURCE_ATTR: where,
                    REUSED_ATTR: True,
                    COPIED_ATTR: stages,
                },
                system_attrs=dict(trial.system_attrs),  # the constraint, and the grid sampler's visited point
                intermediate_values=dict(trial.intermediate_values),
            )
            number = store.storage.get_trial_number_from_id(
                store.storage.create_new_trial(study_id, template_trial=template)
            )
            copied[where] = number
            failpoint("warm-copy")
        if TRIAL_ATTR.format(number) not in store.user_attrs():
            kept = {k: record[k] for k in ("early", "final", "infeasible", "reason") if k in record}
            store.set_user_attr(TRIAL_ATTR.format(number), kept)
        count += 1
    return count


def _enqueue(store: SearchStore, candidates: Sequence[tuple[str, TrialView]], queued: set[str]) -> int:
    """Queue the best configurations among `candidates` (already queued ones count) as the next trials asked."""
    spec = store.spec
    space = distributions(spec)
    wanted = min(spec.search.early_evaluation.promote_top_k, spec.search.max_trials)
    picked = best_configs(spec, [view for _, view in candidates], wanted, space)
    where = {id(view): name for name, view in candidates}
    for view, params in picked:
        if where[id(view)] not in queued:
            store.study.enqueue_trial(params, user_attrs={SOURCE_ATTR: where[id(view)]})
            queued.add(where[id(view)])
    return len(picked)


def _lookup(spec: Mapping[str, Any], path: Sequence[str]) -> Any:
    value: Any = spec
    for part in path:
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def reuse_differences(earlier: Mapping[str, Any], mine: Mapping[str, Any]) -> list[str]:
    """The fields of `REUSE_REQUIRES` in which an earlier study's stored manifest differs from this one's: empty when
    its results mean here what they meant there."""
    theirs, ours = earlier.get("spec", {}), mine.get("spec", {})
    return [".".join(path) for path in REUSE_REQUIRES if _lookup(theirs, path) != _lookup(ours, path)]


def _reusable(trial: optuna.trial.FrozenTrial, view: TrialView, tells_early: bool) -> bool:
    """A finished trial whose records are complete (a crash can leave a told trial without its record)."""
    if trial.state not in (OptunaState.COMPLETE, OptunaState.PRUNED) or view.state == "failed":
        return False
    if view.infeasible:
        return True
    if view.early is None:
        return False
    return trial.state == OptunaState.PRUNED or tells_early or view.final is not None


def _fits(distribution: BaseDistribution, value: Any) -> bool:
    if isinstance(distribution, CategoricalDistribution):
        return value in distribution.choices
    if isinstance(distribution, FloatDistribution | IntDistribution) and isinstance(value, int | float):
        return bool(distribution.low <= value <= distribution.high)
    return False


def best_configs(
    spec: FineTuneStudySpec, views: Sequence[TrialView], count: int, space: Mapping[str, BaseDistribution]
) -> list[tuple[TrialView, dict[str, Any]]]:
    """The best `count` distinct configurations among earlier trials, with their parameters as this study's space
    takes them (a value outside it is left for the sampler to draw): by final score, then trials judged only early by
    the early signal."""
    feasible = [v for v in views if not v.infeasible and v.state != "failed"]
    ranked: list[TrialView] = []
    finished = [v for v in feasible if v.final is not None]
    while finished and (best := best_trial(spec, finished)) is not None:
        ranked.append(best)
        finished = [v for v in finished if v is not best]
    ranked += rank_early(spec, [v for v in feasible if v.final is None])
    picked: list[tuple[TrialView, dict[str, Any]]] = []
    for view in ranked:
        params = {n: v for n, v in view.params.items() if n in space and _fits(space[n], v)}
        if params and all(params != p for _, p in picked):
            picked.append((view, params))
        if len(picked) == count:
            break
    return picked
