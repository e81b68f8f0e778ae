"""A Kubernetes API for tests: kmock's emulator made good enough for kopf, plus a node simulator.

No API server can run here. `ClusterEmulator` extends `kmock.KubernetesEmulator` (pinned to kmock 0.8:
it relies on its request hooks) with what kopf and the kubernetes client need and stock kmock lacks:
uid/resourceVersion/generation/creationTimestamp on objects, the namespace from the URL, label selectors
on lists, `/status` patches that touch only the status (and main patches that do not touch it), and
JSON-patch with a failed `test` answered 422 (kopf's finalizer depends on it). Still missing, and not
needed by these tests: PUT, strategic-merge lists, garbage collection, schema validation (tests validate
manifests with the CRD themselves).

`NodeSimulator` plays the Job controller and the kubelet: for every Job it creates a pod, runs the pod's
container command as a local process with the pod's environment (ConfigMap references resolved, mount
paths mapped to temporary directories), then writes the container's termination message and the Job's
conditions back through the API, as the real components would.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import datetime
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp.web
import jsonpatch
import kmock
import kubernetes
from kmock import KubernetesEmulator, ResourceInfo
from kmock._internal import enums, k8s, rendering

RESOURCES = {
    "sweetspot.dev/v1alpha1/finetunestudies": ResourceInfo(
        kind="FineTuneStudy",
        singular="finetunestudy",
        namespaced=True,
        subresources={"status"},
        shortnames={"fts"},
        verbs={"list", "watch", "get", "create", "patch", "delete"},
    ),
    "batch/v1/jobs": ResourceInfo(
        kind="Job",
        singular="job",
        namespaced=True,
        subresources={"status"},
        verbs={"list", "watch", "get", "create", "patch", "delete"},
    ),
    "v1/pods": ResourceInfo(
        kind="Pod",
        singular="pod",
        namespaced=True,
        subresources={"status"},
        verbs={"list", "watch", "get", "create", "patch", "delete"},
    ),
    "v1/configmaps": ResourceInfo(
        kind="ConfigMap", singular="configmap", namespaced=True, verbs={"list", "get", "create", "patch", "delete"}
    ),
    "v1/secrets": ResourceInfo(kind="Secret", singular="secret", namespaced=True, verbs={"list", "get", "create"}),
    "v1/events": ResourceInfo(kind="Event", singular="event", namespaced=True, verbs={"list", "create", "patch"}),
    "v1/namespaces": ResourceInfo(kind="Namespace", singular="namespace", namespaced=False, verbs={"list", "get"}),
}


class UnprocessableError(k8s.KubernetesError):
    pass


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _merge_diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The merge patch that turns `before` into `after` (kmock stores every change as one; None deletes a key,
    so a JSON patch that removes `/metadata/finalizers` really removes them)."""
    diff: dict[str, Any] = {key: None for key in before if key not in after}
    for key, value in after.items():
        old = before.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            if nested := _merge_diff(old, value):
                diff[key] = nested
        elif key not in before or old != value:
            diff[key] = value
    return diff


class ClusterEmulator(KubernetesEmulator):  # type: ignore[misc]
    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._version = 0
        self.created: collections.Counter[tuple[str, str, str]] = collections.Counter()
        """How many times each (plural, namespace, name) was created: a Job created twice shows here even if
        deleted since."""
        self.namespaces = ["default"]
        for key, info in RESOURCES.items():
            self.resources[key] = info

    def created_in(self, namespace: str, prefix: str = "") -> dict[tuple[str, str], int]:
        """(plural, name) -> creations, for the objects of one namespace whose names start with `prefix`."""
        return {
            (plural, name): count
            for (plural, ns, name), count in self.created.items()
            if ns == namespace and name.startswith(prefix)
        }

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # kmock 0.8 cannot parse the cluster-scoped `/api/v1/namespaces` (it reads "namespaces" as the start of a
        # namespaced path), and kopf lists and watches namespaces at start-up: serve them here.
        if raw_request.path.rstrip("/") == "/api/v1/namespaces":
            if raw_request.query.get("watch") in ("true", "1"):
                response = aiohttp.web.StreamResponse()
                await response.prepare(raw_request)
                await asyncio.Event().wait()  # no namespace ever changes; ends when the client goes
            items = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in self.namespaces]
            return aiohttp.web.json_response(
                {"apiVersion": "v1", "kind": "NamespaceList", "metadata": {"resourceVersion": "1"}, "items": items}
            )
        return await super().__call__(raw_request)

    def _current(self, request: rendering.Request) -> dict[str, Any] | None:
        key = (request.resource, request.namespace, request.name)
        if key in self._objects and not self._objects[key].deleted:
            return copy.deepcopy(dict(self._objects[key].raw))
        return None

    async def _handle(self, request: rendering.Request) -> Any:
        # kmock keeps every request for its assertions and matches each new one against that whole history: the
        # cost of a request grows with the run (a 100-study benchmark spent all its time there). Nothing here
        # asserts on past requests, so each is forgotten once answered (a watch when its stream ends).
        try:
            if request.resource is not None and request.action in (enums.action.CREATE, enums.action.UPDATE):
                try:
                    self._prepare(request)
                except UnprocessableError as exc:
                    return await self._render_error(exc)
            try:
                response = await super()._handle(request)
            except k8s.KubernetesError as exc:  # 404, 409...: kmock renders these only inside its own context
                return await self._render_error(exc)
            if request.action == enums.action.CREATE and request.resource is not None and response.status < 300:
                name = (request.data.get("metadata") or {}).get("name", "")
                self.created[(str(request.resource.plural), request.namespace or "", name)] += 1
            return response
        finally:
            index = next((i for i, seen in enumerate(self._requests) if seen is request), None)
            if index is not None:
                del self._requests[index]

    def _prepare(self, request: rendering.Request) -> None:
        self._version += 1
        version = str(self._version)
        if request.action == enums.action.CREATE:
            data = request.data
            meta = data.setdefault("metadata", {})
            if "generateName" in meta and "name" not in meta:
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            meta.setdefault("namespace", request.namespace)
            meta.update(uid=str(uuid.uuid4()), resourceVersion=version, generation=1, creationTimestamp=_now())
            return
        current = self._current(request)
        if current is None:
            return  # kmock answers 404
        content_type = request.headers.get("Content-Type", "")
        if isinstance(request.data, list) or "json-patch" in content_type:
            try:
                patched = jsonpatch.apply_patch(current, request.data)
            except (jsonpatch.JsonPatchConflict, jsonpatch.JsonPatchTestFailed) as exc:
                raise UnprocessableError(status=422, reason="Invalid", message=str(exc)) from None
            sections = ("metadata", "spec", "status", "data")
            data = _merge_diff({k: current.get(k) for k in sections}, {k: patched.get(k) for k in sections})
        else:
            data = request.data if isinstance(request.data, dict) else {}
        if request.subresource == "status":
            data = {"status": data.get("status", {})}
        else:
            data.pop("status", None)
            if "spec" in data and data["spec"] != current.get("spec"):
                data.setdefault("metadata", {})["generation"] = int(current["metadata"].get("generation", 1)) + 1
        data.setdefault("metadata", {})["resourceVersion"] = version
        object.__setattr__(request, "data", data)  # kmock requests are frozen attrs objects

    async def _serve_list(self, request: rendering.Request) -> Any:
        payload = await super()._serve_list(request)
        payload["metadata"]["resourceVersion"] = str(self._version)
        selector = request.params.get("labelSelector")
        if selector:
            payload["items"] = [
                item for item in payload["items"] if _matches(item.get("metadata", {}).get("labels") or {}, selector)
            ]
        return payload


class RunningCluster:
    """The emulator served on a loopback port from its own thread, with a kubeconfig for clients."""

    def __init__(self, directory: Path) -> None:
        self.emulator = ClusterEmulator()
        self.kubeconfig = directory / "kubeconfig"
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._serve, name="cluster-emulator", daemon=True)
        self.url = ""

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with kmock.Server(self.emulator) as server:
            self.url = str(server.url)
            self._started.set()
            await self._stop.wait()

    def __enter__(self) -> RunningCluster:
        self._thread.start()
        if not self._started.wait(30):
            raise RuntimeError("the emulator did not start")
        self.kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
                    "users": [{"name": "test", "user": {"token": "test-token"}}],
                    "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "test"}}],
                    "current-context": "emulator",
                }
            )
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def client(self) -> kubernetes.client.ApiClient:
        configuration = kubernetes.client.Configuration()
        configuration.host = self.url
        configuration.api_key = {"authorization": "Bearer test-token"}
        return kubernetes.client.ApiClient(configuration)


MERGE = {"_content_type": "application/merge-patch+json"}


class NodeSimulator:
    """Runs each Job's pod as a local process and reports back like the Job controller and kubelet."""

    def __init__(
        self, api: kubernetes.client.ApiClient, namespace: str, workdir: Path, environ: dict[str, str] | None = None
    ) -> None:
        self.batch = kubernetes.client.BatchV1Api(api)
        self.core = kubernetes.client.CoreV1Api(api)
        self.namespace = namespace
        self.workdir = workdir
        self.environ = environ or {}
        self.processes: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        self.started: list[str] = []
        self.seen: dict[str, float] = {}
        """When each Job was first seen, and when it finished (monotonic seconds): operator latency."""
        self.finished: dict[str, float] = {}
        self.hooks: dict[str, Callable[[str], None]] = {}
        self.edit_config: Callable[[str, str], str] = lambda job, text: text
        """(Job name, a ConfigMap value the pod reads) → what the pod gets: lets a test hand a trial a broken config."""
        self._started_uids: set[str] = set()
        """A Job deleted and created again under its name (a study re-created) is a new Job: it runs again."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="node-simulator", daemon=True)
        self.errors: list[BaseException] = []

    def __enter__(self) -> NodeSimulator:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        for process, _ in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                process.kill()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # surfaced by the test through `errors`
                self.errors.append(exc)
            time.sleep(0.2)

    def tick(self) -> None:
        jobs = self.batch.list_namespaced_job(self.namespace).items
        present = {job.metadata.name for job in jobs}
        for name in [n for n in self.processes if n not in present]:  # the Job was deleted: the kubelet kills its pod
            process, _ = self.processes.pop(name)
            process.kill()
        for job in jobs:
            name = job.metadata.name
            self.seen.setdefault(name, time.monotonic())
            conditions = [c.type for c in (job.status and job.status.conditions) or []]
            if "Complete" in conditions or "Failed" in conditions:
                continue
            if job.spec.suspend:
                continue  # Kueue has not admitted it
            try:
                if name not in self.processes and job.metadata.uid not in self._started_uids:
                    self._start(job)
                elif name in self.processes:
                    self._check(job)
            except kubernetes.client.exceptions.ApiException:
                # Deleted between the listing and starting or reporting its pod (kmock 0.8 may answer 500 for
                # that race): like the kubelet, drop it; anything else is a real error.
                if name in {j.metadata.name for j in self.batch.list_namespaced_job(self.namespace).items}:
                    raise

    def _start(self, job: Any) -> None:
        name = job.metadata.name
        self.started.append(name)
        self._started_uids.add(job.metadata.uid)
        pod_spec = job.spec.template.spec
        (container,) = pod_spec.containers
        root = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.workdir))
        mounts = {m.mount_path: root / m.name for m in container.volume_mounts or []}
        for directory in mounts.values():
            directory.mkdir(parents=True, exist_ok=True)

        def local(value: str) -> str:
            for mount, directory in sorted(mounts.items(), key=lambda m: -len(m[0])):
                value = value.replace(mount, str(directory))
            return value

        env = {**os.environ, **self.environ}
        for var in container.env or []:
            if var.value_from is not None and var.value_from.config_map_key_ref is not None:
                ref = var.value_from.config_map_key_ref
                config_map = self.core.read_namespaced_config_map(ref.name, self.namespace)
                env[var.name] = local(self.edit_config(name, config_map.data[ref.key]))
            else:
                env[var.name] = local(var.value or "")
        termination = root / "termination-log"
        env["SWEETSPOT_TERMINATION_LOG"] = str(termination)
        command = [sys.executable if part == "python" else part for part in container.command]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{name}-pod",
                "namespace": self.namespace,
                "labels": {**(job.spec.template.metadata.labels or {}), "job-name": name},
            },
            "spec": {"containers": [{"name": container.name, "image": container.image}]},
        }
        self.core.create_namespaced_pod(self.namespace, pod)
        self.core.patch_namespaced_pod_status(f"{name}-pod", self.namespace, {"status": {"phase": "Running"}}, **MERGE)
        self.batch.patch_namespaced_job_status(name, self.namespace, {"status": {"active": 1}}, **MERGE)
        log = open(root / "log.txt", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
        self.processes[name] = (process, termination)
        if hook := self.hooks.get("started"):
            hook(name)

    def _check(self, job: Any) -> None:
        name = job.metadata.name
        process, termination = self.processes[name]
        code = process.poll()
        if code is None:
            return
        del self.processes[name]
        self.finished[name] = time.monotonic()
        message = termination.read_text() if termination.exists() else ""
        state = {"terminated": {"exitCode": code, "message": message, "reason": "Completed" if code == 0 else "Error"}}
        self.core.patch_namespaced_pod_status(
            f"{name}-pod",
            self.namespace,
            {
                "status": {
                    "phase": "Succeeded" if code == 0 else "Failed",
                    "containerStatuses": [
                        {
                            "name": "trainer",
                            "state": state,
                            "ready": False,
                            "restartCount": 0,
                            "image": "trainer",
                            "imageID": "",
                            "started": False,
                        }
                    ],
                }
            },
            **MERGE,
        )
        kind = "Complete" if code == 0 else "Failed"
        condition = {
            "type": kind,
            "status": "True",
            "reason": "Completed" if code == 0 else "BackoffLimitExceeded",
            "message": "" if code == 0 else f"exit code {code}",
            "lastTransitionTime": _now(),
        }
        status = {"active": 0, "conditions": [condition], ("succeeded" if code == 0 else "failed"): 1}
        self.batch.patch_namespaced_job_status(name, self.namespace, {"status": status}, **MERGE)

    def crash(self, job_name: str) -> None:
        """The container dies without a result (killed, segfault): a real failure, reported at the next tick."""
        process, _ = self.processes[job_name]
        process.kill()

    def evict(self, job_name: str) -> None:
        """A disruption: the pod is killed and marked DisruptionTarget; the Job fails (as without retries)."""
        process, _ = self.processes.pop(job_name)
        process.kill()
        process.wait()
        self.core.patch_namespaced_pod_status(
            f"{job_name}-pod",
            self.namespace,
            {
                "status": {
                    "phase": "Failed",
                    "conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}],
                }
            },
            **MERGE,
        )
        condition = {
            "type": "Failed",
            "status": "True",
            "reason": "PodFailurePolicy",
            "message": "evicted",
            "lastTransitionTime": _now(),
        }
        self.batch.patch_namespaced_job_status(
            job_name, self.namespace, {"status": {"active": 0, "conditions": [condition]}}, **MERGE
        )


@contextlib.contextmanager
def cluster(directory: Path) -> Iterator[RunningCluster]:
    with RunningCluster(directory) as running:
        yield running
