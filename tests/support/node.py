"""A node for the test cluster (`support.emulator`): `NodeSimulator` plays the Job controller and the kubelet.

For every Job it creates a pod, runs the pod's
container command as a local process with the pod's environment (ConfigMap references resolved, paths under a
mount mapped to temporary directories by path prefix), then writes the container's termination message and the
Job's conditions back through the API, as the real components would (a failed pod fails its Job with the reason
the Job controller gives: `PodFailurePolicy` when a FailJob rule matches, else `BackoffLimitExceeded`).

It plays Kubeflow Trainer v2 and JobSet too: a `TrainJob` of the torch runtime becomes one pod per node
(`<trainjob>-node-0-<rank>`, labelled as JobSet labels them), each running the trainer's `torchrun` command with
the `PET_*` environment the runtime sets (every node on 127.0.0.1, a free port per TrainJob); the TrainJob then
gets the condition Kubeflow Trainer copies from its JobSet: Complete when every node's container exited 0, Failed
(the others killed) as soon as one did not. A pod's processes are everything started with its marker in the
environment, as a container's cgroup would hold them: torchrun starts its workers in sessions of their own.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes

from sweetspot.contract import TERMINATION_LOG_ENV, TERMINATION_MESSAGE_LIMIT

from support import containers
from support.emulator import MERGE, now
from support.ports import free_port

TESTS = Path(__file__).resolve().parents[1]
"""The tests folder: on the path of a pod that runs `support.fake_trainer`."""


TRAINJOBS = ("trainer.kubeflow.org", "v1alpha1", "trainjobs")
"""Kubeflow Trainer v2's TrainJob as `CustomObjectsApi` names it: group, version, plural."""
TRAINJOB_NODE = "node"
"""The torch runtime's replicated Job and its trainer container."""
JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"
"""On every pod of a TrainJob (its JobSet has the TrainJob's name)."""
ALL_JOBS_COMPLETED = ("AllJobsCompleted", "jobset completed successfully")
FAILED_JOBS = ("FailedJobs", "jobset failed due to one or more job failures")
"""A TrainJob's Complete and Failed conditions: Kubeflow Trainer copies its JobSet's (reason, message), which JobSet
writes with these constants (`AllJobsCompletedReason`, `FailedJobsReason`); which pod failed and how is in the
pods' container statuses, not in the condition."""


def local_path(value: str, mounts: dict[str, Path]) -> str:
    """A path inside the pod as the node has it: under the longest mount path that is a path prefix of it (so
    `/sweetspot/data-1/x` is not under `/sweetspot/data`, and `/data/tmp/x` is under no `/tmp`); else unchanged."""
    for mount, directory in sorted(mounts.items(), key=lambda m: -len(m[0])):
        if value == mount or value.startswith(mount.rstrip("/") + "/"):
            return str(directory) + value[len(mount.rstrip("/")) :]
    return value


def local_value(value: str, mounts: dict[str, Path]) -> str:
    """An environment value as the node passes it: a path, or a JSON document (the trial config) whose string
    values that are paths are mapped; any other text is left as it is."""
    try:
        document = json.loads(value)
    except ValueError:
        return local_path(value, mounts)
    if not isinstance(document, dict | list):
        return local_path(value, mounts)

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            return local_path(item, mounts)
        if isinstance(item, dict):
            return {k: walk(v) for k, v in item.items()}
        if isinstance(item, list):
            return [walk(v) for v in item]
        return item

    return json.dumps(walk(document))


def job_failure(job: Any, pod: str, exit_code: int) -> tuple[str, str]:
    """The reason and message of a Job's Failed condition as the Job controller writes them when its only pod
    failed with `exit_code` (backoffLimit 0): a FailJob rule of the pod failure policy that matches the exit
    code says `PodFailurePolicy`, anything else exhausts the backoff limit."""
    policy = job.spec.pod_failure_policy
    for index, rule in enumerate((policy.rules if policy else None) or []):
        codes = rule.on_exit_codes
        if codes is None or rule.action != "FailJob":
            continue
        matched = (exit_code in codes.values) == (codes.operator == "In")
        if matched and exit_code != 0:
            container = codes.container_name or job.spec.template.spec.containers[0].name
            return "PodFailurePolicy", (
                f"Container {container} for pod {pod} failed with exit code {exit_code} "
                f"matching FailJob rule at index {index}"
            )
    return "BackoffLimitExceeded", "Job has reached the specified backoff limit"


def ignored_failure(job: Any, exit_code: int, conditions: list[dict[str, Any]]) -> bool:
    """Whether the Job's pod failure policy ignores this pod failure: the Job controller then starts a replacement
    pod rather than counting the failure (a rule matching one of the pod's conditions or its exit code)."""
    policy = job.spec.pod_failure_policy
    types = {c["type"] for c in conditions if c.get("status") == "True"}
    for rule in (policy.rules if policy else None) or []:
        codes = rule.on_exit_codes
        if codes is not None and exit_code != 0 and (exit_code in codes.values) == (codes.operator == "In"):
            return bool(rule.action == "Ignore")
        if any(p.type in types for p in rule.on_pod_conditions or []):
            return bool(rule.action == "Ignore")
    return False


def _data(read: Callable[..., Any], kind: str, name: str, namespace: str) -> dict[str, str]:
    """A ConfigMap's or Secret's data (read raw: cheap when thousands of pods start); one that does not exist keeps
    the pod waiting, as the kubelet does."""
    try:
        response = read(name, namespace, _preload_content=False)
    except kubernetes.client.exceptions.ApiException as exc:
        if exc.status != 404:
            raise
        raise containers.ContainerConfigError("CreateContainerConfigError", f'{kind} "{name}" not found') from None
    return dict(json.loads(response.data).get("data") or {})


def config_map_data(core: kubernetes.client.CoreV1Api, namespace: str, name: str) -> dict[str, str]:
    """A ConfigMap's data as the kubelet reads it for a pod; raises `ContainerConfigError` while it is missing."""
    return _data(core.read_namespaced_config_map, "configmap", name, namespace)


def config_map_key(core: kubernetes.client.CoreV1Api, namespace: str, ref: dict[str, str]) -> str:
    """The value a container's `configMapKeyRef` names, as the kubelet resolves it (the node simulator and
    `support.instant_node` both read the trial config this way); a missing ConfigMap or key raises
    `ContainerConfigError`: the pod waits."""
    data = config_map_data(core, namespace, ref["name"])
    if ref["key"] not in data:
        raise containers.ContainerConfigError(
            "CreateContainerConfigError", f"couldn't find key {ref['key']} in ConfigMap {ref['name']}"
        )
    return data[ref["key"]]


POD_MARKER = "SWEETSPOT_SIMULATED_POD"
"""Set in every simulated container's environment (the pod's uid): the container's processes are those that have it."""


def container_processes(marker: str) -> list[int]:
    """The live processes of one simulated container: those started with its marker in their environment, which
    every child inherits. A process group would not do: torchrun starts each worker in a session of its own."""
    needle = f"{POD_MARKER}={marker}".encode()
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if needle not in Path(entry.path, "environ").read_bytes().split(b"\0"):
                continue
            state = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):  # gone meanwhile
            continue
        if state != "Z":
            pids.append(int(entry.name))
    return pids


def alive(pid: int) -> bool:
    """Whether a process still runs (a zombie, dead and not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@dataclasses.dataclass
class SimulatedPod:
    """One pod as the node runs it: its container's main process and where it writes its termination message."""

    name: str
    container: str
    image: str
    marker: str
    process: subprocess.Popen[bytes]
    termination: Path
    code: int | None = None
    """The container's exit code once it ended (128 + signal when killed, as a container runtime reports it)."""
    container_name: str | None = None
    """In the container mode: the podman container, which `process` (`podman run` in the foreground) runs."""
    log: Path | None = None
    """The container's output (stdout and stderr), for `FallbackToLogsOnError`."""
    fallback_to_logs: bool = False

    def kill(self) -> None:
        """What the kubelet does when it stops a container: every process in it dies."""
        if self.container_name is not None:
            containers.remove(self.container_name)
        for _ in range(50):  # a process that forked between a scan and the kills is found by the next scan
            pids = container_processes(self.marker)
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)  # reaped, so that it is no zombie of the test

    def terminate(self, grace_seconds: float) -> None:
        """What the kubelet does when it stops a pod gracefully: SIGTERM to the container's main process, then, after
        the grace period, SIGKILL to whatever is left."""
        if self.container_name is not None:
            containers.podman("kill", "--signal", "TERM", self.container_name, check=False)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=grace_seconds)
        self.ended()
        self.kill()

    def ended(self) -> bool:
        """Whether the container has ended; it ends with its main process, which takes the rest with it."""
        if self.code is None and (code := self.process.poll()) is not None:
            self.code = 128 - code if code < 0 else code
            if self.container_name is None:
                self.kill()
        return self.code is not None


@dataclasses.dataclass
class Workload:
    """What the node runs for one Job (one pod) or one TrainJob (a pod per node)."""

    kind: str
    pods: list[SimulatedPod]

    def kill(self) -> None:
        for pod in self.pods:
            pod.kill()


class NodeSimulator:
    """Runs each Job's pod, and each TrainJob's pods, as local processes and reports back like the Job controller
    (or Kubeflow Trainer and JobSet) and the kubelet."""

    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        namespace: str,
        workdir: Path,
        environ: dict[str, str] | None = None,
        fake_trainer: bool = False,
        containers: bool = False,
    ) -> None:
        assert not (containers and fake_trainer), "the container mode runs the images' own trainer"
        self.api = api
        self.batch = kubernetes.client.BatchV1Api(api)
        self.core = kubernetes.client.CoreV1Api(api)
        self.objects = kubernetes.client.CustomObjectsApi(api)
        self.namespace = namespace
        self.workdir = workdir
        self.environ = environ or {}
        self.fake_trainer = fake_trainer
        """Run `support.fake_trainer` in place of the image's trainer (the same config in, the same result out, no
        model): for tests about the operator rather than about training."""
        self.containers = containers
        """Run each pod as a real container from its own image (podman, runc), as a kubelet would: its command,
        env, volumes, termination-message path and securityContext as the pod has them, no path rewriting, no
        network. Otherwise each pod's command runs as a local process, paths under its mounts mapped to folders."""
        self.node_id = uuid.uuid4().hex[:12]
        """Labels every container this node starts (`containers.leftovers`)."""
        self.waiting: dict[str, str] = {}
        """Pods the kubelet cannot start yet (`reason: message` by Job or TrainJob name), tried again every tick."""
        self.commands: dict[str, list[str]] = {}
        """The command that runs each pod's container, by pod name (`podman run ...` in the container mode)."""
        self.processes: dict[str, Workload] = {}
        """Running Jobs and TrainJobs by name (a study's Job and TrainJob names never meet)."""
        self.started: list[str] = []
        self.seen: dict[str, float] = {}
        """When each Job or TrainJob was first seen, and when it finished (monotonic seconds): operator latency."""
        self.finished: dict[str, float] = {}
        self.hooks: dict[str, Callable[[str], None]] = {}
        self.claims: dict[str, Path] = {}
        """PersistentVolumeClaims by name: the directory a pod that mounts one sees (a test puts its data there)."""
        self.edit_config: Callable[[str, str], str] = lambda job, text: text
        """(Job or TrainJob name, a ConfigMap value the pod reads) → what the pod gets: lets a test hand a trial a
        broken config."""
        self._started_uids: set[str] = set()
        """A Job deleted and created again under its name (a study re-created) is a new Job: it runs again."""
        self.replacements: dict[str, int] = {}
        """Per Job, the pods the Job controller started after one whose failure its pod failure policy ignores."""
        self.lock = threading.RLock()
        """Held by each tick, and by a disruption a test causes from its own thread."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="node-simulator", daemon=True)
        self.errors: list[BaseException] = []

    def __enter__(self) -> NodeSimulator:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        for workload in self.processes.values():
            workload.kill()
        if self.containers:
            containers.remove_all(self.node_id)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                with self.lock:
                    self.tick()
            except Exception as exc:  # surfaced by the test through `errors`
                self.errors.append(exc)
            time.sleep(0.2)

    def _trainjobs(self) -> list[dict[str, Any]]:
        group, version, plural = TRAINJOBS
        items: list[dict[str, Any]] = self.objects.list_namespaced_custom_object(
            group, version, self.namespace, plural
        )["items"]
        return items

    def tick(self) -> None:
        jobs = self.batch.list_namespaced_job(self.namespace).items
        trainjobs = self._trainjobs()
        present = {("Job", job.metadata.name) for job in jobs}
        present |= {("TrainJob", trainjob["metadata"]["name"]) for trainjob in trainjobs}
        for name in [n for n, w in self.processes.items() if (w.kind, n) not in present]:
            self.processes.pop(name).kill()  # deleted: the kubelet kills its pods
        for name in [n for n in self.waiting if n not in {name for _, name in present}]:
            del self.waiting[name]  # deleted while its pod waited for its ConfigMap: nothing waits any more
        for job in jobs:
            self._guarded("Job", job.metadata.name, self._step_job, job)
        for trainjob in trainjobs:
            self._guarded("TrainJob", trainjob["metadata"]["name"], self._step_trainjob, trainjob)

    def _guarded(self, kind: str, name: str, step: Callable[[Any], None], obj: Any) -> None:
        self.seen.setdefault(name, time.monotonic())
        try:
            step(obj)
        except kubernetes.client.exceptions.ApiException:
            # Deleted between the listing and starting or reporting its pods (kmock 0.8 may answer 500 for that
            # race): like the kubelet, drop it; anything else is a real error.
            if kind == "Job":
                still = {job.metadata.name for job in self.batch.list_namespaced_job(self.namespace).items}
            else:
                still = {trainjob["metadata"]["name"] for trainjob in self._trainjobs()}
            if name in still:
                raise

    def _step_job(self, job: Any) -> None:
        conditions = [c.type for c in (job.status and job.status.conditions) or []]
        if "Complete" in conditions or "Failed" in conditions or job.spec.suspend:
            return  # done, or Kueue has not admitted it
        self._step(job.metadata.name, job.metadata.uid, job, self._start_job, self._finish_job)

    def _step_trainjob(self, trainjob: dict[str, Any]) -> None:
        if self._condition(trainjob, "Complete") == "True" or self._condition(trainjob, "Failed") == "True":
            return
        if (trainjob.get("spec") or {}).get("suspend"):
            if self._condition(trainjob, "Suspended") != "True":
                suspended = {"type": "Suspended", "status": "True", "reason": "Suspended"}
                self._set_trainjob_status(trainjob, {**suspended, "message": "TrainJob is suspended"})
            return  # Kueue has not admitted it
        meta = trainjob["metadata"]
        self._step(meta["name"], meta["uid"], trainjob, self._start_trainjob, self._finish_trainjob)

    def _step(
        self, name: str, uid: str, obj: Any, start: Callable[[Any], None], finish: Callable[[Any, Workload], None]
    ) -> None:
        if name not in self.processes and uid not in self._started_uids:
            try:
                start(obj)
            except containers.ContainerConfigError as exc:
                self.waiting[name] = str(exc)  # as a kubelet: the pod waits, and the next tick tries again
                return
            self.waiting.pop(name, None)
            self._started_uids.add(uid)
            self.started.append(name)
            if hook := self.hooks.get("started"):
                hook(name)
        elif name in self.processes:
            workload = self.processes[name]
            ended = [pod.ended() for pod in workload.pods]  # each one looked at: any of them may have failed
            if all(ended) or any(pod.code for pod in workload.pods):
                del self.processes[name]
                self.finished[name] = time.monotonic()
                finish(obj, workload)

    # --- one pod, whatever started it -----------------------------------------------------------------------

    def _run_pod(
        self,
        owner: str,
        name: str,
        labels: dict[str, str],
        container: dict[str, Any],
        pod_spec: dict[str, Any],
        command: list[str],
        shared: Path,
        runtime_env: dict[str, str] | None = None,
        network: str = "none",
    ) -> SimulatedPod:
        """Create the pod `name` and run its container (a dict as the API has it): a real container in the
        container mode (`network`: none, or `container:<name>` to share another pod's loopback), else `command` as a
        local process. An emptyDir is the pod's own; a claim is the test's directory for it (`claims`), else one
        `shared` by the owner's pods. A container the kubelet cannot configure yet (a missing ConfigMap) raises
        `ContainerConfigError` with the pod left waiting, as a kubelet leaves it; the next try reuses the pod."""
        uid = self._ensure_pod(name, labels, container)
        root = shared / name
        root.mkdir(parents=True, exist_ok=True)
        termination = root / "termination-log"
        try:
            if self.containers:
                env = {**self.environ, **self._container_env(owner, container, {}), **(runtime_env or {})}
                env[POD_MARKER] = uid
                volumes = containers.Volumes(
                    root=root,
                    claims=self.claims,
                    shared=self.workdir / "claims",  # one folder per claim for the whole node, as a volume is
                    read_config_map=self._config_map_data,
                    read_secret=self._secret_data,
                )
                command = containers.run_command(
                    name=f"{name}-{uid[:8]}",
                    node=self.node_id,
                    pod_spec={**pod_spec, "hostname": name},
                    container=container,
                    env=env,
                    volumes=volumes,
                    termination=termination,
                    network=network,
                )
            else:
                volumes_by_name = pod_spec.get("volumes") or []
                claims = {
                    v["name"]: self.claims.get(v["persistentVolumeClaim"]["claimName"], shared / v["name"])
                    for v in volumes_by_name
                    if v.get("persistentVolumeClaim")
                }
                mounts = {
                    m["mountPath"]: claims.get(m["name"], root / m["name"]) for m in container.get("volumeMounts") or []
                }
                for directory in mounts.values():
                    directory.mkdir(parents=True, exist_ok=True)
                env = {**os.environ, **self.environ, **self._container_env(owner, container, mounts)}
                env.update(runtime_env or {})
                env[TERMINATION_LOG_ENV] = str(termination)
                env[POD_MARKER] = uid
                if self.fake_trainer:
                    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
        except containers.ContainerConfigError as exc:
            waiting = {
                "name": container["name"],
                "state": {"waiting": {"reason": exc.reason, "message": exc.message}},
                "ready": False,
                "restartCount": 0,
                "image": container.get("image") or "",
                "imageID": "",
            }
            status = {"phase": "Pending", "containerStatuses": [waiting]}
            self.core.patch_namespaced_pod_status(name, self.namespace, {"status": status}, **MERGE)
            raise
        self.core.patch_namespaced_pod_status(name, self.namespace, {"status": {"phase": "Running"}}, **MERGE)
        log_path = root / "log.txt"
        self.commands[name] = command
        with open(log_path, "ab") as log:  # the process keeps its own copy
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
        return SimulatedPod(
            name,
            container["name"],
            container.get("image") or "",
            uid,
            process,
            termination,
            container_name=command[command.index("--name") + 1] if self.containers else None,
            log=log_path,
            fallback_to_logs=container.get("terminationMessagePolicy") == "FallbackToLogsOnError",
        )

    def start_pod(
        self, name: str, pod_spec: dict[str, Any], labels: dict[str, str] | None = None, network: str = "none"
    ) -> SimulatedPod:
        """Run a pod that no Job owns (a Deployment's pod template, say) with its first container; the caller stops
        it (`kill`). Only in the container mode: there is no local command to run."""
        assert self.containers, "start_pod runs a container: NodeSimulator(containers=True)"
        container = pod_spec["containers"][0]
        return self._run_pod(name, name, labels or {}, container, pod_spec, [], self.workdir / name, network=network)

    def _ensure_pod(self, name: str, labels: dict[str, str], container: dict[str, Any]) -> str:
        """The pod object (created on the first try to start it), by uid."""
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": self.namespace, "labels": labels},
            "spec": {"containers": [{"name": container["name"], "image": container.get("image")}]},
        }
        try:
            return str(self.core.create_namespaced_pod(self.namespace, pod).metadata.uid)
        except kubernetes.client.exceptions.ApiException as exc:
            if exc.status != 409:
                raise
            return str(self.core.read_namespaced_pod(name, self.namespace).metadata.uid)

    def _config_map_data(self, name: str) -> dict[str, str]:
        return config_map_data(self.core, self.namespace, name)

    def _secret_data(self, name: str) -> dict[str, str]:
        return _data(self.core.read_namespaced_secret, "secret", name, self.namespace)

    def _container_env(self, owner: str, container: dict[str, Any], mounts: dict[str, Path]) -> dict[str, str]:
        """The container's `env` as the kubelet resolves it (ConfigMap and Secret keys read now); in the process
        mode each value that is a path under a mount is mapped to the node's folder for it."""
        env: dict[str, str] = {}
        for var in container.get("env") or []:
            source = var.get("valueFrom") or {}
            if (ref := source.get("configMapKeyRef")) is not None:
                value = self.edit_config(owner, config_map_key(self.core, self.namespace, ref))
            elif (ref := source.get("secretKeyRef")) is not None:
                data = self._secret_data(ref["name"])
                if ref["key"] not in data:
                    raise containers.ContainerConfigError(
                        "CreateContainerConfigError", f"couldn't find key {ref['key']} in Secret {ref['name']}"
                    )
                value = base64.b64decode(data[ref["key"]]).decode()
            else:
                value = var.get("value") or ""
            env[var["name"]] = value if self.containers else local_value(value, mounts)
        return env

    def _report_pod(self, pod: SimulatedPod, conditions: list[dict[str, Any]] | None = None) -> None:
        """The kubelet's report of an ended container: the pod's phase and the container's terminated state."""
        code = pod.code if pod.code is not None else 137
        # The kubelet reads at most 4096 bytes; with FallbackToLogsOnError a failed container that wrote no message
        # gets its log's tail instead.
        written = pod.termination.read_bytes() if pod.termination.exists() else b""
        message = written[:TERMINATION_MESSAGE_LIMIT].decode(errors="replace")
        if not message and code != 0 and pod.fallback_to_logs and pod.log is not None and pod.log.exists():
            message = pod.log.read_bytes()[-2048:].decode(errors="replace")
        state = {"terminated": {"exitCode": code, "message": message, "reason": "Completed" if code == 0 else "Error"}}
        status: dict[str, Any] = {
            "phase": "Succeeded" if code == 0 else "Failed",
            "containerStatuses": [
                {
                    "name": pod.container,
                    "state": state,
                    "ready": False,
                    "restartCount": 0,
                    "image": pod.image,
                    "imageID": "",
                    "started": False,
                }
            ],
        }
        if conditions:
            status["conditions"] = conditions
        self.core.patch_namespaced_pod_status(pod.name, self.namespace, {"status": status}, **MERGE)

    # --- batch/v1 Jobs --------------------------------------------------------------------------------------

    def _start_job(self, job: Any) -> None:
        name = job.metadata.name
        pod_spec = self.api.sanitize_for_serialization(job.spec.template.spec)
        (container,) = pod_spec["containers"]
        command = [sys.executable if part == "python" else part for part in container["command"]]
        if self.fake_trainer:
            assert command[1:] == ["-m", "sweetspot_trainer"], command
            command = [sys.executable, "-m", "support.fake_trainer"]
        shared = self.workdir / f"{name}-{job.metadata.uid[:8]}"
        labels = {**(job.spec.template.metadata.labels or {}), "job-name": name}
        replaced = self.replacements.get(name, 0)
        pod_name = f"{name}-pod" + (f"-{replaced}" if replaced else "")
        pod = self._run_pod(name, pod_name, labels, container, pod_spec, command, shared)
        self.processes[name] = Workload("Job", [pod])
        self.batch.patch_namespaced_job_status(name, self.namespace, {"status": {"active": 1}}, **MERGE)

    def _finish_job(self, job: Any, workload: Workload) -> None:
        name = job.metadata.name
        (pod,) = workload.pods
        self._report_pod(pod)
        code = pod.code or 0
        if ignored_failure(job, code, []):
            self._replace_pod(job)
            return
        if code == 0:
            condition = {"type": "Complete", "status": "True", "reason": "Completed", "message": ""}
        else:
            reason, why = job_failure(job, f"{self.namespace}/{pod.name}", code)
            condition = {"type": "Failed", "status": "True", "reason": reason, "message": why}
        condition["lastTransitionTime"] = now()
        status = {"active": 0, "conditions": [condition], ("succeeded" if code == 0 else "failed"): 1}
        self.batch.patch_namespaced_job_status(name, self.namespace, {"status": status}, **MERGE)

    def _replace_pod(self, job: Any) -> None:
        """The Job controller ignored the pod's failure: the Job stays active and the next tick starts a new pod."""
        name = job.metadata.name
        self.replacements[name] = self.replacements.get(name, 0) + 1
        self._started_uids.discard(job.metadata.uid)
        self.finished.pop(name, None)

    # --- Kubeflow Trainer TrainJobs -------------------------------------------------------------------------

    def _start_trainjob(self, trainjob: dict[str, Any]) -> None:
        name, spec = trainjob["metadata"]["name"], trainjob["spec"]
        trainer = spec.get("trainer") or {}
        nodes = int(trainer.get("numNodes") or 1)
        per_node = trainer.get("numProcPerNode")
        # `auto`, `cpu` or `gpu` on a node with no GPU and one CPU for the trainer: one process.
        procs = int(per_node) if str(per_node).isdigit() else 1
        override: dict[str, Any] = next(
            (
                o
                for o in spec.get("podSpecOverrides") or []
                if any(t.get("name") == TRAINJOB_NODE for t in o.get("targetJobs") or [])
            ),
            {},
        )
        node_override = next((c for c in override.get("containers") or [] if c.get("name") == TRAINJOB_NODE), {})
        container = {
            "name": TRAINJOB_NODE,
            "image": trainer.get("image"),
            "env": [*(trainer.get("env") or []), *(node_override.get("env") or [])],
            "volumeMounts": node_override.get("volumeMounts") or [],
        }
        if self.containers:  # the image's own command, as the runtime's pod template runs it
            container |= {"command": trainer.get("command") or [], "args": trainer.get("args") or []}
        command = [*(trainer.get("command") or []), *(trainer.get("args") or [])]
        if command[:1] == ["torchrun"]:
            command = [sys.executable, "-m", "torch.distributed.run", *command[1:]]
        command = [sys.executable if part == "python" else part for part in command]
        if self.fake_trainer:
            assert "sweetspot_trainer" in command and ("--module" in command or "-m" in command), command
            command[command.index("sweetspot_trainer")] = "support.fake_trainer"
        port = free_port()
        shared = self.workdir / f"{name}-{trainjob['metadata']['uid'][:8]}"
        workload = Workload("TrainJob", [])
        for rank in range(nodes):
            labels = {
                **(spec.get("labels") or {}),
                JOBSET_NAME_LABEL: name,
                "jobset.sigs.k8s.io/replicatedjob-name": TRAINJOB_NODE,
                "batch.kubernetes.io/job-completion-index": str(rank),
                "job-name": f"{name}-{TRAINJOB_NODE}-0",
            }
            # What the torch runtime sets: torchrun reads PET_<FLAG> as the default of --<flag>.
            torchrun_env = {
                "PET_NNODES": str(nodes),
                "PET_NPROC_PER_NODE": str(procs),
                "PET_NODE_RANK": str(rank),
                "PET_MASTER_ADDR": "127.0.0.1",
                "PET_MASTER_PORT": str(port),
            }
            pod_name = f"{name}-{TRAINJOB_NODE}-0-{rank}"
            pod_spec = {"volumes": override.get("volumes") or []}
            # Every node of a TrainJob on one loopback: rank 0's network namespace, which the others join.
            network = f"container:{workload.pods[0].container_name}" if workload.pods else "none"
            if workload.pods and workload.pods[0].container_name is not None:
                containers.wait_started(workload.pods[0].container_name)
            try:
                pod = self._run_pod(name, pod_name, labels, container, pod_spec, command, shared, torchrun_env, network)
            except containers.ContainerConfigError:
                workload.kill()
                raise
            workload.pods.append(pod)
        self.processes[name] = workload
        jobs_status = [{"name": TRAINJOB_NODE, "ready": 0, "succeeded": 0, "failed": 0, "active": 1, "suspended": 0}]
        self._set_trainjob_status(
            trainjob,
            *(
                [{"type": "Suspended", "status": "False", "reason": "Resumed", "message": "TrainJob is resumed"}]
                if self._condition(trainjob, "Suspended") == "True"
                else []
            ),
            jobs_status=jobs_status,
        )

    def _finish_trainjob(self, trainjob: dict[str, Any], workload: Workload) -> None:
        """Every node's container has ended, or one failed: then JobSet fails and the others are killed."""
        failed = next((pod for pod in workload.pods if pod.code), None)
        for pod in workload.pods:
            if pod.code is None:
                pod.kill()
                pod.code = 137  # SIGKILL, as the container runtime reports it
            self._report_pod(pod)
        reason, message = FAILED_JOBS if failed else ALL_JOBS_COMPLETED
        condition = {"type": "Failed" if failed else "Complete", "status": "True", "reason": reason, "message": message}
        counts = {"succeeded": 0, "failed": 1} if failed else {"succeeded": 1, "failed": 0}
        jobs_status = [{"name": TRAINJOB_NODE, "ready": 0, "active": 0, "suspended": 0, **counts}]
        self._set_trainjob_status(trainjob, condition, jobs_status=jobs_status)

    @staticmethod
    def _condition(trainjob: dict[str, Any], kind: str) -> str | None:
        conditions = (trainjob.get("status") or {}).get("conditions") or []
        return next((c.get("status") for c in conditions if c.get("type") == kind), None)

    def _set_trainjob_status(
        self, trainjob: dict[str, Any], *conditions: dict[str, Any], jobs_status: list[dict[str, Any]] | None = None
    ) -> None:
        """Conditions by type, as `meta.SetStatusCondition` keeps them (a merge patch replaces the whole list)."""
        current = list((trainjob.get("status") or {}).get("conditions") or [])
        for condition in conditions:
            current = [c for c in current if c.get("type") != condition["type"]]
            current.append({**condition, "lastTransitionTime": now()})
        status: dict[str, Any] = {"conditions": current}
        if jobs_status is not None:
            status["jobsStatus"] = jobs_status
        trainjob.setdefault("status", {}).update(status)  # the next write this tick starts from it
        group, version, plural = TRAINJOBS
        self.objects.patch_namespaced_custom_object_status(
            group, version, self.namespace, plural, trainjob["metadata"]["name"], {"status": status}, **MERGE
        )

    # --- disruptions a test causes --------------------------------------------------------------------------

    def crash(self, name: str) -> None:
        """The container dies without a result (killed, segfault): a real failure, reported at the next tick. Of a
        TrainJob, rank 0's container dies; JobSet then fails it and the other nodes are killed."""
        self.processes[name].pods[0].kill()

    def evict(self, name: str, grace_seconds: float | None = None) -> None:
        """A disruption: the pods are stopped (SIGTERM, then SIGKILL after `grace_seconds`; at once without) and marked
        DisruptionTarget. A Job whose pod failure policy ignores that gets a new pod, as the Job controller starts one;
        another Job, and a TrainJob (JobSet restarts none by default), fails."""
        with self.lock:
            self._evict(name, grace_seconds)

    def _evict(self, name: str, grace_seconds: float | None) -> None:
        workload = self.processes.pop(name)
        for pod in workload.pods:
            if grace_seconds is None:
                pod.kill()
            else:
                pod.terminate(grace_seconds)
        disrupted = [{"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}]
        if workload.kind == "TrainJob":
            for pod in workload.pods:
                pod.code = 137 if pod.code is None else pod.code
                self._report_pod(pod, disrupted)
            reason, message = FAILED_JOBS
            group, version, plural = TRAINJOBS
            trainjob = self.objects.get_namespaced_custom_object(group, version, self.namespace, plural, name)
            condition = {"type": "Failed", "status": "True", "reason": reason, "message": message}
            self._set_trainjob_status(trainjob, condition)
            return
        (pod,) = workload.pods
        pod.code = 137 if pod.code is None else pod.code
        self._report_pod(pod, disrupted)
        job = self.batch.read_namespaced_job(name, self.namespace)
        if ignored_failure(job, pod.code, disrupted):
            self._replace_pod(job)
            return
        condition = {
            "type": "Failed",
            "status": "True",
            "reason": "PodFailurePolicy",
            "message": "evicted",
            "lastTransitionTime": now(),
        }
        self.batch.patch_namespaced_job_status(
            name, self.namespace, {"status": {"active": 0, "conditions": [condition]}}, **MERGE
        )

    def pids(self, name: str) -> list[int]:
        """The live processes of a running Job's or TrainJob's containers (torchrun agents and their workers)."""
        workload = self.processes.get(name)
        return [pid for pod in (workload.pods if workload else []) for pid in container_processes(pod.marker)]
