"""One reconcile of one study: the storage and the cluster read, the plan applied, the status written.

Status is output, never input: whether a study ended, its phase and its counts come from the Optuna storage (which
records the study's end with the spec it ended with) and the study's runs on every pass, and the status is
rewritten to match, so a forged or malformed status is repaired (with a `StatusRepaired` Event) rather than obeyed.
While the storage does not answer, the status keeps its last picture with `Ready=False` and
`StorageReachable=False`.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import kubernetes
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from sweetspot.api.names import GROUP, PLURAL, VERSION
from sweetspot.api.resource import FineTuneStudy
from sweetspot.api.spec import FineTuneStudySpec, as_started, changeable, cluster_warnings, immutable_changes
from sweetspot.api.status import ConditionType, EventReason, Reason
from sweetspot.cluster import kube
from sweetspot.cluster.events import EventRecorder
from sweetspot.cluster.jobs import adapter_location
from sweetspot.cluster.memory import Memories, StudyMemory, Written
from sweetspot.cluster.runtimes import runtime_for
from sweetspot.core.loop import Note, apply, settle
from sweetspot.core.planner import wind_down
from sweetspot.core.records import Decision, Observed
from sweetspot.core.stats import summarize
from sweetspot.core.study_status import (
    build_status,
    condition,
    known_conditions,
    merge_patch,
    normalized,
    tampering,
    with_conditions,
)
from sweetspot.failpoints import failpoint
from sweetspot.observe.metrics import METRICS, StudyState
from sweetspot.storage.connect import StorageError, open_storage, safe_url
from sweetspot.storage.store import SearchStore
from sweetspot.storage.warm_start import WarmStart, take_warm_start

DEFAULT_STORAGE_ENV = "SWEETSPOT_DATABASE_URL"

log = logging.getLogger("sweetspot.operator")
MEMORIES = Memories()
EVENTS = EventRecorder()
"""Events are posted by this recorder, not kopf's `kopf.event`: it aggregates a repeated Event into one with a
count, as Kubernetes' own recorder does (a study of 40 trials posts 40 `StageStarted` otherwise unchanged), and
kopf's log-to-Event bridge would also post kopf's own chatter on every timer run."""


def prepare_default_storage() -> None:
    """Create the Optuna schema in the default storage once, at start-up (never per study or per trial).

    An unreachable database is not fatal: studies report `StorageReachable=False` until it answers."""
    url = os.environ.get(DEFAULT_STORAGE_ENV)
    if not url:
        return
    try:
        open_storage(url)
    except StorageError as exc:
        log.warning("the default storage is not ready yet: %s", exc)
    else:
        log.info("default storage ready: %s", safe_url(url))


def storage_url(study: FineTuneStudy) -> str:
    """The study's Secret when it names one, else the operator's default (never logged)."""
    ref = study.spec.storage.secret_ref
    if ref is None:
        url = os.environ.get(DEFAULT_STORAGE_ENV)
        if not url:
            raise StorageError(f"no storage: set spec.storage.secretRef or the operator's {DEFAULT_STORAGE_ENV}")
        return url
    try:
        return kube.secret_value(study.metadata.namespace, ref.name, ref.key)
    except kube.SecretError as exc:
        raise StorageError(str(exc)) from None


def _store(study: FineTuneStudy, memory: StudyMemory) -> tuple[SearchStore, WarmStart]:
    """The study's store, opened again when its spec changed, and what the warm start after opening did."""
    if memory.store is None or memory.store.spec != study.spec:
        store = SearchStore.open(storage_url(study), study)
        warm = take_warm_start(store, study)
        memory.store = store
        return store, warm
    return memory.store, WarmStart()


def started_spec(stored: Mapping[str, Any]) -> FineTuneStudySpec | None:
    """The spec the study last ran with, None before its first run."""
    return FineTuneStudySpec.model_validate(stored["spec"]) if stored.get("spec") else None


@dataclass(frozen=True)
class Pass:
    """What one reconcile wants the status to be."""

    status: dict[str, Any]
    ended: bool = False
    """The storage records the study's end with the spec it has (nothing will change until the spec does)."""
    remembered: bool = False
    """Nothing was read: the status this process last wrote, for a study that had ended."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def parse_study(body: Mapping[str, Any]) -> FineTuneStudy:
    return FineTuneStudy.model_validate({k: _plain(v) for k, v in body.items() if k != "status"})


def _post(body: Any, best_adapter: Callable[[], str | None] | None = None) -> Any:
    """Post each note as an Event; a study that succeeded says where its best adapter is (`best_adapter`)."""

    def hear(note: Note) -> None:
        message = note.message
        if note.reason == EventReason.STUDY_SUCCEEDED and best_adapter is not None and (where := best_adapter()):
            message += f"; best adapter at {where} (run it with sweetspot predict)"
        EVENTS.post(body, note.reason, message, warning=note.warning)

    return hear


def _best_adapter(study: FineTuneStudy, store: SearchStore) -> str | None:
    trials, sweep = store.snapshot()
    best = summarize(study.spec, trials, sweep).best
    return adapter_location(study, best) if best is not None else None


def _key(meta: Mapping[str, Any]) -> tuple[str, str, str]:
    namespace, name = str(meta.get("namespace")), str(meta.get("name"))
    return namespace, name, str(meta.get("uid") or f"{namespace}/{name}")


def reconcile_study(body: Mapping[str, Any]) -> Pass:
    """One reconcile of one study: plan and apply until nothing more can happen now; returns the status it wants.

    Whether the study ended, its phase and its counts come from the storage and the cluster's runs on every pass;
    the status the object has is never read as truth (see `sweetspot.core.study_status`)."""
    meta = body["metadata"]
    generation = meta.get("generation")
    namespace, name, uid = _key(meta)
    memory = MEMORIES.of(f"{namespace}/{name}", uid)
    current = body.get("status")
    written = memory.written
    last = written.status if written is not None else (current if not tampering(current, None) else None)
    previous = known_conditions(last)
    now = _now()
    if written is not None and written.ended and written.generation == generation:
        # Ended at this generation, as the storage said when this process last looked: no storage round trips.
        METRICS.operator.succeeded()
        return Pass(written.status, ended=True, remembered=True)
    try:
        study = parse_study(body)
    except ValidationError as exc:
        message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False))
        METRICS.operator.reconcile_errors.labels("invalid").inc()
        invalid = condition(previous, ConditionType.READY, False, Reason.INVALID_SPEC, message, generation, now)
        return Pass(with_conditions(last, [invalid]))
    try:
        store, warm = _store(study, memory)
        hear = _post(body, lambda: _best_adapter(study, store))
        if warm.message:  # the warm start this open just did (once per study)
            EVENTS.post(body, EventReason.WARM_STARTED, warm.message)
        if warm.failed:
            EVENTS.post(body, Reason.WARM_START_FAILED, warm.failed, warning=True)
        with store.holding():  # one reconcile: the study's records read once (see SearchStore)
            before = started_spec(store.stored_spec())
            refused = ""
            if before is not None and (changed := immutable_changes(before, study.spec)):
                refused = (
                    f"{', '.join(changed)} cannot change once a study has started "
                    f"(only {changeable()} can); it runs on as it started"
                )
                if previous.get(ConditionType.READY, {}).get("reason") != Reason.IMMUTABLE_FIELD_CHANGED:
                    EVENTS.post(body, Reason.IMMUTABLE_FIELD_CHANGED, refused, warning=True)
                study = study.model_copy(update={"spec": as_started(before, study.spec)})
            store.update_spec(study)
            runtime = runtime_for(study, MEMORIES)
            ended = store.ended(study)
            if ended is None and not memory.warned:  # as `sweetspot validate` says it, once while the study runs
                memory.warned = True
                for warning in cluster_warnings(study.spec):
                    EVENTS.post(body, EventReason.NO_OUTPUT_VOLUME, warning, warning=True)
            if ended is None:
                decision = settle(study, store, runtime, hear)
            else:
                decision = Decision((), ended["phase"], ended["reason"], ended.get("message", ""))
                # What a failed study still owes (nothing, unless a crash interrupted it).
                if decision.phase == "Failed":
                    trials, sweep = store.snapshot()
                    for action in wind_down(Observed(trials, sweep, runtime.observe(study)), decision.reason):
                        hear(apply(study, store, runtime, action))
            trials, sweep = store.snapshot()
            warm_start = store.warm_summary() if study.spec.search.warm_start is not None else None
    except StorageError as exc:
        memory.store = None
        EVENTS.post(body, Reason.STORAGE_UNREACHABLE, str(exc), warning=True, persistent=True)
        METRICS.studies.storage_down(namespace, name)
        METRICS.operator.reconcile_errors.labels("storage").inc()
        unreachable = Reason.STORAGE_UNREACHABLE
        down = [
            condition(previous, ConditionType.READY, False, unreachable, f"the Optuna storage does not answer: {exc}",
                      generation, now),
            condition(previous, ConditionType.STORAGE_REACHABLE, False, unreachable, str(exc), generation, now),
        ]  # fmt: skip
        return Pass(with_conditions(last, down))
    summary = summarize(study.spec, trials, sweep)
    adapter = adapter_location(study, summary.best) if summary.best is not None else None
    status = build_status(
        decision, summary, previous, generation, study.spec, trials, store.name, now, refused, warm_start, adapter
    )
    over = status.get("overBudget")
    if over is not None and (last or {}).get("overBudget") != over:
        EVENTS.post(body, EventReason.BUDGET_LOWERED, over["message"])
    METRICS.publish(StudyState.of(namespace, name, study.spec, trials, sweep, decision.phase))
    return Pass(status, ended=decision.finished)


def write_status(api: kubernetes.client.CustomObjectsApi, body: Mapping[str, Any], wanted: Pass) -> None:
    """Make the object's status what the pass wants, with the fewest changes (nothing when it already is), and say
    so with an Event when the status was not what this operator had written: forged, restored or malformed."""
    meta = body["metadata"]
    namespace, name, uid = _key(meta)
    memory = MEMORIES.of(f"{namespace}/{name}", uid)
    current = body.get("status")
    problem = tampering(current, memory.written.status if memory.written is not None else None)
    if not wanted.remembered:
        failpoint("write-status")
    if not problem and normalized(current) == normalized(wanted.status):
        memory.written = Written(meta.get("generation"), wanted.status, wanted.ended)
        return
    patch = {"status": merge_patch(current, wanted.status)}
    api.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name, patch, _content_type="application/merge-patch+json"
    )
    memory.written = Written(meta.get("generation"), wanted.status, wanted.ended)
    if problem:
        message = f"the status was {problem}; rewritten from the Optuna storage and the cluster's runs"
        EVENTS.post(body, EventReason.STATUS_REPAIRED, message, warning=True)


def reconcile_and_write(api: kubernetes.client.CustomObjectsApi, body: Mapping[str, Any]) -> None:
    with METRICS.operator.reconcile_seconds.time():
        try:
            write_status(api, body, reconcile_study(body))
        except ApiException:
            METRICS.operator.reconcile_errors.labels("cluster").inc()
            raise  # kopf retries on the next tick
        except Exception:
            METRICS.operator.reconcile_errors.labels("other").inc()
            raise


def reconcile_fresh(namespace: str, name: str) -> None:
    """Reconcile from the study as the API server has it now, and write its status patch directly."""
    api = kubernetes.client.CustomObjectsApi()
    try:
        body = cast(dict[str, Any], api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name))
    except ApiException as exc:
        if exc.status == 404:
            return  # deleted meanwhile
        raise
    if body.get("metadata", {}).get("deletionTimestamp"):
        return
    reconcile_and_write(api, body)


def forget(namespace: str, name: str) -> StudyMemory | None:
    """Drop what this process remembers of a deleted study."""
    memory = MEMORIES.drop(f"{namespace}/{name}")
    if memory is not None:
        EVENTS.forget(namespace, memory.uid)
    return memory
