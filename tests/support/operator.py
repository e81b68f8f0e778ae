"""The operator as the e2e tests drive it: `sweetspot operator` as a process (restartable and killable like a
pod) against the Kubernetes API emulator, a node simulator running the real trainer on builtin:tiny, a throwaway
PostgreSQL, and helpers that read and write FineTuneStudies through the real kubernetes client."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import optuna
import yaml

from sweetspot.api.crd import crd

from support.emulator import RunningCluster, cluster
from support.kube_schema import CrdValidator
from support.node import NodeSimulator
from support.postgres import operator_database
from support.studies import small_study

NAMESPACE = "default"
GROUP, VERSION, PLURAL = "sweetspot.dev", "v1alpha1", "finetunestudies"


def cluster_study(name: str, **search: Any) -> dict[str, Any]:
    """The small study, with a trial template for the simulated node (one CPU, no GPU)."""
    manifest = small_study(name, NAMESPACE, **({"parallelism": 2, "seed": 5} | search))
    manifest["spec"]["trial"] = {"image": "sweetspot-trainer:test", "resources": {"limits": {"cpu": "1"}}}
    return manifest


def eventually(check: Callable[[], Any], timeout: float, what: str | Callable[[], str], step: float = 0.3) -> Any:
    """`check()` once it is truthy; `what` (or what it returns, for a description of the state at the timeout)
    names the wait in the failure."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what}")
        time.sleep(step)


def tracebacks(errors: list[BaseException]) -> str:
    """The node's errors as their tracebacks: where each happened, not only what."""
    return "\n".join("".join(traceback.format_exception(error)) for error in errors)


class Operator:
    """`sweetspot operator` as a process, restartable and killable like a pod."""

    def __init__(self, running: RunningCluster, database: str, workdir: Path, metrics_port: int = 0) -> None:
        self.env = {
            **os.environ,
            "KUBECONFIG": str(running.kubeconfig_for("operator")),
            "SWEETSPOT_DATABASE_URL": database,
            "SWEETSPOT_RECONCILE_SECONDS": "0.5",
        }
        self.metrics_port = metrics_port
        self.namespaces = [NAMESPACE]
        """What it watches (`-n` each)."""
        self.log = workdir / "operator.log"
        self.args: list[str] = []
        """More `sweetspot operator` options, e.g. `--liveness URL`."""
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log, "ab")  # noqa: SIM115 - owned by the process
        command = [sys.executable, "-m", "sweetspot.cli", "operator"]
        command += [arg for namespace in self.namespaces for arg in ("-n", namespace)]
        command += ["--metrics-port", str(self.metrics_port), "--metrics-address", "127.0.0.1"]
        command += ["--verbose"] if os.environ.get("SWEETSPOT_TEST_OPERATOR_VERBOSE") else []
        command += self.args
        self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=log)

    def exited(self) -> int | None:
        """The exit code once the process has ended (-9 after a SIGKILL, a failpoint's included), else None."""
        assert self.process is not None
        return self.process.poll()

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a short grace, as a kubelet would with a short terminationGracePeriod: kopf
        waits up to 10 s for a sync timer it cannot cancel, and a test's teardown need not."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def operator_world(
    workdir: Path,
    postgres_server_url: str,
    metrics_port: int = 0,
    instant: bool = False,
    fake_trainer: bool = False,
    stage_seconds: float = 0.5,
    trainjobs: bool = False,
    operator_env: dict[str, str] | None = None,
) -> Iterator[dict[str, Any]]:
    """A cluster, a node, a fresh database and a running operator; the node must have seen no errors.

    The node runs each Job's pod with the real trainer; with `fake_trainer`, with `support.fake_trainer` (the same
    config and result contract, no model: each stage takes `stage_seconds`); with `instant`, it completes every Job
    the moment it appears with a canned result. Only tests about training need the real trainer."""
    from support.instant_node import InstantNode  # it imports this module

    database = operator_database(postgres_server_url, f"operator_{os.getpid()}_{abs(hash(str(workdir))) % 10**6}")
    with cluster(workdir) as running:
        api = running.client()
        node: NodeSimulator | InstantNode = (
            InstantNode(api, NAMESPACE)
            if instant
            else NodeSimulator(
                api,
                NAMESPACE,
                workdir,
                environ={"SWEETSPOT_CACHE": str(workdir / "cache"), "SWEETSPOT_FAKE_STAGE_SECONDS": str(stage_seconds)},
                fake_trainer=fake_trainer,
            )
        )
        operator = Operator(running, database, workdir, metrics_port)
        if trainjobs:  # as the chart's `trainJobs.enabled` does
            operator.env["SWEETSPOT_TRAINJOBS"] = "true"
        operator.env.update(operator_env or {})
        with node:
            operator.start()
            try:
                yield {
                    "api": api,
                    "node": node,
                    "operator": operator,
                    "database": database,
                    "dir": workdir,
                    "cluster": running,
                }
            except BaseException:
                # The operator's own account of a failed wait: pytest shows it with the failure (CI keeps no files).
                tail = operator.log.read_text(errors="replace")[-6000:] if operator.log.exists() else "(no log)"
                print(f"--- the operator's log, last lines ---\n{tail}", file=sys.stderr)
                raise
            finally:
                operator.stop()
                assert not node.errors, tracebacks(node.errors)


def apply(api: kubernetes.client.ApiClient, manifest: dict[str, Any]) -> None:
    assert CrdValidator(crd()).errors(manifest) == []  # the emulator does not validate; a cluster would
    kubernetes.client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, manifest)


def get(api: kubernetes.client.ApiClient, name: str) -> dict[str, Any]:
    return kubernetes.client.CustomObjectsApi(api).get_namespaced_custom_object(  # type: ignore[no-any-return]
        GROUP, VERSION, NAMESPACE, PLURAL, name
    )


def exists(api: kubernetes.client.ApiClient, name: str) -> bool:
    """Whether the study `name` is still there (a study being deleted is, until its finalizer lets it go)."""
    try:
        get(api, name)
    except kubernetes.client.exceptions.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def collected_of(world: dict[str, Any], name: str) -> list[tuple[str, str, str]]:
    """What the cluster's garbage collector deleted of study `name`'s objects: empty when the operator's clean-up
    removed everything itself before the study went (the collector would hide a clean-up that left something)."""
    return [c for c in world["cluster"].emulator.collected if c[2].startswith(f"{name}-")]


def delete(api: kubernetes.client.ApiClient, name: str) -> None:
    kubernetes.client.CustomObjectsApi(api).delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)


def jobs_of(api: kubernetes.client.ApiClient, name: str) -> list[str]:
    items = (
        kubernetes.client.BatchV1Api(api)
        .list_namespaced_job(NAMESPACE, label_selector=f"sweetspot.dev/study={name}")
        .items
    )
    return sorted(job.metadata.name for job in items)


def phase(api: kubernetes.client.ApiClient, name: str) -> str | None:
    return (get(api, name).get("status") or {}).get("phase")


def check_succeeded(world: dict[str, Any], name: str, finals: tuple[int, ...] = (1,)) -> dict[str, Any]:
    api = world["api"]

    def ended() -> str | None:
        # Of the spec as it is now: right after a spec change the status still shows how the last spec ended.
        body = get(api, name)
        status = body.get("status") or {}
        current = status.get("observedGeneration") == body["metadata"]["generation"]
        return status.get("phase") if current and status.get("phase") in ("Succeeded", "Failed") else None

    final_phase = eventually(ended, 600, f"study {name} to finish (operator log: {world['operator'].log})")
    body = get(api, name)
    assert final_phase == "Succeeded", yaml.safe_dump(body.get("status"))
    status = body["status"]
    trials = status["trials"]
    assert trials["total"] == 3 and trials["complete"] in finals and trials["complete"] + trials["pruned"] == 3
    assert status["best"]["finalAccuracy"] > 0
    assert status["observedGeneration"] == body["metadata"]["generation"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Succeeded"]["status"] == "True" and conditions["StorageReachable"]["status"] == "True"
    # The status is what the CRD's schema allows (a real API server would prune or reject anything else).
    assert CrdValidator(crd()).errors(body) == []
    stored = optuna.load_study(study_name=f"{NAMESPACE}/{name}", storage=world["database"])
    assert [t.number for t in stored.trials] == [0, 1, 2]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in stored.trials)
    return body
