"""The Runtime contract (`sweetspot.core.runtime`), one body of tests run against every runtime, as Optuna runs one
suite against every storage: the local subprocesses, Kubernetes Jobs and Kubeflow TrainJobs (on the API emulator,
with the node simulator running `support.fake_trainer`), the HPO replay's table, and every test fake.

What each implementation owes, one test each: `observe` lists every run it started; `start` is idempotent (a key
started again changes nothing); `stop` is idempotent (a run already gone, or never started, counts as stopped);
finished runs stay observable (to this runtime, and to a new one over the same world: a restarted operator or
runner); `clean_up` removes everything it made for the study."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from sweetspot.api.resource import FineTuneStudy
from sweetspot.cluster import jobs
from sweetspot.cluster.memory import Memories
from sweetspot.cluster.runtimes import RUNTIMES
from sweetspot.core.records import RunKey, RunView, StartRun
from sweetspot.core.runtime import Runtime
from sweetspot.local.runner import LocalRuntime
from sweetspot.storage.space import preview_params

from support import by_path
from support.emulator import RunningCluster
from support.instant_node import InstantRuntime
from support.node import TESTS, TRAINJOBS, NodeSimulator
from support.operator import NAMESPACE, eventually, tracebacks
from support.studies import small_study

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

STAGE_SECONDS = "0.1"
"""How long a fake trainer's stage waits: a run finishes in well under a second (a TrainJob pays torchrun's start)."""
replay = by_path.load("benchmarks/hpo_replay.py", "benchmarks_hpo_replay")
_names = itertools.count()


@dataclass
class Subject:
    """One runtime under test, over its world (a cluster, a folder, memory)."""

    runtime: Runtime
    study: FineTuneStudy
    params: Sequence[Mapping[str, Any]]
    """Hyperparameters for the runs a test starts, one set per run."""
    reopen: Callable[[], Runtime] | None = None
    """A new runtime over the same world, knowing nothing the first one remembers (a restarted operator or runner);
    None where the runtime is its world (memory)."""
    leftovers: Callable[[], list[str]] = field(default=list)
    """What the world still holds of the study beyond what `observe` shows (objects, folders)."""

    def start(self, number: int, stage: str = "early") -> RunKey:
        key = RunKey("trial", number, stage)  # type: ignore[arg-type]
        self.runtime.start(self.study, StartRun(key, self.params[number]))
        return key

    def runs(self, key: RunKey, runtime: Runtime | None = None) -> list[RunView]:
        return [run for run in (runtime or self.runtime).observe(self.study) if run.key == key]

    def finished(self, key: RunKey, runtime: Runtime | None = None) -> RunView:
        def ended() -> RunView | None:
            return next((run for run in self.runs(key, runtime) if run.phase != "running"), None)

        seen: RunView = eventually(ended, 120, lambda: f"{key} to finish: {self.runs(key, runtime)}", step=0.05)
        return seen


def study(kind: str = "job") -> FineTuneStudy:
    manifest = small_study(f"contract-{next(_names)}", NAMESPACE)
    manifest["spec"]["trial"] = {"runtime": {"kind": kind}}
    return FineTuneStudy.model_validate(manifest)


# --- the worlds --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[kubernetes.client.ApiClient, NodeSimulator]]:
    """The emulator, the kubernetes client's default configuration pointed at it (as the operator's is), and a node
    running `support.fake_trainer`; the node must end with no error."""
    directory = tmp_path_factory.mktemp("contract-cluster")
    saved = kubernetes.client.Configuration.get_default_copy()
    with RunningCluster(directory) as running:
        kubernetes.config.load_kube_config(config_file=str(running.kubeconfig))
        api = running.client()
        environ = {"SWEETSPOT_FAKE_STAGE_SECONDS": STAGE_SECONDS, "SWEETSPOT_CACHE": str(directory / "cache")}
        node = NodeSimulator(api, NAMESPACE, directory / "node", environ=environ, fake_trainer=True)
        try:
            with node:
                yield api, node
        finally:
            kubernetes.client.Configuration.set_default(saved)
        assert not node.errors, tracebacks(node.errors)


def kube_subject(kind: str, api: kubernetes.client.ApiClient) -> Subject:
    resource = study(kind)
    selector = f"{jobs.LABEL_STUDY}={resource.metadata.name}"

    def leftovers() -> list[str]:
        core, batch = kubernetes.client.CoreV1Api(api), kubernetes.client.BatchV1Api(api)
        group, version, plural = TRAINJOBS
        trainjobs = kubernetes.client.CustomObjectsApi(api).list_namespaced_custom_object(
            group, version, NAMESPACE, plural, label_selector=selector
        )["items"]
        return [
            *(f"job {j.metadata.name}" for j in batch.list_namespaced_job(NAMESPACE, label_selector=selector).items),
            *(f"trainjob {t['metadata']['name']}" for t in trainjobs),
            *(f"pod {p.metadata.name}" for p in core.list_namespaced_pod(NAMESPACE, label_selector=selector).items),
            *(
                f"configmap {c.metadata.name}"
                for c in core.list_namespaced_config_map(NAMESPACE, label_selector=selector).items
            ),
        ]

    def reopen() -> Runtime:
        return RUNTIMES[kind](Memories())

    return Subject(reopen(), resource, preview_params(resource.spec, 3), reopen, leftovers)


def local_subject(directory: Path, monkeypatch: pytest.MonkeyPatch) -> Subject:
    monkeypatch.setenv("SWEETSPOT_FAKE_STAGE_SECONDS", STAGE_SECONDS)
    monkeypatch.setenv("SWEETSPOT_CACHE", str(directory / "cache"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    resource = study()

    def reopen() -> Runtime:
        return LocalRuntime(directory / "study", directory, trainer_module="support.fake_trainer")

    def leftovers() -> list[str]:
        runs = directory / "study" / "runs"
        return sorted(p.name for p in runs.iterdir()) if runs.exists() else []

    return Subject(reopen(), resource, preview_params(resource.spec, 3), reopen, leftovers)


def table_subject() -> Subject:
    table = replay.Table.load(replay.DEFAULT_TABLE)
    runtime = replay.TableRuntime(table, 0.2, replay.Trace())
    return Subject(runtime, study(), [config.params for config in table.configs[:3]])


def instant_subject() -> Subject:
    resource = study()
    return Subject(InstantRuntime(lambda params: 0.8), resource, preview_params(resource.spec, 3))


SUBJECTS = ["local", "job", "trainJob", "table", "instant"]
"""Every Runtime: the product's three, the replay's table, and the fakes (`class .*Runtime` in tests/)."""


@pytest.fixture(params=SUBJECTS)
def subject(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Subject]:
    kind = request.param
    if kind in RUNTIMES:
        api, _ = request.getfixturevalue("kube")
        made = kube_subject(kind, api)
    elif kind == "local":
        made = local_subject(tmp_path, monkeypatch)
    elif kind == "table":
        made = table_subject()
    else:
        made = instant_subject()
    yield made
    if isinstance(made.runtime, LocalRuntime):
        made.runtime.stop_all()  # no process outlives its test


def test_every_runtime_is_under_test() -> None:
    assert set(RUNTIMES) <= set(SUBJECTS)


# --- the contract ------------------------------------------------------------------------------------------


def test_observe_lists_every_run_and_its_result(subject: Subject) -> None:
    keys = [subject.start(0), subject.start(1, "final")]
    assert {run.key for run in subject.runtime.observe(subject.study)} == set(keys)
    for key in keys:
        run = subject.finished(key)
        assert run.phase == "succeeded", run
        assert run.result is not None and run.result.status == "ok", run
        assert (run.result.trial, run.result.stage) == (key.number, key.stage)


def test_start_is_idempotent(subject: Subject) -> None:
    running = subject.start(0)
    subject.start(0)  # again while it may still run: a crash between starting and recording repeats the start
    assert len(subject.runs(running)) == 1
    first = subject.finished(running)
    subject.start(0)  # again once it finished: nothing starts, the result stays
    assert subject.runs(running) == [first]
    assert subject.finished(running) == first


def test_stop_is_idempotent(subject: Subject) -> None:
    key = subject.start(0)
    subject.runtime.stop(subject.study, key)
    subject.runtime.stop(subject.study, key)  # gone already: counts as stopped
    subject.runtime.stop(subject.study, RunKey("trial", 7, "early"))  # never started
    assert all(run.phase != "running" for run in subject.runs(key)), subject.runs(key)


def test_finished_runs_stay_observable(subject: Subject) -> None:
    key = subject.start(0)
    first = subject.finished(key)
    for _ in range(3):  # the planner records a result whenever it first sees it: it must not vanish meanwhile
        assert subject.runs(key) == [first]
    if subject.reopen is not None:  # a restarted operator or runner finds it and its result
        assert subject.runs(key, subject.reopen()) == [first]


def test_clean_up_removes_everything(subject: Subject) -> None:
    keys = [subject.start(0), subject.start(1)]
    for key in keys:
        subject.finished(key)
    removed = subject.runtime.clean_up(subject.study.metadata.namespace, subject.study.metadata.name)
    assert removed == len(keys)
    assert subject.runtime.observe(subject.study) == []
    eventually(lambda: subject.leftovers() == [], 30, lambda: f"nothing left: {subject.leftovers()}", step=0.05)
    if subject.reopen is not None:
        assert subject.reopen().observe(subject.study) == []
