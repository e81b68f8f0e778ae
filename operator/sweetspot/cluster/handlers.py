"""The kopf layer: which events reconcile which study, and what a deleted study takes with it.

Every study gets a periodic reconcile (a kopf timer, run in a worker thread because Optuna and SQLAlchemy are
synchronous; see `sweetspot.cluster.reconcile`). A stage's Job or TrainJob finishing also reconciles its study at
once (a watch on them, selected server-side by label), so the next stage starts without waiting for the timer;
one reconcile of a study runs at a time, and requests that arrive meanwhile fold into one more pass
(`sweetspot.cluster.memory.Serializer`).

kopf keeps its own state in annotations under `sweetspot.dev` (a structural CRD schema would prune undeclared
status fields), and its finalizer is `sweetspot.dev/cleanup`.
"""

from __future__ import annotations

import datetime
import logging
import os
from typing import Any

import kopf
from pydantic import ValidationError

from sweetspot.api.names import GROUP, PLURAL, VERSION
from sweetspot.cluster import jobs, kube, reconcile
from sweetspot.cluster.memory import Serializer
from sweetspot.cluster.runtimes import RUNTIMES, KubeRuntime, served
from sweetspot.observe.metrics import METRICS
from sweetspot.storage.connect import StorageError
from sweetspot.storage.store import SearchStore
from sweetspot.storage.studies import delete_study

RECONCILE_SECONDS = float(os.environ.get("SWEETSPOT_RECONCILE_SECONDS", "30"))
"""The safety net: a finished run or a spec change reconciles its study at once; the timer catches the rest
(a storage that came back, a missed watch event)."""
SERVED = served(os.environ)
"""The runtimes whose objects this operator watches and cleans up (`sweetspot.cluster.runtimes.RUNTIMES`): Jobs, and
Kubeflow TrainJobs where the chart enables them (`trainJobs.enabled`)."""

_serializer = Serializer()
CLEAN_UP_WAIT_SECONDS = 120.0
"""How long a deleted study's clean-up waits for a reconcile pass of it that is still running (kopf retries)."""
STORAGE_DELETE_WAIT_SECONDS = float(os.environ.get("SWEETSPOT_STORAGE_DELETE_WAIT_SECONDS", "300"))
"""How long a study deleted with `onDelete: delete` waits for its storage to answer before it goes anyway, its
Optuna study kept (an `OptunaStudyKept` Warning Event says so)."""
OPTUNA_STUDY_KEPT = "OptunaStudyKept"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = f"{GROUP}/cleanup"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.peering.standalone = True  # one replica (the chart's Deployment uses the Recreate strategy)
    settings.posting.level = logging.WARNING  # Events are posted explicitly, with reasons users can filter on
    settings.execution.max_workers = int(os.environ.get("SWEETSPOT_WORKERS", "8"))
    # kopf's `labels=` filters only after it has received and parsed an object: on its own, a run watch below
    # would stream every Job of the namespace (CI systems, other operators) into this process. The API server
    # filters on this selector, so only the studies' runs are ever sent here.
    for runtime in RUNTIMES.values():
        settings.watching.label_selectors[runtime.resource] = jobs.LABEL_STUDY
    kube.load_config()
    reconcile.prepare_default_storage()


@kopf.timer(GROUP, VERSION, PLURAL, interval=RECONCILE_SECONDS, initial_delay=0)
def reconcile_timer(meta: kopf.Meta, **_: Any) -> None:
    # A sync handler: kopf runs it in a worker thread, so Optuna's blocking I/O never stalls the event loop.
    # The status is written directly, never through kopf's patch: kopf applies its patch after the handler
    # returns, which would put this pass's status over that of a later pass a run's event asked for meanwhile.
    namespace, name = str(meta["namespace"]), str(meta["name"])
    key = f"{namespace}/{name}"
    if _serializer.idle_for(key) < RECONCILE_SECONDS / 2:
        return  # a run's event or spec change reconciled it moments ago: the safety net has nothing to catch
    _serializer.run(key, lambda: reconcile.reconcile_fresh(namespace, name))


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def spec_changed(meta: kopf.Meta, **_: Any) -> None:
    """A raised budget, a resume, a new parallelism: act on it now rather than at the next timer tick."""
    namespace, name = str(meta["namespace"]), str(meta["name"])
    _serializer.run(f"{namespace}/{name}", lambda: reconcile.reconcile_fresh(namespace, name))


def _run_finished(type: str | None, body: kopf.Body, namespace: str | None, labels: kopf.Labels) -> None:
    """A stage's run completed or failed: reconcile its study now (the next stage starts without waiting for the
    timer). Other events (creation, start, deletion) change nothing the planner acts on."""
    if type == "DELETED" or namespace is None or kube.finished_condition(body) is None:
        return
    study = labels[jobs.LABEL_STUDY]
    memory = reconcile.MEMORIES.peek(f"{namespace}/{study}")
    if memory is not None and str((body.get("metadata") or {}).get("uid")) in memory.finished_runs:
        return  # already seen finished by a reconcile: a re-listed watch, not news
    _serializer.run(f"{namespace}/{study}", lambda: reconcile.reconcile_fresh(namespace, study))


def _watch_runs(runtime: type[KubeRuntime]) -> None:
    """Reconcile a study when one of its runs (this runtime's objects) finishes. The handler's id (`job_finished`,
    `trainjob_finished`) names it in kopf's log."""

    def finished(type: str | None, body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
        _run_finished(type, body, namespace, labels)

    on_event = kopf.on.event(
        *runtime.resource, id=f"{runtime.kind.lower()}_finished", labels={jobs.LABEL_STUDY: kopf.PRESENT}
    )
    on_event(finished)  # selected server-side: `configure`


for _runtime in SERVED:
    _watch_runs(_runtime)


@kopf.on.delete(GROUP, VERSION, PLURAL)  # with kopf's finalizer: runs go before the study does
def delete(
    body: kopf.Body,
    meta: kopf.Meta,
    spec: kopf.Spec,
    runtime: datetime.timedelta,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **_: Any,
) -> None:
    namespace, name = meta["namespace"], meta["name"]
    key = f"{namespace}/{name}"
    if not _serializer.wait_idle(key, 0):
        logger.info("waiting for the running reconcile of %s before cleaning up", key)
        if not _serializer.wait_idle(key, CLEAN_UP_WAIT_SECONDS):
            raise kopf.TemporaryError(f"a reconcile of {key} is still running", delay=5)
    memory = reconcile.forget(namespace, name)
    _serializer.forget(f"{namespace}/{name}")
    METRICS.studies.forget(namespace, name)
    deleted = sum(served_runtime(reconcile.MEMORIES).clean_up(namespace, name) for served_runtime in SERVED)
    logger.info("deleted %d runs of study %s/%s", deleted, namespace, name)
    if spec.get("onDelete", "keep") == "delete":
        try:
            study = reconcile.parse_study(body)
            url = reconcile.storage_url(study)
            store = memory.store if memory is not None else None
            delete_study(url, (store or SearchStore.open(url, study)).name)
        except StorageError as exc:
            # An outage should not orphan the trials the user asked to delete: the finalizer holds the resource
            # while kopf retries, for a while; a storage that stays down must not hold it forever.
            if runtime.total_seconds() < STORAGE_DELETE_WAIT_SECONDS:
                raise kopf.TemporaryError(f"the storage did not answer, retrying: {exc}", delay=5) from None
            message = f"onDelete: delete, but the storage did not answer for {runtime.total_seconds():.0f} s: {exc}"
            reconcile.EVENTS.post(body, OPTUNA_STUDY_KEPT, f"{message}; its Optuna study is kept", warning=True)
            logger.warning("the Optuna study of %s/%s was not deleted: %s", namespace, name, message)
        except ValidationError as exc:
            logger.warning("the Optuna study of %s/%s was not deleted: %s", namespace, name, exc)
