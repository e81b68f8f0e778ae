"""Trial stages on Kubernetes: one batch/v1 Job per stage (`JobRuntime`), or one Kubeflow Trainer TrainJob per stage
over several nodes (`TrainJobRuntime`). Both keep the runtime contract (`sweetspot.core.runtime`): deterministic
names, a 409 on create counts as started and a 404 on delete as stopped, and a restarted operator finds a study's
runs by label and their results in the reporting pod's termination message.

`RUNTIMES` is the one list of them, by `spec.trial.runtime.kind`: which class runs a study's stages
(`runtime_for`), which objects the operator watches for finished runs and cleans up after a deleted study
(`sweetspot.cluster.handlers`), and whether the chart must enable one first (`served`). Adding a runtime is a class
here, its entry in `RUNTIMES` and its kind in `sweetspot.api.trial.TrialRuntime` (a unit test ties the two).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import Any

import kubernetes

from sweetspot.api.resource import FineTuneStudy
from sweetspot.cluster import jobs, kube, trainjobs
from sweetspot.cluster.memory import Memories
from sweetspot.contract import DEFAULT_GRACE_SECONDS, EXIT_INTERRUPTED
from sweetspot.core.records import RunKey, RunView, StartRun
from sweetspot.core.runtime import Runtime
from sweetspot.core.stages import trial_config
from sweetspot.failpoints import failpoint

CLEAN_UP_SWEEPS = 5
"""A deleted study's runs are swept until none is listed (but those already being deleted), at most this often."""


class KubeRuntime(Runtime):
    """What Jobs and TrainJobs share: the ConfigMap with the trial config, labels, finished-run memory."""

    kind: str
    """The object kind, for messages."""
    resource: tuple[str, str, str]
    """The objects stages run as, as the API names them (group, version, plural): watched for finished runs, and
    labelled by study so that a watch and a clean-up select them server-side."""
    enabled_by: str | None = None
    """An environment variable that must be `true` for the operator to watch and clean up these objects (their API
    may not be installed, and the chart grants their RBAC only when it sets the variable); None: always."""

    def __init__(self, memories: Memories) -> None:
        self.memories = memories

    @abstractmethod
    def _list(self, namespace: str, selector: str) -> list[dict[str, Any]]: ...

    @abstractmethod
    def manifest(self, study: FineTuneStudy, key: RunKey, grace_seconds: int = DEFAULT_GRACE_SECONDS) -> dict[str, Any]:
        """The object that runs one stage (`grace_seconds`: see `StartRun`)."""

    @abstractmethod
    def _create(self, namespace: str, body: dict[str, Any]) -> None: ...

    @abstractmethod
    def _delete(self, namespace: str, name: str) -> None: ...

    @abstractmethod
    def _result_pods(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """The pods whose termination message holds the stage's result."""

    @abstractmethod
    def _all_pods(self, namespace: str, name: str) -> list[dict[str, Any]]: ...

    def observe(self, study: FineTuneStudy) -> list[RunView]:
        namespace = study.metadata.namespace
        memory = self.memories.of(study.key, study.metadata.uid or study.key)
        known = memory.finished_runs
        finished: dict[str, RunView] = {}
        runs: list[RunView] = []
        for obj in self._list(namespace, f"{jobs.LABEL_STUDY}={study.metadata.name}"):
            meta = obj.get("metadata") or {}
            try:
                key = RunKey.parse((meta.get("labels") or {}).get(jobs.LABEL_RUN, ""))
            except ValueError:
                continue
            name, uid = str(meta.get("name")), str(meta.get("uid") or meta.get("name"))
            if uid in known:
                runs.append(finished.setdefault(uid, known[uid]))
                continue
            view = self._view(namespace, name, key, obj, meta)
            if view is None:
                continue
            runs.append(view)
            if view.phase != "running" and (view.result is not None or view.phase != "succeeded"):
                finished[uid] = view  # a success without a result may not be visible yet: read again next time
        memory.finished_runs = finished  # runs gone from the cluster are forgotten
        return runs

    def _view(
        self, namespace: str, name: str, key: RunKey, obj: Mapping[str, Any], meta: Mapping[str, Any]
    ) -> RunView | None:
        ended = kube.finished_condition(obj)
        if ended is None:
            return RunView(key, "running") if meta.get("deletionTimestamp") is None else None
        kind, condition = ended
        if kind == "Complete":
            result = kube.termination_message(self._result_pods(namespace, name))
            return RunView(key, "succeeded", result, "" if result else f"the {self.kind} finished without a result")
        pods = self._all_pods(namespace, name)
        result = kube.termination_message(self._result_pods(namespace, name))
        reason = f"{condition.get('reason') or 'Failed'}: {condition.get('message') or ''}".strip(": ")
        disrupted = kube.disrupted(pods) or EXIT_INTERRUPTED in kube.exit_codes(pods)
        return RunView(key, "disrupted" if disrupted and result is None else "failed", result, reason)

    def manifests(self, study: FineTuneStudy, action: StartRun) -> tuple[dict[str, Any], dict[str, Any]]:
        """What starting a stage creates: the ConfigMap with its trial config, and the object that runs it."""
        config = trial_config(study, action, jobs.pod_paths(study, action.key))
        return jobs.config_map(study, action.key, config), self.manifest(study, action.key, action.grace_seconds)

    def start(self, study: FineTuneStudy, action: StartRun) -> str:
        core = kubernetes.client.CoreV1Api()
        config_map, run = self.manifests(study, action)
        kube.create(core.create_namespaced_config_map, study.metadata.namespace, config_map)
        failpoint("create-job")
        self._create(study.metadata.namespace, run)
        return f"{self.kind} {run['metadata']['name']}"

    def stop(self, study: FineTuneStudy, key: RunKey) -> None:
        self._delete(study.metadata.namespace, jobs.object_name(study.metadata.name, key))

    def clean_up(self, namespace: str, name: str) -> int:
        """Delete the study's runs, their pods and ConfigMaps (owner references do this on a real cluster too),
        sweeping again until one finds none of them left."""
        selector = f"{jobs.LABEL_STUDY}={name}"
        core = kubernetes.client.CoreV1Api()
        deleted = 0
        for _ in range(CLEAN_UP_SWEEPS):
            listed = core.list_namespaced_config_map(namespace, label_selector=selector, _preload_content=False)
            runs, pods, config_maps = (
                [str(obj["metadata"]["name"]) for obj in objects if not obj["metadata"].get("deletionTimestamp")]
                for objects in (self._list(namespace, selector), kube.pods(namespace, selector), kube.items(listed))
            )
            if not (runs or pods or config_maps):
                break
            for run in runs:
                self._delete(namespace, run)
            for pod in pods:
                kube.delete(core.delete_namespaced_pod, pod, namespace)
            for config_map in config_maps:
                kube.delete(core.delete_namespaced_config_map, config_map, namespace)
            deleted += len(runs)
        return deleted


class JobRuntime(KubeRuntime):
    """One batch/v1 Job per stage (`sweetspot.cluster.jobs`): one pod, the result in its termination message."""

    kind = "Job"
    resource = ("batch", "v1", "jobs")

    def _list(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        batch = kubernetes.client.BatchV1Api()
        return kube.items(batch.list_namespaced_job(namespace, label_selector=selector, _preload_content=False))

    def manifest(self, study: FineTuneStudy, key: RunKey, grace_seconds: int = DEFAULT_GRACE_SECONDS) -> dict[str, Any]:
        return jobs.job(study, key, grace_seconds)

    def _create(self, namespace: str, body: dict[str, Any]) -> None:
        batch = kubernetes.client.BatchV1Api()
        kube.create(batch.create_namespaced_job, namespace, body)

    def _delete(self, namespace: str, name: str) -> None:
        batch = kubernetes.client.BatchV1Api()
        kube.delete(batch.delete_namespaced_job, name, namespace, propagation_policy="Background")

    def _result_pods(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return kube.pods(namespace, f"job-name={name}")

    def _all_pods(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return self._result_pods(namespace, name)


class TrainJobRuntime(KubeRuntime):
    """One Kubeflow Trainer TrainJob per stage (`sweetspot.cluster.trainjobs`): `numNodes` pods under torchrun, the
    result in the termination message of node rank 0's pod."""

    kind = "TrainJob"
    resource = (trainjobs.GROUP, trainjobs.VERSION, trainjobs.PLURAL)
    enabled_by = "SWEETSPOT_TRAINJOBS"
    """Set by the chart with `trainJobs.enabled`, which also grants the RBAC for TrainJobs. Off, the operator never
    touches the TrainJob API (it may not be installed)."""

    def _list(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        api = kubernetes.client.CustomObjectsApi()
        response = api.list_namespaced_custom_object(
            trainjobs.GROUP, trainjobs.VERSION, namespace, trainjobs.PLURAL, label_selector=selector,
            _preload_content=False,
        )  # fmt: skip
        return kube.items(response)

    def manifest(self, study: FineTuneStudy, key: RunKey, grace_seconds: int = DEFAULT_GRACE_SECONDS) -> dict[str, Any]:
        return trainjobs.trainjob(study, key)  # the grace period is the runtime's: a TrainJob cannot override it

    def _create(self, namespace: str, body: dict[str, Any]) -> None:
        api = kubernetes.client.CustomObjectsApi()
        kube.create(
            api.create_namespaced_custom_object, trainjobs.GROUP, trainjobs.VERSION, namespace, trainjobs.PLURAL, body
        )

    def _delete(self, namespace: str, name: str) -> None:
        api = kubernetes.client.CustomObjectsApi()
        kube.delete(
            api.delete_namespaced_custom_object, trainjobs.GROUP, trainjobs.VERSION, namespace, trainjobs.PLURAL, name,
            propagation_policy="Background",
        )  # fmt: skip

    def _result_pods(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return kube.pods(namespace, trainjobs.rank0_pods(name))

    def _all_pods(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return kube.pods(namespace, trainjobs.all_pods(name))


RUNTIMES: Mapping[str, type[KubeRuntime]] = {"job": JobRuntime, "trainJob": TrainJobRuntime}
"""Every runtime, by the `spec.trial.runtime.kind` that picks it."""


def runtime_for(study: FineTuneStudy, memories: Memories) -> KubeRuntime:
    return RUNTIMES[study.spec.trial.runtime.kind](memories)


def served(environ: Mapping[str, str]) -> list[type[KubeRuntime]]:
    """The runtimes this operator watches and cleans up after: those that need no enabling, and those enabled."""
    return [
        runtime
        for runtime in RUNTIMES.values()
        if runtime.enabled_by is None or environ.get(runtime.enabled_by, "").lower() == "true"
    ]
