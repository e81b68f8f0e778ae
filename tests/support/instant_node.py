"""A node whose containers finish instantly: every Job is completed the moment it appears (watch), with a canned
stage result in its pod's termination message. For load tests, the operator benchmark, and operator tests that
are about its bookkeeping rather than training; `hold` keeps chosen Jobs running until the test `release`s them."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import kubernetes

from sweetspot.api.resource import FineTuneStudy
from sweetspot.cluster import jobs
from sweetspot.contract import TrialConfig
from sweetspot.core.records import RunKey, RunView, StartRun
from sweetspot.core.runtime import Runtime

from support.builders import evaluation, stage_result
from support.containers import ContainerConfigError
from support.emulator import MERGE
from support.node import config_map_key
from support.operator import NAMESPACE

SELECTOR = jobs.LABEL_STUDY
"""Only the studies' Jobs run here: others in the namespace (the operator benchmark seeds thousands) stay as they
were created, like Jobs of another node."""


def canned_result(study: str, key: RunKey) -> str:
    """A plausible stage result: accuracy varies with the trial so that promotion has something to rank."""
    accuracy = 0.5 + (key.number * 37 % 11) / 40
    fraction = 0.25 if key.stage == "early" else 1.0
    scored = evaluation(
        score=accuracy, loss=1 - accuracy, step=int(20 * fraction), fraction=fraction,
        attribute_f1={"name": accuracy, "rating": accuracy / 2}, attribute_support={"name": 40, "rating": 10},
    )  # fmt: skip
    return stage_result(
        study=study, trial=key.number, stage=key.stage, planned_steps=20, evaluations=[scored], seconds=1.0, samples=64
    ).termination_message()


class InstantNode:
    """Watches Jobs and completes each at once, like a kubelet whose containers finish instantly."""

    def __init__(self, api: kubernetes.client.ApiClient, namespace: str = NAMESPACE) -> None:
        self.namespace = namespace
        self.batch = kubernetes.client.BatchV1Api(api)
        self.core = kubernetes.client.CoreV1Api(api)
        self.created: dict[str, tuple[str, float]] = {}
        """Job name → (study, when its ADDED event arrived)."""
        self.completed: dict[str, tuple[str, float]] = {}
        """Job name → (study, when its Complete status was written)."""
        self.errors: list[BaseException] = []
        self.hold: Callable[[str], bool] = lambda name: False
        """Jobs (by name) left running, as a container that has not finished yet, until `release`d."""
        self.held: dict[str, dict[str, str]] = {}
        self.configs: dict[str, TrialConfig] = {}
        """Job name → the trial config its pod read from the Job's ConfigMap."""
        self.waiting: dict[str, str] = {}
        """Job name → why its pod cannot start yet (its ConfigMap is missing)."""
        self._done: set[str] = set()
        self._stop = threading.Event()
        self._watch: kubernetes.watch.Watch | None = None
        self._thread = threading.Thread(target=self._run, name=f"instant-node-{namespace}", daemon=True)

    def __enter__(self) -> InstantNode:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop now, not when the watch next hears of a Job: its stream is cut (the emulator keeps a watch open
        for as long as the client stays), and the thread is gone when this returns, so nothing it does reaches
        the next test."""
        self._stop.set()
        deadline = time.monotonic() + 10
        while self._thread.is_alive() and time.monotonic() < deadline:
            response = getattr(self._watch, "_resp", None)  # the stream being read (kubernetes.watch keeps it there)
            if response is not None:
                response.shutdown()  # a read blocked in another thread returns (urllib3 >= 2.3)
            self._thread.join(0.1)
        if self._thread.is_alive():
            raise RuntimeError(f"{self._thread.name} did not stop within 10 s")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                # A resync first, like a kubelet: a watch misses what was created between two streams. Read raw:
                # thousands of Jobs deserialized into client models would cost more than the operator under test.
                raw = self.batch.list_namespaced_job(self.namespace, label_selector=SELECTOR, _preload_content=False)
                listing = json.loads(raw.data)
                for job in listing["items"]:
                    self._maybe_complete(job)
                self._watch = watch = kubernetes.watch.Watch()
                for event in watch.stream(
                    self.batch.list_namespaced_job,
                    self.namespace,
                    label_selector=SELECTOR,
                    resource_version=listing["metadata"]["resourceVersion"],
                    timeout_seconds=5,
                ):
                    if event["type"] == "ADDED":
                        self._maybe_complete(event["raw_object"])
                    if self._stop.is_set():
                        break
            except Exception as exc:  # surfaced by the caller
                if self._stop.is_set():  # the stream was cut by __exit__
                    return
                self.errors.append(exc)
                time.sleep(0.1)

    def _maybe_complete(self, job: dict[str, Any]) -> None:
        meta = job.get("metadata") or {}
        if (
            meta.get("uid") in self._done
            or (job.get("status") or {}).get("conditions")
            or meta.get("deletionTimestamp")
        ):
            return
        self._done.add(meta.get("uid", ""))
        try:
            if not self._read_config(job):
                self._done.discard(meta.get("uid", ""))  # as a kubelet: the pod waits, the next resync tries again
                return
            if self.hold(meta["name"]):
                self.held[meta["name"]] = meta.get("labels") or {}
                status = {"status": {"active": 1}}
                self.batch.patch_namespaced_job_status(meta["name"], self.namespace, status, **MERGE)
                return
            self._complete(meta["name"], meta.get("labels") or {})
        except kubernetes.client.exceptions.ApiException as exc:
            if exc.status != 404:  # deleted meanwhile, as a kubelet would find it: nothing to complete
                raise

    def _read_config(self, job: dict[str, Any]) -> bool:
        """The trial config the pod would get from its ConfigMap, checked against the Job it came with; False while
        the ConfigMap is missing. A config that does not parse or is another stage's is an error."""
        name = job["metadata"]["name"]
        (container,) = job["spec"]["template"]["spec"]["containers"]
        (ref,) = [e["valueFrom"]["configMapKeyRef"] for e in container.get("env", []) if "valueFrom" in e]
        try:
            config = TrialConfig.model_validate_json(config_map_key(self.core, self.namespace, ref))
        except ContainerConfigError as exc:
            self.waiting[name] = str(exc)
            return False
        key = RunKey.parse(job["metadata"]["labels"][jobs.LABEL_RUN])
        assert config.stage == key.stage and (key.kind != "trial" or config.trial == key.number), (name, config)
        self.waiting.pop(name, None)
        self.configs[name] = config
        return True

    def release(self, name: str) -> None:
        """The held Job's container finishes now."""
        self._complete(name, self.held.pop(name))

    def _complete(self, name: str, labels: dict[str, str]) -> None:
        seen = time.monotonic()
        study = labels[jobs.LABEL_STUDY]
        self.created[name] = (study, seen)
        message = canned_result(study, RunKey.parse(labels[jobs.LABEL_RUN]))
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{name}-pod", "namespace": self.namespace, "labels": {**labels, "job-name": name}},
            "spec": {"containers": [{"name": "trainer", "image": "trainer"}]},
        }
        self.core.create_namespaced_pod(self.namespace, pod)
        terminated = {"exitCode": 0, "message": message, "reason": "Completed"}
        status = {"name": "trainer", "state": {"terminated": terminated}, "ready": False, "restartCount": 0}
        status |= {"image": "trainer", "imageID": "", "started": False}
        self.core.patch_namespaced_pod_status(
            f"{name}-pod", self.namespace, {"status": {"phase": "Succeeded", "containerStatuses": [status]}}, **MERGE
        )
        condition = {"type": "Complete", "status": "True", "reason": "Completed", "message": ""}
        self.batch.patch_namespaced_job_status(
            name, self.namespace, {"status": {"succeeded": 1, "conditions": [condition]}}, **MERGE
        )
        self.completed[name] = (study, time.monotonic())


class InstantRuntime(Runtime):
    """A runtime in memory whose every stage finishes the moment it starts, scored from its parameters by `score`
    (an early stage 0.1 lower); remembers every start. For tests of the loop and the store without a cluster."""

    def __init__(self, score: Callable[[Mapping[str, Any]], float]) -> None:
        self.score = score
        self.runs: dict[RunKey, RunView] = {}
        self.started: list[StartRun] = []
        """Every call of `start`, a repeated one too."""

    def observe(self, study: FineTuneStudy) -> list[RunView]:
        return list(self.runs.values())

    def start(self, study: FineTuneStudy, action: StartRun) -> str:
        self.started.append(action)
        if action.key in self.runs:  # started already: a start is idempotent
            return "this process"
        final = action.key.stage != "early"
        value = self.score(action.params) - (0.0 if final else 0.1)
        fraction = 1.0 if final else study.spec.search.early_evaluation.at_fraction
        scored = evaluation(
            score=value, loss=1 - value, step=round(100 * fraction), fraction=fraction, train_seconds=10.0
        )
        result = stage_result(study=study.key, trial=action.key.number, stage=action.key.stage, evaluations=[scored])
        self.runs[action.key] = RunView(action.key, "succeeded", result)
        return "this process"

    def stop(self, study: FineTuneStudy, key: RunKey) -> None:
        pass  # every stage has finished by the time it could be stopped

    def clean_up(self, namespace: str, name: str) -> int:
        removed = len(self.runs)
        self.runs.clear()
        return removed
