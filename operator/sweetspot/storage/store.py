"""A FineTuneStudy's Optuna study as the plan-and-apply loop's `Store` (`sweetspot.core.store`).

Writes are ordered so that a crash between two of them is repaired by the next snapshot: the Optuna
state changes first (tell), the Sweetspot record second, and `snapshot()` presents a trial whose record is
behind its Optuna state as still needing that record, which the planner then proposes again. What is kept where
is `sweetspot.storage.layout`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict
from typing import Any, TypeVar, assert_never

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState as OptunaState

from sweetspot.api.resource import FineTuneStudy
from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.core.policies.registry import policy_of
from sweetspot.core.records import (
    Action,
    AskTrials,
    Decision,
    FailTrial,
    RecordEarly,
    RecordFailure,
    RecordFinal,
    RecordInfeasible,
    RecordSweepPoint,
    StartRun,
    StopRun,
    SweepView,
    TrialView,
)
from sweetspot.failpoints import failpoint
from sweetspot.storage.connect import open_storage, retrying
from sweetspot.storage.layout import (
    CONSTRAINT_KEY,
    FAILURE_ATTR,
    FINAL_ATTR,
    INFEASIBLE_ATTR,
    PHASE_ATTR,
    SPEC_ATTR,
    TRIAL_ATTR,
    WARM_ATTR,
    digest,
    manifest,
    score_attrs,
    scores,
    study_key,
    sweep_attr,
    sweep_views,
    trial_view,
)
from sweetspot.storage.space import distributions
from sweetspot.storage.studies import study_of

T = TypeVar("T")


def _number(trial: optuna.trial.FrozenTrial) -> int:
    return trial.number


class SearchStore:
    """A FineTuneStudy's Optuna study: snapshots for the planner, and the planner's records applied to it.

    Reads go to the storage every time, except inside `holding()`: there the study's user attributes (where the
    trial records live) are read once and kept current by this store's own writes, and the trials are read again
    only after a write that may have changed them. A reconcile reads the same attributes a dozen times (spec, phase,
    snapshot per pass, each record before it is updated); reading them once cut a stage's SQL statements by half.
    Sound because a study has one writer at a time: the operator runs one reconcile of a study at a time, and the
    planner writes only through this store."""

    def __init__(
        self, url: str, study: optuna.Study, spec: FineTuneStudySpec, storage: optuna.storages.BaseStorage
    ) -> None:
        self.url = url
        """What messages name the storage by (its URL, the password masked when shown)."""
        self.study = study
        self.spec = spec
        self.storage = storage
        """The study's storage, for writes that need no `optuna.trial.Trial` (whose construction reads the whole
        trial back: a third of the statements of recording an early result)."""
        self.policy = policy_of(spec)
        self._snapshot: dict[int, optuna.trial.FrozenTrial] = {}
        self._id: int | None = None
        self._ids_by_number: dict[int, int] = {}
        self._holding = False
        self._attrs: dict[str, Any] | None = None
        self._trials: list[optuna.trial.FrozenTrial] | None = None

    @classmethod
    def open(cls, url: str, resource: FineTuneStudy) -> SearchStore:
        """The resource's study in the storage at `url`: created on first use, reloaded after that (see `on`)."""
        return cls.on(open_storage(url), resource, url)

    @classmethod
    def on(cls, storage: optuna.storages.BaseStorage, resource: FineTuneStudy, url: str = "memory") -> SearchStore:
        """The resource's study in `storage` (any Optuna storage: the in-memory one for the HPO replay and tests):
        created on first use, reloaded after that; `url`: what messages name the storage by. Opening only: warm
        start is a step of its own (`sweetspot.storage.warm_start.take_warm_start`)."""
        key = study_key(resource.metadata.namespace, resource.metadata.name)
        study = retrying(url, lambda: study_of(storage, resource), f"opening study {key}")
        return cls(url, study, resource.spec, storage)

    @property
    def name(self) -> str:
        return self.study.study_name

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Within: the user attributes read once, the trials only again after a write (see the class docstring)."""
        self._holding = True
        try:
            yield
        finally:
            self._holding, self._attrs, self._trials = False, None, None

    def study_id(self) -> int:
        """The study's id in its storage."""
        if self._id is None:
            self._id = self.storage.get_study_id_from_name(self.study.study_name)
        return self._id

    def user_attrs(self) -> dict[str, Any]:
        """The study's user attributes (not to be mutated: callers copy what they change). Read from the storage as it
        stores them, without `Study.user_attrs`' deep copy of every trial record."""
        if self._attrs is not None:
            return self._attrs
        attrs = self.storage.get_study_user_attrs(self.study_id())
        if self._holding:
            self._attrs = attrs
        return attrs

    def set_user_attr(self, key: str, value: Any) -> None:
        """Set a study user attribute (kept current in the held attributes, see `holding`)."""
        self.study.set_user_attr(key, value)
        if self._attrs is not None:
            self._attrs[key] = json.loads(json.dumps(value))  # as the storage returns it

    def stored_spec(self) -> dict[str, Any]:
        """The manifest the study was last run with."""
        return self.retry(lambda: dict(self.user_attrs().get(SPEC_ATTR, {})), "reading the spec")

    def update_spec(self, resource: FineTuneStudy) -> None:
        value = manifest(resource)
        self.retry(lambda: self._set_attr_if_changed(SPEC_ATTR, value), "recording the spec")

    def _set_attr_if_changed(self, key: str, value: Any) -> None:
        if self.user_attrs().get(key) != value:
            self.set_user_attr(key, value)

    def retry(self, operation: Callable[[], T], what: str) -> T:
        """Run `operation` on this study, retrying transient storage errors (`retrying`); after a failed attempt the
        held attributes and trials are read afresh."""

        def attempt() -> T:
            try:
                return operation()
            except Exception:
                self._attrs, self._trials = None, None  # a write may or may not have landed: read afresh
                raise

        return retrying(self.url, attempt, f"{self.name}: {what}")

    # Reading.

    def snapshot(self) -> tuple[list[TrialView], list[SweepView]]:
        """Trials and learning-curve points as the planner reads them."""

        def read() -> tuple[list[optuna.trial.FrozenTrial], dict[str, Any]]:
            trials = self._trials if self._trials is not None else self.study.get_trials(deepcopy=False)
            if self._holding:
                self._trials = trials
            return trials, self.user_attrs()

        frozen, attrs = self.retry(read, "reading trials")
        self._snapshot = {t.number: t for t in frozen}
        # A WAITING trial is a configuration queued by warm start: the planner sees it once `AskTrials` takes it.
        trials = [
            trial_view(t, attrs.get(TRIAL_ATTR.format(t.number), {}), self.policy.tells_early)
            for t in frozen
            if t.state != OptunaState.WAITING
        ]
        return trials, sweep_views(attrs)

    def phase(self) -> dict[str, Any]:
        return self.retry(lambda: dict(self.user_attrs().get(PHASE_ATTR, {})), "reading the phase")

    def ended(self, resource: FineTuneStudy) -> dict[str, Any] | None:
        """The study's end as the storage recorded it (phase, reason, message), when it ended with the spec it has
        now; None while it runs, or once its spec changed since (a raised budget resumes it). The storage's own
        record: a status patch cannot forge it."""
        recorded = self.phase()
        if recorded.get("phase") in ("Succeeded", "Failed") and recorded.get("spec") == digest(resource):
            return recorded
        return None

    # Writing.

    def _record(self, trial: int) -> dict[str, Any]:
        record: dict[str, Any] = json.loads(json.dumps(self.user_attrs().get(TRIAL_ATTR.format(trial), {})))
        return record

    def _save(self, trial: int, record: Mapping[str, Any]) -> None:
        self.set_user_attr(TRIAL_ATTR.format(trial), dict(record))

    def _frozen(self, number: int) -> optuna.trial.FrozenTrial:
        """The trial as the last snapshot read it (the planner's records follow a snapshot: reading every trial
        again per record was a third of a busy operator's storage time); read afresh when it is newer."""
        if number not in self._snapshot:
            self._snapshot = {t.number: t for t in self.study.get_trials(deepcopy=False)}
        return self._snapshot[number]

    def _id_of(self, number: int) -> int:
        """The storage's id of trial `number` (fixed once the trial exists: asked once, kept)."""
        if number not in self._ids_by_number:
            self._ids_by_number[number] = self.storage.get_trial_id_from_study_id_trial_number(self.study_id(), number)
        return self._ids_by_number[number]

    def _trial(self, number: int) -> optuna.trial.Trial:
        return optuna.trial.Trial(self.study, self._id_of(number))

    def _set_trial_user_attr(self, number: int, key: str, value: Any) -> None:
        """What `Trial.set_user_attr` stores, without building a `Trial`; nothing once the trial has finished."""
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            self.storage.set_trial_user_attr(self._id_of(number), key, value)

    def _set_trial_user_attrs(self, number: int, attrs: Mapping[str, Any]) -> None:
        """Each of `attrs` as `_set_trial_user_attr` stores it; nothing once the trial has finished (a stage recorded
        again after a crash that followed its tell: the attributes were written before it)."""
        frozen = self._frozen(number)
        if frozen.state.is_finished():
            return
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            for key, value in attrs.items():
                self.storage.set_trial_user_attr(self._id_of(number), key, value)

    def _constrain(self, number: int, infeasible: bool) -> None:
        """Record feasibility as an Optuna constraint (> 0 violates it), once: constraint-aware samplers (TPE,
        GP) then steer away from configurations that ran out of memory. Stored where `Trial.set_constraint` stores
        it, without building a `Trial` (GP needs a constraint on every trial, so feasible ones get 0)."""
        frozen = self._frozen(number)
        if frozen.state.is_finished() or CONSTRAINT_KEY in frozen.system_attrs:
            return
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):  # finished since the snapshot
            self.storage.set_trial_system_attr(self._id_of(number), CONSTRAINT_KEY, 1.0 if infeasible else 0.0)

    def apply(self, action: Action) -> list[int]:
        """Apply one planner record or ask; returns the numbers of trials asked (empty otherwise)."""
        return self.retry(lambda: self._apply(action), type(action).__name__)

    def _held(self, trial: optuna.trial.FrozenTrial) -> None:
        """Keep the held trials current with a trial as it now is (a new one, or one that `tell` returned), rather
        than reading them all again on the next pass: a trial's state changes only through this store."""
        if self._trials is not None:
            self._trials = sorted([*(t for t in self._trials if t.number != trial.number), trial], key=_number)

    def _tell(
        self, number: int, value: float | Sequence[float] | None = None, state: OptunaState | None = None
    ) -> None:
        self._held(self.study.tell(number, value, state=state, skip_if_finished=True))

    def _ask(self, space: dict[str, BaseDistribution]) -> int:
        trial = self.study.ask(fixed_distributions=space)
        if self._trials is not None:
            # As a read would return it: running, with the parameters just drawn (and no attributes yet).
            self._held(
                optuna.trial.FrozenTrial(
                    number=trial.number,
                    state=OptunaState.RUNNING,
                    value=None,
                    datetime_start=trial.datetime_start,
                    datetime_complete=None,
                    params=trial.params,
                    distributions=trial.distributions,
                    user_attrs=trial.user_attrs,  # a queued configuration's source
                    system_attrs={},
                    intermediate_values={},
                    trial_id=self._id_of(trial.number),
                )
            )
        return trial.number

    def _apply(self, action: Action) -> list[int]:
        match action:
            case AskTrials():
                space = distributions(self.spec)
                asked = []
                for _ in range(action.count):
                    asked.append(self._ask(space))
                    failpoint("ask")
                return asked
            case RecordEarly():
                self._record_early(action)
            case RecordFinal():
                self._record_final(action)
            case RecordInfeasible():
                self._record_infeasible(action)
            case RecordFailure():
                self._record_failure(action)
            case FailTrial():
                self._fail(action)
            case RecordSweepPoint():
                self._record_sweep_point(action)
            case StartRun() | StopRun():
                raise TypeError(f"{type(action).__name__} is the runtime's to apply, not the store's")
            case _:
                assert_never(action)
        return []

    def _record_early(self, action: RecordEarly) -> None:
        self._constrain(action.trial, infeasible=False)
        self._set_trial_user_attrs(action.trial, score_attrs("early", action.outcome))  # before the tell or prune
        record = self._record(action.trial)
        if action.pruned is not None:
            # Judged by the policy (several objectives: Optuna cannot prune them). The record first, marked not
            # applied, then the stop, then applied: a crash between them leaves either a running trial whose early
            # result is recorded again, or a pruned one whose early record still shows (`layout.trial_view`).
            record["early"], record["earlyApplied"] = asdict(action.outcome), not action.pruned
            if action.pruned:
                self._save(action.trial, record)
                self._tell(action.trial, state=OptunaState.PRUNED)
                failpoint("tell")
                record["earlyApplied"] = True
        elif action.report_to_pruner:
            record["early"], record["earlyApplied"] = asdict(action.outcome), False
            self._save(action.trial, record)
            trial = self._trial(action.trial)
            self._trials = None  # its constraint and intermediate value: read again
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                # One rung for every trial: the early point is step 1 whatever a trial's step count.
                assert isinstance(action.value, float), "a pruner judges one objective"
                trial.report(action.value, step=1)
                if trial.should_prune():
                    self._tell(action.trial, state=OptunaState.PRUNED)
            record["earlyApplied"] = True
        else:
            self._tell(action.trial, action.value)
            failpoint("tell")
            record["early"] = asdict(action.outcome)
        self._save(action.trial, record)

    def _record_final(self, action: RecordFinal) -> None:
        if action.value is not None:
            self._set_trial_user_attrs(action.trial, score_attrs("final", action.outcome))  # before its tell
            self._tell(action.trial, action.value)
            failpoint("tell")
        else:
            # Told its early score already (proxy): finished, so its final goes on the study. Before the record,
            # so a crash between them writes it again with the record the planner proposes again.
            self._set_attr_if_changed(FINAL_ATTR.format(action.trial), scores(action.outcome))
        record = self._record(action.trial)
        record["final"] = asdict(action.outcome)
        self._save(action.trial, record)

    def _record_infeasible(self, action: RecordInfeasible) -> None:
        self._set_trial_user_attr(action.trial, INFEASIBLE_ATTR, True)
        self._constrain(action.trial, infeasible=True)
        minimize = optuna.study.StudyDirection.MINIMIZE
        worst = [float("inf") if d == minimize else 0.0 for d in self.study.directions]
        self._tell(action.trial, worst)
        record = self._record(action.trial)
        record.update(infeasible=True, reason=f"out of memory in stage {action.stage}: {action.message}"[:500])
        self._save(action.trial, record)

    def _fail(self, action: FailTrial) -> None:
        # Shown by optuna-dashboard next to the trial (not stored once it finished: the record says why then).
        self._set_trial_user_attr(action.trial, FAILURE_ATTR, action.reason[:500])
        self._tell(action.trial, state=OptunaState.FAIL)
        record = self._record(action.trial)
        # A proxy trial is already COMPLETE in Optuna (told its early score) when its final stage gives up:
        # the record says it failed, once, so the planner neither fails it again nor waits for its final.
        record.update(gaveUp=True, reason=action.reason[:500], cancelled=action.cancelled)
        self._save(action.trial, record)

    def _record_sweep_point(self, action: RecordSweepPoint) -> None:
        key = sweep_attr(action.samples, action.repeat)
        point = dict(self.user_attrs().get(key, {}))
        point["outcome"] = asdict(action.outcome)
        self.set_user_attr(key, point)

    def _record_failure(self, action: RecordFailure) -> None:
        bucket = "disrupted" if action.disruption else "failed"
        key = action.key
        if key.kind == "sweep":
            attr = sweep_attr(key.number, key.repeat)
            point = dict(self.user_attrs().get(attr, {}))
            point[bucket] = sorted({*point.get(bucket, []), key.attempt})
            self.set_user_attr(attr, point)
            return
        record = self._record(key.number)
        attempts = record.setdefault(bucket, {})
        attempts[key.stage] = sorted({*attempts.get(key.stage, []), key.attempt})
        record["reason"] = action.reason[:500]
        self._save(key.number, record)

    def set_phase(self, decision: Decision, resource: FineTuneStudy) -> bool:
        """Record the study's phase, and with it the spec it has (see `ended`); True when the phase changed."""
        value = {
            "phase": decision.phase,
            "reason": decision.reason,
            "message": decision.message[:500],
            "spec": digest(resource),
        }

        def record() -> bool:
            before = self.user_attrs().get(PHASE_ATTR, {})
            if before != value:
                self.set_user_attr(PHASE_ATTR, value)
            return bool(before.get("phase") != decision.phase)

        return self.retry(record, "recording the phase")

    # Warm start.
    def warm_summary(self) -> dict[str, Any] | None:
        """What warm start took from earlier studies (`WARM_ATTR`); None when the study has none (yet)."""
        done = self.retry(lambda: self.user_attrs().get(WARM_ATTR), "reading the warm start")
        return dict(done) if done is not None else None
