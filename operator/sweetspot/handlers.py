"""The kopf operator: reconcile each FineTuneStudy into trial Jobs. The only module that talks to the API server.

Every study gets a periodic reconcile (a kopf timer, run in a worker thread because Optuna and SQLAlchemy
are synchronous): read the trials from Optuna and the study's Jobs from the cluster, run the planner, apply
its actions (ask/tell in Optuna, create or delete Jobs), and write one status patch. A stage's Job finishing
also reconciles its study at once (a watch on Jobs), so the next stage starts without waiting for the timer;
one reconcile of a study runs at a time, and requests that arrive meanwhile fold into one more pass. Every action is
idempotent (deterministic names, 409 on create counts as done), so a restarted operator picks up exactly where
the last one stopped: it finds its Jobs by label and their results in their pods' termination messages.

Status is output, never input: whether a study ended, its phase and its counts come from the Optuna storage (which
records the study's end with the spec it ended with) and the Jobs on every pass, and the status is rewritten to
match, so a forged or malformed status is repaired (with a `StatusRepaired` Event) rather than obeyed. While the
storage does not answer, the status keeps its last picture with `Ready=False` and `StorageReachable=False`.

kopf keeps its own state in annotations under `sweetspot.dev` (a structural CRD schema would prune undeclared
status fields), and its finalizer is `sweetspot.dev/cleanup`.
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import kopf
import kubernetes
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from sweetspot import jobs
from sweetspot.api import GROUP, PLURAL, VERSION, FineTuneStudy, FineTuneStudySpec
from sweetspot.contract import StageResult
from sweetspot.events import EventRecorder
from sweetspot.failpoints import failpoint
from sweetspot.metrics import METRICS, StudyState
from sweetspot.planner import (
    AskTrials,
    Decision,
    FailTrial,
    Observed,
    RecordEarly,
    RecordFailure,
    RecordFinal,
    RecordInfeasible,
    RecordSweepPoint,
    RunKey,
    RunView,
    StartRun,
    StopRun,
    plan,
    wind_down,
)
from sweetspot.search import SearchStore, StorageError, delete_study, open_storage, safe_url
from sweetspot.stages import trial_config
from sweetspot.stats import summarize
from sweetspot.status import (
    IMMUTABLE_FIELD_CHANGED,
    INVALID_SPEC,
    READY,
    STORAGE_REACHABLE,
    STORAGE_UNREACHABLE,
    build_status,
    condition,
    known_conditions,
    merge_patch,
    normalized,
    tampering,
    with_conditions,
)

RECONCILE_SECONDS = float(os.environ.get("SWEETSPOT_RECONCILE_SECONDS", "30"))
"""The safety net: a finished Job or a spec change reconciles its study at once; the timer catches the rest
(a storage that came back, a missed watch event)."""
DEFAULT_STORAGE_ENV = "SWEETSPOT_DATABASE_URL"
MAX_PASSES = 8
"""Plan-apply passes per reconcile: records first, then the starts they enable, without waiting a tick."""
IMMUTABLE = ("model", "dataset", "objective")
IMMUTABLE_SEARCH = ("sampler", "space", "early_evaluation", "seed")

log = logging.getLogger("sweetspot.operator")
_stores: dict[str, SearchStore] = {}
_stores_lock = threading.Lock()


class Serializer:
    """One reconcile per study at a time. A request while one runs marks the study dirty instead of waiting or
    running in parallel (two passes could both ask Optuna for the same free slot); the running one then passes
    once more, so no request is lost and a burst of Job events costs at most two passes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self._dirty: set[str] = set()
        self._finished: dict[str, float] = {}

    def idle_for(self, key: str) -> float:
        """Seconds since the last reconcile of `key` ended (infinite when none has, or one runs now)."""
        with self._lock:
            if key in self._running or key not in self._finished:
                return float("inf") if key not in self._running else 0.0
            return time.monotonic() - self._finished[key]

    def forget(self, key: str) -> None:
        with self._lock:
            self._finished.pop(key, None)

    def run(self, key: str, reconcile: Callable[[], None]) -> bool:
        """Run `reconcile` (again while requests arrived during it); False when another thread already runs it."""
        with self._lock:
            if key in self._running:
                self._dirty.add(key)
                return False
            self._running.add(key)
        try:
            while True:
                reconcile()
                with self._lock:
                    if key not in self._dirty:
                        return True
                    self._dirty.discard(key)
        finally:
            with self._lock:
                self._running.discard(key)
                self._dirty.discard(key)
                self._finished[key] = time.monotonic()


_serializer = Serializer()


# --- kopf configuration ----------------------------------------------------------------------------------


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = f"{GROUP}/cleanup"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.peering.standalone = True  # one replica (the chart's Deployment uses the Recreate strategy)
    settings.posting.level = logging.WARNING  # Events are posted explicitly, with reasons users can filter on
    settings.execution.max_workers = int(os.environ.get("SWEETSPOT_WORKERS", "8"))
    # kopf's `labels=` filters only after it has received and parsed an object: on its own, the Job watch below
    # would stream every Job of the namespace (CI systems, other operators) into this process. The API server
    # filters on this selector, so only the studies' Jobs are ever sent here.
    settings.watching.label_selectors["batch", "v1", "jobs"] = jobs.LABEL_STUDY
    load_kubernetes_config()
    prepare_default_storage()


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


def _client() -> tuple[kubernetes.client.BatchV1Api, kubernetes.client.CoreV1Api]:
    return kubernetes.client.BatchV1Api(), kubernetes.client.CoreV1Api()


def load_kubernetes_config() -> None:
    """In a pod: the service account; elsewhere: KUBECONFIG (tests point it at the emulator)."""
    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]


# --- the cluster as the planner sees it ------------------------------------------------------------------


def _name(obj: Any) -> str:
    return str(obj.metadata.name)


def _items(response: Any) -> list[dict[str, Any]]:
    """The items of a list read raw (`_preload_content=False`): parsing the JSON costs a twentieth of building the
    client's models (0.55 ms per Job with its pod template), and a study's list of Jobs grows with its trials."""
    return cast(list[dict[str, Any]], json.loads(response.data)["items"])


def _pods(core: kubernetes.client.CoreV1Api, namespace: str, job_name: str) -> list[dict[str, Any]]:
    return _items(core.list_namespaced_pod(namespace, label_selector=f"job-name={job_name}", _preload_content=False))


def _termination_message(pods: list[dict[str, Any]]) -> StageResult | None:
    newest_first = sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""))[::-1]
    for pod in newest_first:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            message = ((status.get("state") or {}).get("terminated") or {}).get("message")
            if message:
                try:
                    return StageResult.model_validate_json(message)
                except ValidationError:
                    continue  # FallbackToLogsOnError: the log tail of a crash, not a result
    return None


def _disrupted(pods: list[dict[str, Any]]) -> bool:
    return any(
        c.get("type") == "DisruptionTarget" and c.get("status") == "True"
        for pod in pods
        for c in (pod.get("status") or {}).get("conditions") or []
    )


_finished_runs: dict[str, dict[str, RunView]] = {}
"""Per study, Job uid → what its finished Job showed: a finished Job never changes, so its pods are read once,
not on every pass (a study with 40 finished stages would otherwise cost 40 pod listings per pass)."""
_finished_lock = threading.Lock()


def observe_runs(study: FineTuneStudy) -> list[RunView]:
    batch, core = _client()
    namespace = study.metadata.namespace
    selector = f"{jobs.LABEL_STUDY}={study.metadata.name}"
    with _finished_lock:
        known = dict(_finished_runs.get(study.key, {}))
    finished: dict[str, RunView] = {}
    runs: list[RunView] = []
    for job in _items(batch.list_namespaced_job(namespace, label_selector=selector, _preload_content=False)):
        meta = job.get("metadata") or {}
        try:
            key = RunKey.parse((meta.get("labels") or {}).get(jobs.LABEL_RUN, ""))
        except ValueError:
            continue
        name = str(meta.get("name"))
        uid = str(meta.get("uid") or name)
        if uid in known:
            runs.append(finished.setdefault(uid, known[uid]))
            continue
        conditions = {c.get("type"): c for c in (job.get("status") or {}).get("conditions") or []}
        conditions = {kind: c for kind, c in conditions.items() if c.get("status") == "True"}
        if "Complete" in conditions:
            result = _termination_message(_pods(core, namespace, name))
            runs.append(RunView(key, "succeeded", result, "" if result else "the Job finished without a result"))
            if result is not None:  # else perhaps not visible yet: read again next time
                finished[uid] = runs[-1]
        elif "Failed" in conditions:
            pods = _pods(core, namespace, name)
            result = _termination_message(pods)
            failed = conditions["Failed"]
            reason = f"{failed.get('reason') or 'Failed'}: {failed.get('message') or ''}".strip(": ")
            phase = "disrupted" if _disrupted(pods) and result is None else "failed"
            runs.append(RunView(key, phase, result, reason))  # type: ignore[arg-type]
            finished[uid] = runs[-1]
        elif meta.get("deletionTimestamp") is None:
            runs.append(RunView(key, "running"))
    with _finished_lock:
        _finished_runs[study.key] = finished  # Jobs gone from the cluster are forgotten
    return runs


def _create(create: Any, namespace: str, body: Mapping[str, Any]) -> None:
    try:
        create(namespace, body, _preload_content=False)  # the answer is not read: not parsed into models either
    except ApiException as exc:
        if exc.status != 409:  # already there: an earlier attempt of this very action got through
            raise


def start_run(study: FineTuneStudy, action: StartRun) -> None:
    batch, core = _client()
    config = trial_config(study, action, jobs.pod_paths(study, action.key))
    namespace = study.metadata.namespace
    _create(core.create_namespaced_config_map, namespace, jobs.config_map(study, action.key, config))
    failpoint("create-job")
    _create(batch.create_namespaced_job, namespace, jobs.job(study, action.key))


def stop_run(study: FineTuneStudy, key: RunKey) -> None:
    batch, _ = _client()
    name = jobs.object_name(study.metadata.name, key)
    _delete(batch.delete_namespaced_job, name, study.metadata.namespace, propagation_policy="Background")


def _delete(delete: Any, name: str, namespace: str, **options: Any) -> bool:
    """Delete one object; already gone counts as deleted."""
    try:
        delete(name, namespace, **options)
    except ApiException as exc:
        if exc.status != 404:
            raise
    return True


def delete_study_objects(namespace: str, name: str) -> int:
    """Delete a study's Jobs, their pods and ConfigMaps (owner references do this on a real cluster too)."""
    batch, core = _client()
    selector = f"{jobs.LABEL_STUDY}={name}"
    deleted = sum(
        _delete(batch.delete_namespaced_job, _name(job), namespace, propagation_policy="Background")
        for job in batch.list_namespaced_job(namespace, label_selector=selector).items
    )
    for pod in core.list_namespaced_pod(namespace, label_selector=selector).items:
        _delete(core.delete_namespaced_pod, _name(pod), namespace)
    for config_map in core.list_namespaced_config_map(namespace, label_selector=selector).items:
        _delete(core.delete_namespaced_config_map, _name(config_map), namespace)
    return deleted


# --- storage -----------------------------------------------------------------------------------------------


def storage_url(study: FineTuneStudy) -> str:
    """The study's Secret when it names one, else the operator's default (never logged)."""
    ref = study.spec.storage.secret_ref
    if ref is None:
        url = os.environ.get(DEFAULT_STORAGE_ENV)
        if not url:
            raise StorageError(f"no storage: set spec.storage.secretRef or the operator's {DEFAULT_STORAGE_ENV}")
        return url
    _, core = _client()
    try:
        secret = core.read_namespaced_secret(ref.name, study.metadata.namespace)
    except ApiException as exc:
        raise StorageError(f"cannot read Secret {ref.name}: {exc.reason}") from None
    value = (secret.data or {}).get(ref.key)
    if not value:
        raise StorageError(f"Secret {ref.name} has no key {ref.key!r}")
    return base64.b64decode(value).decode()


def _store(study: FineTuneStudy, uid: str) -> SearchStore:
    with _stores_lock:
        store = _stores.get(uid)
    if store is not None and store.spec == study.spec:
        return store
    store = SearchStore.open(storage_url(study), study)
    with _stores_lock:
        _stores[uid] = store
    return store


def started_spec(stored: Mapping[str, Any]) -> FineTuneStudySpec | None:
    """The spec the study last ran with, None before its first run."""
    return FineTuneStudySpec.model_validate(stored["spec"]) if stored.get("spec") else None


def immutable_changes(before: FineTuneStudySpec, spec: FineTuneStudySpec) -> list[str]:
    """Fields that changed since the study started and may not (only budget, parallelism, suspend may)."""
    changed = [f"spec.{name}" for name in IMMUTABLE if getattr(before, name) != getattr(spec, name)]
    changed += [
        f"spec.search.{name}" for name in IMMUTABLE_SEARCH if getattr(before.search, name) != getattr(spec.search, name)
    ]
    return changed


def as_started(before: FineTuneStudySpec, study: FineTuneStudy) -> FineTuneStudy:
    """The study with its immutable fields as it started and the rest as the user has them now: a refused change
    leaves the study running as it was, while budget, parallelism and suspend still take effect."""
    search = study.spec.search.model_copy(update={name: getattr(before.search, name) for name in IMMUTABLE_SEARCH})
    spec = study.spec.model_copy(update={name: getattr(before, name) for name in IMMUTABLE} | {"search": search})
    return study.model_copy(update={"spec": spec})


# --- what this operator wrote ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Written:
    """What this process last wrote into a study's status, and whether the storage said the study had ended at
    that generation. Process memory, never read back from the resource: a forged status cannot make a study look
    ended, and a restarted operator, remembering nothing, starts from the storage."""

    generation: int | None
    status: dict[str, Any]
    ended: bool


_written: dict[str, Written] = {}
"""By study uid. Not kopf's per-resource `memo`: a study is reconciled from its timer, its spec changes and its
Jobs' watch (whose memo is the Job's), all through `_reconcile_fresh`, so the memory is keyed by the study here;
`delete` drops it with the study."""
_written_lock = threading.Lock()


def _remembered(uid: str) -> Written | None:
    with _written_lock:
        return _written.get(uid)


def _remember(uid: str, written: Written) -> None:
    with _written_lock:
        _written[uid] = written


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


# --- events -----------------------------------------------------------------------------------------------

EVENTS = EventRecorder()


def _event(body: Any, reason: str, message: str, warning: bool = False, persistent: bool = False) -> None:
    """A core/v1 Event on the study (kubectl describe shows them), aggregated like Kubernetes' own recorder. Posted
    directly rather than through kopf's log-to-event bridge, which would also post kopf's own chatter on every
    timer run."""
    EVENTS.post(body, reason, message, warning=warning, persistent=persistent)


def _apply(study: FineTuneStudy, store: SearchStore, body: Any, action: Any) -> None:
    if isinstance(action, StartRun):
        start_run(study, action)
        _event(body, "StageStarted", f"{action.key} started ({jobs.object_name(study.metadata.name, action.key)})")
    elif isinstance(action, StopRun):
        stop_run(study, action.key)
        _event(body, "StageStopped", f"{action.key} stopped: {action.reason}")
    else:
        store.apply(action)
        if isinstance(action, RecordEarly):
            _event(body, "EarlyResult", f"trial {action.trial}: early {action.outcome.describe()}")
        elif isinstance(action, RecordFinal):
            _event(
                body,
                "TrialPromoted" if action.value is None else "TrialComplete",
                f"trial {action.trial}: final {action.outcome.describe()}",
            )
        elif isinstance(action, RecordSweepPoint):
            _event(body, "CurvePoint", f"{action.samples} samples: {action.outcome.describe()}")
        elif isinstance(action, RecordInfeasible):
            _event(body, "TrialOutOfMemory", f"trial {action.trial}: {action.message[:200]}", warning=True)
        elif isinstance(action, RecordFailure):
            kind = "StageDisrupted" if action.disruption else "StageFailed"
            _event(body, kind, f"{action.key}: {action.reason}", warning=not action.disruption)
        elif isinstance(action, FailTrial):
            _event(body, "TrialFailed", f"trial {action.trial}: {action.reason[:300]}", warning=True)


# --- reconcile ----------------------------------------------------------------------------------------------


def _run(study: FineTuneStudy, store: SearchStore, body: Any) -> Decision:
    """Plan and apply until nothing more can happen now; the storage records the phase the last pass leaves."""
    runs: list[RunView] | None = None
    for attempt in range(MAX_PASSES):
        trials, sweep = store.snapshot()
        # The Jobs are listed again only after this reconcile started or stopped one: a Job that finishes meanwhile
        # wakes the study once more (the Serializer folds its event into one more reconcile), so nothing is missed.
        runs = observe_runs(study) if runs is None else runs
        decision = plan(study.spec, Observed(trials, sweep, runs))
        changed = False
        if decision.phase == "Failed":
            # The end is recorded before what it takes: a crash halfway through failing finds the study Failed in
            # the storage, and the next pass winds it down the rest of the way.
            changed = store.set_phase(decision, study)
        for action in decision.actions:
            if isinstance(action, AskTrials):
                asked = store.apply(action)
                _event(body, "TrialsAsked", f"trial(s) {', '.join(map(str, asked))} asked")
            else:
                _apply(study, store, body, action)
                if isinstance(action, StartRun | StopRun):
                    runs = None
        # Records and asks enable what comes next (a trial asked now gets its Job on the next pass); starts
        # and stops do not.
        more = any(isinstance(a, AskTrials) for a in decision.actions) or decision.reason == "Recording"
        if decision.phase != "Failed" and (not more or attempt == MAX_PASSES - 1):
            # Only the phase this reconcile leaves: a pass that leads to another would write a phase the next one
            # overwrites a moment later (a storage write each).
            changed = store.set_phase(decision, study)
        if decision.finished and changed:
            _event(
                body, f"Study{decision.phase}", decision.message or decision.reason, warning=decision.phase == "Failed"
            )
        if not more:
            break
    return decision


def reconcile_study(body: Mapping[str, Any]) -> Pass:
    """One reconcile of one study: plan and apply until nothing more can happen now; returns the status it wants.

    Whether the study ended, its phase and its counts come from the storage and the cluster's Jobs on every pass;
    the status the object has is never read as truth (see `sweetspot.status`)."""
    meta = body["metadata"]
    generation = meta.get("generation")
    namespace, name = str(meta.get("namespace")), str(meta.get("name"))
    uid = str(meta.get("uid") or f"{namespace}/{name}")
    current = body.get("status")
    written = _remembered(uid)
    last = written.status if written is not None else (current if not tampering(current, None) else None)
    previous = known_conditions(last)
    now = _now()
    if written is not None and written.ended and written.generation == generation:
        # Ended at this generation, as the storage said when this process last looked: no storage round trips.
        METRICS.operator.succeeded()
        return Pass(written.status, ended=True, remembered=True)
    try:
        study = FineTuneStudy.model_validate({k: _plain(v) for k, v in body.items() if k != "status"})
    except ValidationError as exc:
        message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False))
        METRICS.operator.reconcile_errors.labels("invalid").inc()
        invalid = condition(previous, READY, False, INVALID_SPEC, message, generation, now)
        return Pass(with_conditions(last, [invalid]))
    try:
        store = _store(study, uid)
        with store.holding():  # one reconcile: the study's records read once (see SearchStore)
            before = started_spec(store.stored_spec())
            refused = ""
            if before is not None and (changed := immutable_changes(before, study.spec)):
                refused = (
                    f"{', '.join(changed)} cannot change once a study has started "
                    "(only budget, parallelism and suspend can); it runs on as it started"
                )
                if previous.get(READY, {}).get("reason") != IMMUTABLE_FIELD_CHANGED:
                    _event(body, IMMUTABLE_FIELD_CHANGED, refused, warning=True)
                study = as_started(before, study)
            store.update_spec(study)
            ended = store.ended(study)
            if ended is None:
                decision = _run(study, store, body)
            else:
                decision = Decision((), ended["phase"], ended["reason"], ended.get("message", ""))
                # What a failed study still owes (nothing, unless a crash interrupted it).
                if decision.phase == "Failed":
                    trials, sweep = store.snapshot()
                    for action in wind_down(Observed(trials, sweep, observe_runs(study)), decision.reason):
                        _apply(study, store, body, action)
            trials, sweep = store.snapshot()
    except StorageError as exc:
        with _stores_lock:
            _stores.pop(uid, None)
        _event(body, STORAGE_UNREACHABLE, str(exc), warning=True, persistent=True)
        METRICS.studies.storage_down(namespace, name)
        METRICS.operator.reconcile_errors.labels("storage").inc()
        down = [
            condition(previous, READY, False, STORAGE_UNREACHABLE, f"the Optuna storage does not answer: {exc}",
                      generation, now),
            condition(previous, STORAGE_REACHABLE, False, STORAGE_UNREACHABLE, str(exc), generation, now),
        ]  # fmt: skip
        return Pass(with_conditions(last, down))
    summary = summarize(study.spec, trials, sweep)
    status = build_status(decision, summary, previous, generation, study.spec, trials, store.name, now, refused)
    over = status.get("overBudget")
    if over is not None and (last or {}).get("overBudget") != over:
        _event(body, "BudgetLowered", over["message"])
    METRICS.publish(StudyState.of(namespace, name, study.spec, trials, sweep, decision.phase))
    return Pass(status, ended=decision.finished)


def _write_status(api: kubernetes.client.CustomObjectsApi, body: Mapping[str, Any], wanted: Pass) -> None:
    """Make the object's status what the pass wants, with the fewest changes (nothing when it already is), and say
    so with an Event when the status was not what this operator had written: forged, restored or malformed."""
    meta = body["metadata"]
    namespace, name = str(meta["namespace"]), str(meta["name"])
    uid = str(meta.get("uid") or f"{namespace}/{name}")
    current = body.get("status")
    written = _remembered(uid)
    problem = tampering(current, written.status if written is not None else None)
    if not wanted.remembered:
        failpoint("write-status")
    if not problem and normalized(current) == normalized(wanted.status):
        _remember(uid, Written(meta.get("generation"), wanted.status, wanted.ended))
        return
    patch = {"status": merge_patch(current, wanted.status)}
    api.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name, patch, _content_type="application/merge-patch+json"
    )
    _remember(uid, Written(meta.get("generation"), wanted.status, wanted.ended))
    if problem:
        message = f"the status was {problem}; rewritten from the Optuna storage and the cluster's Jobs"
        _event(body, "StatusRepaired", message, warning=True)


def _measured(api: kubernetes.client.CustomObjectsApi, body: Mapping[str, Any]) -> None:
    with METRICS.operator.reconcile_seconds.time():
        try:
            _write_status(api, body, reconcile_study(body))
        except ApiException:
            METRICS.operator.reconcile_errors.labels("cluster").inc()
            raise  # kopf retries on the next tick
        except Exception:
            METRICS.operator.reconcile_errors.labels("other").inc()
            raise


@kopf.timer(GROUP, VERSION, PLURAL, interval=RECONCILE_SECONDS, initial_delay=0)
def reconcile(meta: kopf.Meta, **_: Any) -> None:
    # A sync handler: kopf runs it in a worker thread, so Optuna's blocking I/O never stalls the event loop.
    # The status is written directly, never through kopf's patch: kopf applies its patch after the handler
    # returns, which would put this pass's status over that of a later pass a Job event asked for meanwhile.
    namespace, name = str(meta["namespace"]), str(meta["name"])
    key = f"{namespace}/{name}"
    if _serializer.idle_for(key) < RECONCILE_SECONDS / 2:
        return  # a Job event or spec change reconciled it moments ago: the safety net has nothing to catch
    _serializer.run(key, lambda: _reconcile_fresh(namespace, name))


def _reconcile_fresh(namespace: str, name: str) -> None:
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
    _measured(api, body)


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def spec_changed(meta: kopf.Meta, **_: Any) -> None:
    """A raised budget, a resume, a new parallelism: act on it now rather than at the next timer tick."""
    namespace, name = str(meta["namespace"]), str(meta["name"])
    _serializer.run(f"{namespace}/{name}", lambda: _reconcile_fresh(namespace, name))


@kopf.on.event("batch", "v1", "jobs", labels={jobs.LABEL_STUDY: kopf.PRESENT})  # selected server-side: `configure`
def job_finished(type: str | None, body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
    """A stage's Job completed or failed: reconcile its study now (the next stage starts without waiting for the
    timer). Other Job events (creation, start, deletion) change nothing the planner acts on."""
    conditions = (body.get("status") or {}).get("conditions") or []
    finished = any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions)
    if type == "DELETED" or not finished or namespace is None:
        return
    study = labels[jobs.LABEL_STUDY]
    with _finished_lock:  # already seen finished by a reconcile: a re-listed watch, not news
        if str((body.get("metadata") or {}).get("uid")) in _finished_runs.get(f"{namespace}/{study}", {}):
            return
    _serializer.run(f"{namespace}/{study}", lambda: _reconcile_fresh(namespace, study))


@kopf.on.delete(GROUP, VERSION, PLURAL)  # with kopf's finalizer: Jobs go before the study does
def delete(
    body: kopf.Body, meta: kopf.Meta, spec: kopf.Spec, logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any
) -> None:
    namespace, name = meta["namespace"], meta["name"]
    deleted = delete_study_objects(namespace, name)
    logger.info("deleted %d Jobs of study %s/%s", deleted, namespace, name)
    with _stores_lock:
        store = _stores.pop(str(meta.get("uid")), None)
    with _finished_lock:
        _finished_runs.pop(f"{namespace}/{name}", None)
    with _written_lock:
        _written.pop(str(meta.get("uid")), None)
    EVENTS.forget(namespace, str(meta.get("uid")))
    _serializer.forget(f"{namespace}/{name}")
    METRICS.studies.forget(namespace, name)
    if spec.get("onDelete", "keep") == "delete":
        try:
            study = FineTuneStudy.model_validate({k: _plain(v) for k, v in body.items() if k != "status"})
            url = storage_url(study)
            delete_study(url, (store or SearchStore.open(url, study)).name)
        except (StorageError, ValidationError) as exc:
            logger.warning("the Optuna study of %s/%s was not deleted: %s", namespace, name, exc)
